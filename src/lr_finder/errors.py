"""The exceptions lr_finder raises on purpose, typed by whose problem it is: callers such as the ``lr-finder``
command decide what to do by the type, never by where a traceback came from."""

from __future__ import annotations

import importlib
from types import ModuleType


class LRFinderError(Exception):
    """Base class of the errors lr_finder raises on purpose."""


class InputError(LRFinderError, ValueError):
    """An argument, object or file given by the user is wrong; raised before anything was trained or changed,
    with a message that quotes the value and names the fix."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type (a string where a flag belongs, a class where an instance does)."""


class StorageError(InputError, OSError):
    """A path that cannot hold the outputs or the snapshot: not a folder, not writable, or without enough space."""


class RangeTestError(LRFinderError, RuntimeError):
    """The range test ran but could not record a usable curve (the loss was not finite from the first step,
    for example); the state was restored."""


def require(module: str, extra: str, what: str) -> ModuleType:
    """``import module`` for ``what``, or an ``ImportError`` of one line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs {extra}: pip install 'lr-finder[{extra}]'") from None
