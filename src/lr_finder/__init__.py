"""lr_finder: the learning-rate range test for PyTorch.

>>> from lr_finder import LRFinder

The analysis (``analyze``, ``read_csv``) does not import torch; ``LRFinder`` and the
helpers that touch an optimizer load it on first use, so ``lr-finder analyze`` starts quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._logging import LOGGER_NAME
from .files import read_csv
from .history import History
from .suggestion import Suggestion, analyze, available_methods

if TYPE_CHECKING:
    from .apply import apply_suggested_lr, group_lrs
    from .finder import LRFinder
    from .schedule import lr_schedule

from ._version import __version__

_LAZY = {
    "LRFinder": ".finder",
    "apply_suggested_lr": ".apply",
    "group_lrs": ".apply",
    "lr_schedule": ".schedule",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lr_finder' has no attribute {name!r}")


__all__ = [
    "LOGGER_NAME",
    "History",
    "LRFinder",
    "Suggestion",
    "__version__",
    "analyze",
    "apply_suggested_lr",
    "available_methods",
    "group_lrs",
    "lr_schedule",
    "read_csv",
]
