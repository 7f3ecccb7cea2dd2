"""Loading a SPEC: the user's function, named ``package.module:function`` or ``path/to/file.py:function``,
that builds the model, optimizer, criterion and loaders for ``lr-finder run``.

A SPEC that cannot be found or returns the wrong thing raises :class:`~lr_finder.errors.InputError`; the
user's own code raising anything raises :class:`UserCodeError`, with the user's exception as its cause.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import InputError

#: What a SPEC function returns: these four, in this order or as dict keys ...
SPEC_KEYS = ("model", "optimizer", "criterion", "train_loader")
#: ... and optionally these (``val_loader`` may also be a fifth element of a tuple).
SPEC_OPTIONAL = ("val_loader", "loss_fn", "scaler")


class UserCodeError(Exception):
    """The user's code (importing the SPEC, calling it, or training their model) raised: ``str()`` says what
    was running and what was raised; ``__cause__`` is the user's exception, with its traceback."""

    def __init__(self, what: str, exc: BaseException) -> None:
        super().__init__(f"{what} raised {type(exc).__name__}: {exc}")
        self.__cause__ = exc


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values are Python literals (``32``, ``1e-3``, ``'adam'``, ``True``) or strings."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise InputError(f"--param {item!r}: expected KEY=VALUE, e.g. --param batch_size=64")
        try:
            params[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            params[key] = raw
    return params


def _import_file(path: Path, spec: str) -> Any:
    """Import a Python file as a module. Its folder goes on ``sys.path`` for the rest of the process, as
    under ``python path/to/file.py``: its own imports, and DataLoader workers unpickling its classes, need it."""
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = path.stem if path.stem.isidentifier() and path.stem not in sys.modules else None
    name = name or f"_lr_finder_spec_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise InputError(f"{path}: cannot be imported as Python (SPEC {spec!r})")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # registered first, so pickling its classes (DataLoader workers) works
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, SyntaxError):
            raise InputError(f"{path}, line {exc.lineno}: syntax error: {exc.msg} (SPEC {spec!r})") from exc
        raise UserCodeError(f"importing {path}", exc) from exc
    return module


