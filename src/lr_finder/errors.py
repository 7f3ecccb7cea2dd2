"""The exceptions lr_finder raises on purpose, typed by whose problem it is.

* :class:`InputError` (a ``ValueError``): an argument, object or file the user gave is wrong; raised before
  any training, with a message that quotes the value and names the fix. :class:`InputTypeError` is its
  ``TypeError`` flavour (a value of the wrong type), :class:`StorageError` its ``OSError`` flavour (a folder
  that cannot hold the outputs or the snapshot).
* :class:`RangeTestError` (a ``RuntimeError``): the range test itself could not produce a curve (the loss
  was not finite from the first step, for example).

Callers, such as the ``lr-finder`` command, decide what to do by the type, never by where a traceback
came from. Every one of them is also an :class:`LRFinderError`.
"""

from __future__ import annotations


class LRFinderError(Exception):
    """Base class of the errors lr_finder raises on purpose."""


class InputError(LRFinderError, ValueError):
    """An argument, object or file given by the user is wrong; nothing was trained or changed."""


class InputTypeError(InputError, TypeError):
    """An argument of the wrong type (a string where a flag belongs, a class where an instance does)."""


class StorageError(InputError, OSError):
    """A path that cannot be used: not a folder, not writable, or without enough free space."""


class RangeTestError(LRFinderError, RuntimeError):
    """The range test ran but could not record a usable curve; the state was restored."""
