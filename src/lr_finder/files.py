"""Files: the CSV log, ``best_lr.txt`` and JSON summaries, written atomically, and the CSV reader.

A crash never leaves a truncated file where a good one was: every file is written to a temporary file in
the same folder and renamed over the target.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import importlib.metadata
import io as _io
import json
import math
import os
import platform
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .errors import InputError
from .history import History

CSV_NAME = "lr_finder_log.csv"
BEST_LR_NAME = "best_lr.txt"
PLOT_NAME = "lr_finder_plot.png"
SUMMARY_NAME = "lr_finder_summary.json"
CSV_COLUMNS = ("step", "lr", "raw_loss", "loss")


class CSVFormatError(InputError):
    """A CSV file that is not a readable LR finder log; the message names the file and the problem."""


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Write a file through ``write(binary_file)`` into a temp file beside ``path``, then rename it over."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def history_to_csv(history: History) -> str:
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for i, (lr, raw, smooth) in enumerate(zip(history.lr, history.raw_loss, history.loss, strict=True)):
        writer.writerow([i, repr(float(lr)), repr(float(raw)), repr(float(smooth))])
    return buf.getvalue()


def write_csv(history: History, path: str | os.PathLike[str]) -> Path:
    """Write one row per step: ``step, lr, raw_loss, loss`` (loss is the smoothed loss), full precision."""
    return atomic_write_text(path, history_to_csv(history))


def read_csv(path: str | os.PathLike[str]) -> History:
    """Read a log written by :func:`write_csv` back into a :class:`History`.

    Raises:
        CSVFormatError: the file is missing, empty, lacks a column, or holds text where a number must be.
            Non-finite losses (``nan``, ``inf``) are legal and kept.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CSVFormatError(f"{p}: cannot read the file ({exc})") from exc
    return parse_csv(text, str(p))


def parse_csv(text: str, name: str = "<csv>") -> History:
    """Parse the text of an LR finder CSV log (see :func:`read_csv`)."""
    rows = list(csv.reader(_io.StringIO(text)))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise CSVFormatError(f"{name}: the file is empty; expected a header {','.join(CSV_COLUMNS)} and rows")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in ("lr", "loss") if c not in header]
    if missing:
        raise CSVFormatError(
            f"{name}: missing column(s) {', '.join(missing)}; the header is {','.join(header)}"
        )
    cols = {c: header.index(c) for c in ("lr", "raw_loss", "loss") if c in header}
    out: dict[str, list[float]] = {c: [] for c in cols}
    for lineno, row in enumerate(rows[1:], start=2):
        for c, j in cols.items():
            if j >= len(row):
                raise CSVFormatError(f"{name}, line {lineno}: no value in column {c!r}")
            cell = row[j].strip()
            try:
                value = float(cell)
            except ValueError:
                raise CSVFormatError(
                    f"{name}, line {lineno}: column {c!r} holds {cell!r}, not a number"
                ) from None
            out[c].append(value)
    if not out["lr"]:
        raise CSVFormatError(f"{name}: the file has a header but no rows")
    bad = [v for v in out["lr"] if not (math.isfinite(v) and v > 0)]
    if bad:
        raise CSVFormatError(f"{name}: column 'lr' must hold positive finite numbers, found {bad[0]!r}")
    raw = out.get("raw_loss", out["loss"])
    return History(tuple(out["lr"]), tuple(out["loss"]), tuple(raw))


def write_best_lr(lr: float, path: str | os.PathLike[str]) -> Path:
    """Write the suggested LR as one full-precision number, readable with ``float(open(p).read())``."""
    return atomic_write_text(path, f"{float(lr)!r}\n")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def _version(name: str) -> str | None:
    module = sys.modules.get(name)
    if module is not None and isinstance(getattr(module, "__version__", None), str):
        return str(module.__version__)
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def summarize(history: History, method: str = "default") -> dict[str, Any]:
    """Everything about a curve as plain JSON-able data (what ``lr_finder_summary.json`` holds).

    Versions (lr_finder, torch, numpy, scipy, Python), the platform, the device, the range test's settings,
    the stop reason, the timing, how the curve was analysed, the suggestion of ``method`` with its optimal
    range and diagnostics, and every method's suggestion. Works on a history read back from a CSV (no
    settings, no timing: those entries are ``None``).
    """
    from ._version import __version__
    from .smoothing import HAVE_SCIPY
    from .suggestion import DEFAULT_METHOD, available_methods

    settings = dict(history.settings)
    elapsed = settings.get("elapsed_s")
    steps = history.num_steps
    chosen = history.analyze(method)
    finite = [v for v in history.loss if math.isfinite(v)]
    return {
        "lr_finder_version": __version__,
        "torch_version": _version("torch"),
        "numpy_version": _version("numpy"),
        "scipy_version": _version("scipy") if HAVE_SCIPY else None,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": settings.get("device"),
        "settings": settings,
        "steps_recorded": steps,
        "stop_reason": history.stop_reason,
        "stopped_early": history.stop_reason is not None,
        "timing": {
            "elapsed_s": elapsed,
            "s_per_step": round(elapsed / steps, 6) if isinstance(elapsed, (int, float)) and steps else None,
        },
        "analysis": {
            "smoothing": "savitzky-golay" if HAVE_SCIPY else "moving-average",
            "slope": (
                "d ln(loss) / d log10(lr)"
                if finite and all(v > 0 for v in finite)
                else "d loss / d log10(lr)"
            ),
            "default_method": DEFAULT_METHOD,
        },
        "suggestion": chosen.to_dict(),
        "optimal_range": {"low": chosen.low, "high": chosen.high},
        "diagnostics": list(chosen.diagnostics),
        "methods": {m: history.analyze(m).to_dict() for m in available_methods()},
    }


def write_json(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as indented JSON (non-finite floats become null, unknown objects their ``str``)."""
    return atomic_write_text(path, json.dumps(_jsonable(data), indent=2) + "\n")