def _import_module(target: str, spec: str) -> Any:
    """Import a module, looked up from the working folder too, as under ``python -m``."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
            raise InputError(
                f"SPEC {spec!r}: no module named {exc.name!r}; give 'package.module:function' importable "
                "from here, or 'path/to/file.py:function'"
            ) from exc
        raise UserCodeError(f"importing {target}", exc) from exc  # a module the SPEC's own code imports
    except SyntaxError as exc:
        raise InputError(f"{exc.filename}, line {exc.lineno}: syntax error: {exc.msg} (SPEC {spec!r})") from exc
    except Exception as exc:
        raise UserCodeError(f"importing {target}", exc) from exc


def load_spec(spec: str) -> Callable[..., Any]:
    """The function named by ``package.module:function`` or ``path/to/file.py:function``."""
    target, sep, func_name = spec.rpartition(":")
    if not sep or not target or not func_name.isidentifier():
        raise InputError(
            f"SPEC {spec!r} must be 'package.module:function' or 'path/to/file.py:function', naming a "
            "function that returns (model, optimizer, criterion, train_loader)"
        )
    if target.endswith(".py") or "/" in target or os.sep in target:
        path = Path(target)
        if not path.is_file():
            raise InputError(f"{target}: no such file (SPEC {spec!r})")
        module = _import_file(path, spec)
    else:
        module = _import_module(target, spec)
    fn = getattr(module, func_name, None)
    if fn is None:
        raise InputError(f"SPEC {spec!r}: {target} has no {func_name!r}{_functions_hint(module)}")
    if not callable(fn):
        raise InputError(f"SPEC {spec!r}: {func_name} is a {type(fn).__name__}, not a function")
    return fn


#: How many of a module's functions a "has no" message names.
_LISTED = 8


def _functions_hint(module: Any) -> str:
    """The end of a "has no" message: the public functions the module defines (not those it imports, nor
    classes), the first :data:`_LISTED` in order, and how many more."""
    own = sorted(
        name for name, value in vars(module).items()
        if not name.startswith("_") and callable(value) and not isinstance(value, type)
        and getattr(value, "__module__", None) == module.__name__
    )
    if not own:
        return "; it defines no functions"
    more = f" and {len(own) - _LISTED} more" if len(own) > _LISTED else ""
    return f"; its functions: {', '.join(own[:_LISTED])}{more}"


def _check_arguments(fn: Callable[..., Any], kwargs: Mapping[str, Any], spec: str) -> None:
    """Refuse a call ``fn(**kwargs)`` that cannot bind, naming the given arguments it does not take, or
    else the ones it requires and how to pass them."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # no signature (a builtin): let the call decide
        return
    try:
        signature.bind(**kwargs)
    except TypeError as exc:
        params = signature.parameters.values()
        by_name = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
        unexpected = [] if takes_any else [k for k in kwargs if k not in by_name]
        positional = [p.name for p in params if p.kind is p.POSITIONAL_ONLY and p.default is p.empty]
        missing = [p.name for p in params if p.name in by_name and p.default is p.empty and p.name not in kwargs]
        name = getattr(fn, "__name__", spec)
        if unexpected:
            what = f"an unexpected keyword argument {unexpected[0]!r}" if len(unexpected) == 1 else (
                f"unexpected keyword arguments {', '.join(map(repr, unexpected))}")
            raise InputError(f"--param: {name}() does not accept them: got {what}") from exc
        if positional:
            raise InputError(
                f"SPEC {spec!r}: {name}() requires {', '.join(positional)} by position, which -p (keyword "
                "arguments) cannot pass: name a function of your own that calls it"
            ) from exc
        if missing:
            one = len(missing) == 1
            raise InputError(
                f"SPEC {spec!r}: {name}() requires the argument{'' if one else 's'} {', '.join(missing)}: pass "
                f"{'it' if one else 'them'} with {' '.join(f'-p {m}=VALUE' for m in missing)}"
            ) from exc
        raise InputError(f"--param: {name}() does not accept them: {exc}") from exc


def unpack_spec(result: Any, spec: str) -> dict[str, Any]:
    """The SPEC function's result as a dict with the four required keys and any optional ones."""
    usage = (
        "return (model, optimizer, criterion, train_loader[, val_loader]) or a dict with the keys "
        f"{', '.join(SPEC_KEYS)} (optional: {', '.join(SPEC_OPTIONAL)})"
    )
    if isinstance(result, Mapping):
        missing = [k for k in SPEC_KEYS if k not in result]
        unknown = [k for k in map(str, result) if k not in SPEC_KEYS + SPEC_OPTIONAL]
        problems = [f"missing {', '.join(missing)}"] if missing else []
        problems += [f"unknown key(s) {', '.join(unknown)}"] if unknown else []
        if problems:
            raise InputError(f"SPEC {spec!r} returned a dict with {'; '.join(problems)}: {usage}")
        return {str(k): v for k, v in result.items()}
    if not isinstance(result, (tuple, list)):
        raise InputError(f"SPEC {spec!r} returned {type(result).__name__}: {usage}")
    if len(result) not in (4, 5):
        raise InputError(f"SPEC {spec!r} returned a {type(result).__name__} of {len(result)}: {usage}")
    return dict(zip(SPEC_KEYS + ("val_loader",), result, strict=False))


def build(spec: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Load the SPEC, call it with ``kwargs`` and return its objects by name (see :func:`unpack_spec`).

    Raises:
        InputError: the SPEC cannot be found, does not take ``kwargs``, or returns the wrong thing.
        UserCodeError: the SPEC's module or function raised.
    """
    fn = load_spec(spec)
    _check_arguments(fn, kwargs, spec)
    try:
        result = fn(**kwargs)
    except Exception as exc:
        raise UserCodeError(f"SPEC {spec!r}", exc) from exc
    return unpack_spec(result, spec)
