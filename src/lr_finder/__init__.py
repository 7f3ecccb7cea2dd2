"""lr_finder: the learning-rate range test for PyTorch.

>>> from lr_finder import LRFinder
"""

from ._logging import LOGGER_NAME
from .apply import apply_suggested_lr, group_lrs
from .files import read_csv
from .finder import LRFinder
from .history import History
from .schedule import lr_schedule
from .suggestion import Suggestion, analyze, available_methods, suggest_lr

__version__ = "0.1.0"

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
    "suggest_lr",
]
