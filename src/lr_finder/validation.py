"""Checks of the objects a range test is given (model, optimizer, loaders, device, folder), for the core and
compat alike, run before any training; each message quotes the value and names the fix."""

from __future__ import annotations

import itertools
import os
import warnings
from typing import Any

import torch

from ._logging import logger
from .errors import InputError, InputTypeError
from .loaders import is_one_shot


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model without either."""
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if first is None else first.device


def parse_device(device: Any) -> torch.device:
    """``device`` (``"cuda:1"``, a ``torch.device``, ...) as a ``torch.device``, or an error naming the choices."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"{device=} is not a device: pass 'cpu', 'cuda', 'cuda:1', ... or None") from exc


def same_device(actual: torch.device, wanted: torch.device) -> bool:
    """Whether a tensor on ``actual`` is on ``wanted`` (``"cuda"`` without an index means any GPU)."""
    return actual.type == wanted.type and (wanted.index is None or actual.index in (None, wanted.index))


def resolve_device(model: torch.nn.Module, device: Any) -> torch.device:
    """``device=None`` means the model's device; a device that disagrees with the model is an error."""
    actual = model_device(model)
    if device is not None and not same_device(actual, wanted := parse_device(device)):
        raise InputError(
            f"{device=} but the model's parameters are on {actual}: move the model first "
            f"(model.to({str(wanted)!r})) and build the optimizer after, or pass device=None"
        )
    return actual


def check_cache_dir(cache_dir: Any, *, exists: bool = False) -> None:
    """A folder path or ``None``; with ``exists``, a folder that is there (torch-lr-finder's rule)."""
    if cache_dir is None:
        return
    if not isinstance(cache_dir, (str, os.PathLike)):
        raise InputTypeError(f"cache_dir={cache_dir!r} must be a folder path or None")
    if exists and not os.path.isdir(cache_dir):
        raise InputError(f"cache_dir={os.fspath(cache_dir)!r} is not a folder: create it, or pass None")


def unwrap_optimizer(optimizer: Any, scaler: Any) -> tuple[Any, Any]:
    """The torch optimizer inside a thin wrapper (accelerate's ``AcceleratedOptimizer``), and its scaler.

    Such a wrapper shares ``param_groups`` with the optimizer it wraps, but its ``step()`` may run its own
    GradScaler or skip the step during gradient accumulation. The range test does its own scaling and
    accumulation, so it steps the inner optimizer and adopts the wrapper's scaler when none was given.
    """
    inner = getattr(optimizer, "optimizer", None)
    if not (
        isinstance(optimizer, torch.optim.Optimizer)
        and isinstance(inner, torch.optim.Optimizer)
        and inner is not optimizer
        and optimizer.param_groups is inner.param_groups
    ):
        return optimizer, scaler
    wrapped_scaler = getattr(optimizer, "scaler", None)
    if wrapped_scaler is not None:
        if scaler is None:
            scaler = wrapped_scaler
        elif scaler is not wrapped_scaler:
            raise InputError(
                f"scaler={scaler!r} differs from the GradScaler of the wrapped optimizer "
                f"({type(optimizer).__name__}.scaler): pass scaler=None (the wrapper's is used) or that one"
            )
    logger.debug(
        "optimizer is a %s wrapping %s: the range test steps the wrapped optimizer%s",
        type(optimizer).__name__,
        type(inner).__name__,
        " and uses the wrapper's GradScaler" if wrapped_scaler is not None else "",
    )
    return unwrap_optimizer(inner, scaler)


def check_objects(model: Any, optimizer: Any, criterion: Any, scaler: Any) -> None:
    if not isinstance(model, torch.nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InputTypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if isinstance(optimizer, torch.optim.LBFGS):
        raise InputTypeError(
            "optimizer is LBFGS, which needs a closure and several loss evaluations per step: the range test "
            "does not support it; run it with SGD or Adam on the same model instead"
        )
    if isinstance(criterion, type):
        raise InputTypeError(
            f"criterion={criterion.__name__} is a class: pass an instance, criterion={criterion.__name__}()"
        )
    if criterion is not None and not callable(criterion):
        raise InputTypeError(
            f"criterion must be callable (e.g. torch.nn.CrossEntropyLoss()) or None, got {criterion!r}"
        )
    for i, group in enumerate(optimizer.param_groups):
        if "lr" not in group:
            raise InputError(
                f"optimizer.param_groups[{i}] has no 'lr': the range test sweeps the learning rate, so the "
                "optimizer must have one"
            )
    if not any(p.requires_grad for g in optimizer.param_groups for p in g["params"]):
        raise InputError("the optimizer holds no parameter with requires_grad=True: there is nothing to train")
    _check_optimizer_covers(model, optimizer)
    if any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in model.parameters()):
        raise InputError(
            "the model has lazy (uninitialized) parameters: run one forward pass on a batch before creating "
            "the optimizer and LRFinder"
        )
    if scaler is not None and not (hasattr(scaler, "state_dict") and hasattr(scaler, "scale")):
        raise InputTypeError(f"scaler must be a torch.amp.GradScaler or None, got {type(scaler).__name__}")


def _check_optimizer_covers(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Refuse an optimizer that trains none of the model's parameters; warn about trainable ones it skips.

    An optimizer built for another model (or for a copy of this one) would train nothing for the whole
    sweep and the curve would be flat noise. An optimizer that holds only some of the trainable parameters
    may be on purpose (a head trained alone), so that is a warning naming them, not an error.
    """
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    named = list(model.named_parameters())
    if named and not any(id(p) in held for _, p in named):
        raise InputError(
            f"the optimizer holds none of the model's {len(named)} parameters (was it built for another "
            "model, or before the model was copied or re-created?): build it from this model, e.g. "
            "torch.optim.SGD(model.parameters(), lr=0.01)"
        )
    missing = [name for name, p in named if p.requires_grad and id(p) not in held]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        warnings.warn(
            f"{len(missing)} trainable parameter(s) of the model are not in the optimizer and stay fixed "
            f"during the range test: {shown}. Add them to the optimizer, or set requires_grad=False on them "
            "if that is intended",
            stacklevel=3,
        )


def check_loader(loader: Any, name: str, needed: int) -> None:
    """A loader the sweep can draw ``needed`` batches from (cycled when it is re-iterable)."""
    if loader is None or not hasattr(loader, "__iter__"):
        raise InputTypeError(f"{name} must be an iterable of batches such as a DataLoader, got {loader!r}")
    try:
        n = len(loader)
    except TypeError:
        return
    if n == 0:
        raise InputError(f"{name} is empty (len 0): pass a loader with at least one batch")
    if n < needed and is_one_shot(loader):
        raise InputError(
            f"{name} is a one-shot iterator with {n} batches but the sweep needs {needed}: pass a "
            "re-iterable loader such as a DataLoader (it is cycled as needed), or lower num_iter"
        )


def check_val_loader(loader: Any) -> None:
    check_loader(loader, "val_loader", 0)
    if is_one_shot(loader):
        raise InputTypeError(
            "val_loader is a one-shot iterator, but it is read in full after every step: pass a re-iterable "
            "loader such as a DataLoader"
        )


def check_not_a_loader(name: str, value: Any) -> None:
    """``range_test(train_loader, val_loader)``: a loader in a number's place, from another library's habit."""
    if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        raise InputTypeError(
            f"{name} got {type(value).__name__} object, not a learning rate: val_loader is keyword-only here, "
            "range_test(train_loader, val_loader=val_loader, ...); torch-lr-finder's argument order is "
            "available as lr_finder.compat.LRFinder"
        )
