"""The ``lr_finder`` logger. The library only emits records: the application decides what is shown.

No level is set and no handler is added, not even a ``NullHandler``, which would keep Python's last-resort
handler from showing the warnings. So, with no logging configured (a script, a notebook), the warnings
(no suggestion and why, the diagnostics, a file not written, a plot that could not be shown) appear on
stderr and the INFO messages (progress, the suggestion, the files written) do not; one line shows them::

    logging.basicConfig(level=logging.INFO, format="%(message)s")

``lr-finder`` (:mod:`lr_finder.cli`) is an application: it shows INFO and up on stderr itself.

Audiences: ``lr_finder`` is what happened; its child ``lr_finder.api`` holds the hints about the Python
objects (what to call next, their state restored), which the command leaves out.
"""

from __future__ import annotations

import logging

LOGGER_NAME = "lr_finder"

logger = logging.getLogger(LOGGER_NAME)
#: Hints for users of the Python API; ``lr-finder`` drops these.
api_logger = logger.getChild("api")
