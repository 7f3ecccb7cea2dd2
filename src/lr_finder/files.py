"""Files: the CSV log, ``best_lr.txt``, JSON and images, written atomically; the CSV reader.

A crash never leaves a truncated file where a good one was: every file is written to a temporary file in
the same folder and renamed over the target. The file gets the permissions a plain ``open(path, "w")``
would give it (``0666`` less the umask, or the mode of the file it replaces), and every error names the
user's path, never the temporary file.
"""

from __future__ import annotations

import contextlib
import csv
import io as _io
import json
import math
import os
import secrets
import stat
import warnings
from collections.abc import Callable, Collection
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import InputError, StorageError
from .history import History

CSV_NAME = "lr_finder_log.csv"
BEST_LR_NAME = "best_lr.txt"
PLOT_NAME = "lr_finder_plot.png"
SUMMARY_NAME = "lr_finder_summary.json"
#: What ``lr-finder analyze`` writes: names of its own, so a run's files are never rewritten.
ANALYSIS_PLOT_NAME = "lr_finder_analysis.png"
ANALYSIS_BEST_LR_NAME = "lr_finder_analysis_best_lr.txt"
ANALYSIS_JSON_NAME = "lr_finder_analysis.json"
#: The default image of ``lr-finder compare``.
COMPARE_NAME = "lr_finder_compare.png"
CSV_COLUMNS = ("step", "lr", "raw_loss", "loss")


class CSVFormatError(InputError):
    """A CSV file that is not a readable LR finder log; the message names the file and the problem."""


def _reason(exc: OSError) -> str:
    """The OS's words for a failure, without the file name it carries (which may be a temporary file)."""
    return exc.strerror or str(exc)


def make_dirs(path: str | os.PathLike[str]) -> list[Path]:
    """Create the folder ``path`` and its missing parents; return the folders created, outermost first.

    Raises:
        StorageError: naming ``path``: a file stands where a folder must be, or the OS refuses.
    """
    folder = Path(path)
    chain = [*reversed(folder.parents), folder]
    # os.path's checks, not Path's: they answer False where Path raises (a name too long, for one)
    blocker = next((p for p in chain if os.path.exists(p) and not os.path.isdir(p)), None)
    if blocker == folder:
        raise StorageError(f"{path}: exists and is not a folder")
    if blocker is not None:
        raise StorageError(f"{path}: cannot create the folder, {blocker} is a file")
    created = [p for p in chain if not os.path.exists(p)]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"{path}: cannot create the folder ({_reason(exc)})") from exc
    return created


def _open_temp(target: Path) -> tuple[int, Path]:
    """A new temporary file beside ``target``, created with the mode ``open(target, "w")`` would give.

    ``tempfile.mkstemp`` makes every file 0600 whatever the umask, so another user or a web server could
    not read ``best_lr.txt``; creating with 0666 lets the OS apply the umask, and a file being replaced
    keeps its own mode, as it would when opened for writing.
    """
    try:
        keep: int | None = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        keep = None
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {_reason(exc)}") from exc
    if keep is not None and hasattr(os, "fchmod"):
        os.fchmod(fd, keep)
    return fd, tmp


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Write a file through ``write(binary_file)`` into a temp file beside ``path``, then rename it over; folders
    are created. Raises :class:`~lr_finder.errors.StorageError` naming ``path`` when the folder cannot be made,
    ``path`` is a folder, or the OS refuses the write (the old file is then untouched)."""
    target = Path(path)
    if os.path.isdir(target):
        raise StorageError(f"{path}: is a folder; give a file name")
    try:
        make_dirs(target.parent)
    except StorageError as exc:
        raise StorageError(f"cannot write {target}: {exc}") from exc
    fd, tmp = _open_temp(target)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise StorageError(f"cannot write {target}: {_reason(exc)}") from exc
        raise
    return target


def image_target(path: str | os.PathLike[str], formats: Collection[str], default_name: str = PLOT_NAME) -> Path:
    """The image file ``path`` names: a folder (existing, or written with a trailing ``/``) gets
    ``default_name`` inside it; otherwise the name must end in one of ``formats`` (``png``, ``svg``, ...).

    Raises:
        InputError: naming ``path`` and the accepted extensions, before anything is drawn or written.
    """
    text = os.fspath(path)
    target = Path(text)
    if text.endswith(tuple(s for s in (os.sep, os.altsep, "/") if s)) or os.path.isdir(target):
        target = target / default_name
    ext = target.suffix.lower().lstrip(".")
    if ext not in formats:
        problem = "has no file extension" if not ext else f"ends in .{ext}, not an image format"
        example = target.with_suffix(".png") if ext else f"{text}.png"
        raise InputError(
            f"{text}: {problem}; name an image file such as {example} (accepted: "
            f"{', '.join(sorted(formats))}), or a folder ending in '/' to get {default_name} in it"
        )
    return target


#: How the image formats matplotlib writes begin (SVG may open with an XML prolog or whitespace): PNG, PDF,
#: JPEG, SVG, PostScript, TIFF (either byte order), WebP.
_IMAGE_MAGIC = (b"\x89PNG", b"%PDF", b"\xff\xd8\xff", b"<?xml", b"<svg", b"%!PS", b"II*\x00", b"MM\x00*", b"RIFF")


def looks_like_image(path: str | os.PathLike[str]) -> bool:
    """Whether an existing file is an image (so replacing it with a new image loses no user data)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    svg = b"<svg" in head and Path(path).suffix.lower() == ".svg"
    return not head or head.lstrip().startswith(_IMAGE_MAGIC) or svg  # an empty file holds nothing to lose


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def history_to_csv(history: History) -> str:
    # plain numbers need no CSV quoting: one f-string per row is what csv.writer would write, 3x faster
    rows = (
        f"{i},{float(lr)!r},{float(raw)!r},{float(smooth)!r}\n"
        for i, (lr, raw, smooth) in enumerate(zip(history.lr, history.raw_loss, history.loss, strict=True))
    )
    return ",".join(CSV_COLUMNS) + "\n" + "".join(rows)


