"""torch-lr-finder's API on lr_finder: switch a script by changing one import.

>>> from lr_finder.compat import LRFinder, TrainDataLoaderIter, ValDataLoaderIter

:class:`LRFinder` runs torch-lr-finder 0.2.2's sweep with its arguments and return values, and lr_finder's
restore, snapshot and checks. How the native :class:`lr_finder.LRFinder` differs: the README, "Switching from
torch-lr-finder". The core never imports this package.
"""

from __future__ import annotations

from .finder import LRFinder
from .iterators import DataLoaderIter, TrainDataLoaderIter, ValDataLoaderIter

__all__ = ["DataLoaderIter", "LRFinder", "TrainDataLoaderIter", "ValDataLoaderIter"]
