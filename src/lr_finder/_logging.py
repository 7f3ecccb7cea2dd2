"""The ``lr_finder`` logger: visible in a terminal by default, silenceable, never duplicated."""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "lr_finder"


class _DefaultHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Prints to stderr only while the application has configured no logging of its own.

    Once the root logger has a handler (``logging.basicConfig``, pytest, a framework), records
    propagate there instead and this handler stays quiet, so nothing is printed twice.
    Silence the library with ``logging.getLogger("lr_finder").setLevel(logging.WARNING)``.
    """

    def emit(self, record: logging.LogRecord) -> None:
        if logging.getLogger().handlers:
            return
        self.stream = sys.stderr  # follow redirections of sys.stderr (notebooks, capsys)
        super().emit(record)


logger = logging.getLogger(LOGGER_NAME)
if not any(isinstance(h, _DefaultHandler) for h in logger.handlers):
    _handler = _DefaultHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
