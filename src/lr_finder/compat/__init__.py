"""torch-lr-finder's API on lr_finder: switch a script by changing one import.

>>> from lr_finder.compat import LRFinder, TrainDataLoaderIter, ValDataLoaderIter

:class:`LRFinder` takes torch-lr-finder 0.2.2's arguments and returns its values, and runs the same sweep
(the same LRs and losses, the same stop step) with lr_finder's restore, snapshot and checks. The native
:class:`lr_finder.LRFinder` differs in its defaults and in how it treats param groups and smoothing (see the
README, "Switching from torch-lr-finder"). The core never imports this package.
"""

from __future__ import annotations

from .finder import LRFinder
from .iterators import DataLoaderIter, TrainDataLoaderIter, ValDataLoaderIter

__all__ = ["DataLoaderIter", "LRFinder", "TrainDataLoaderIter", "ValDataLoaderIter"]