def write_csv(history: History, path: str | os.PathLike[str]) -> Path:
    """Write one row per step: ``step, lr, raw_loss, loss`` (loss is the smoothed loss), full precision."""
    return atomic_write_text(path, history_to_csv(history))


def read_csv(path: str | os.PathLike[str]) -> History:
    """Read a log written by :func:`write_csv` back into a :class:`History`, strictly: a sweep records finite
    losses at a rising LR, so anything else is not a range-test log.

    Raises:
        CSVFormatError: naming the file and the line: the file is missing, unreadable or empty, lacks a
            column, holds text where a number must be, a loss that is not finite, or an LR that is not
            positive or falls below the previous row's.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CSVFormatError(f"{p}: cannot read the file ({exc})") from exc
    return parse_csv(text, str(p))


def parse_csv(text: str, name: str = "<csv>") -> History:
    """Parse the text of an LR finder CSV log (see :func:`read_csv`). A well-formed log is read by numpy's C
    parser and checked column-wise (7x faster); anything else is read again row by row, which names the first
    bad line and what is wrong."""
    fast = _parse_fast(text)
    return fast if fast is not None else _parse_rows(text, name)


def _parse_fast(text: str) -> History | None:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        return None
    header = [h.strip() for h in next(csv.reader([lines[0]]))]
    if "lr" not in header or "loss" not in header:
        return None
    names = [c for c in ("lr", "loss", "raw_loss") if c in header]
    usecols = [header.index(c) for c in names]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = np.loadtxt(lines[1:], delimiter=",", usecols=usecols, ndmin=2, comments=None)
    except ValueError:
        return None
    lr = table[:, 0]
    if not (np.isfinite(table).all() and (lr > 0).all() and (np.diff(lr) >= 0).all()):
        return None
    cols: dict[str, list[float]] = dict(zip(names, table.T.tolist(), strict=True))
    return History(tuple(cols["lr"]), tuple(cols["loss"]), tuple(cols.get("raw_loss", cols["loss"])))


def _parse_rows(text: str, name: str) -> History:
    reader = csv.reader(_io.StringIO(text))
    rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    if not rows:
        raise CSVFormatError(f"{name}: the file is empty; expected a header {','.join(CSV_COLUMNS)} and rows")
    header = [h.strip() for h in rows[0][1]]
    missing = [c for c in ("lr", "loss") if c not in header]
    if missing:
        raise CSVFormatError(f"{name}: missing column(s) {', '.join(missing)}; the header is {','.join(header)}")
    if len(rows) == 1:
        raise CSVFormatError(f"{name}: the file has a header but no rows")
    cols = {c: header.index(c) for c in ("lr", "raw_loss", "loss") if c in header}
    out: dict[str, list[float]] = {c: [] for c in cols}
    for lineno, row in rows[1:]:
        for c, j in cols.items():
            out[c].append(_number(row, j, c, f"{name}, line {lineno}"))
    _check_curve(out, [n for n, _ in rows[1:]], name)
    return History(tuple(out["lr"]), tuple(out["loss"]), tuple(out.get("raw_loss", out["loss"])))


def _number(row: list[str], j: int, column: str, where: str) -> float:
    if j >= len(row):
        raise CSVFormatError(f"{where}: no value in column {column!r}")
    cell = row[j].strip()
    try:
        return float(cell)
    except ValueError:
        raise CSVFormatError(f"{where}: column {column!r} holds {cell!r}, not a number") from None


def _check_curve(columns: dict[str, list[float]], lines: list[int], name: str) -> None:
    """What makes the numbers a range-test curve: finite losses, at positive LRs that never fall."""
    lrs = columns["lr"]
    for k, lr in enumerate(lrs):
        if not (math.isfinite(lr) and lr > 0):
            raise CSVFormatError(
                f"{name}, line {lines[k]}: column 'lr' must hold positive finite numbers, found {lr!r}"
            )
        if k and not lr >= lrs[k - 1]:
            raise CSVFormatError(
                f"{name}, line {lines[k]}: lr {lr!r} is below the previous row's {lrs[k - 1]!r}; a "
                "range-test log has one row per step, the LR rising"
            )
    for column in ("loss", "raw_loss"):
        for k, v in enumerate(columns.get(column, ())):
            if not math.isfinite(v):
                raise CSVFormatError(
                    f"{name}, line {lines[k]}: column {column!r} holds {v!r}; a range-test log holds "
                    "finite losses only (the sweep stops before recording a non-finite loss)"
                )


def write_best_lr(lr: float, path: str | os.PathLike[str]) -> Path:
    """Write the suggested LR as one full-precision number, readable with ``float(open(p).read())``."""
    return atomic_write_text(path, f"{float(lr)!r}\n")


def jsonable(obj: Any) -> Any:
    """``obj`` as data ``json.dumps`` accepts: non-finite floats become ``None``, unknown objects their ``str``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj if obj is None or isinstance(obj, (str, int)) else str(obj)  # bool is an int


def write_json(data: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``data`` as indented JSON (non-finite floats become null, unknown objects their ``str``)."""
    return atomic_write_text(path, json.dumps(jsonable(data), indent=2) + "\n")
