"""The ``lr-finder`` command. Argument parsing and reporting only: every command calls the public API.

Exit codes: 0 success; 2 bad arguments or an unreadable / invalid input (a SPEC that cannot be loaded or
returns the wrong thing, a CSV that is not a range-test log), with a one-line message naming the input and
the problem; 1 a failed run (the SPEC's code or the range test raised, or no learning rate could be
suggested; the outputs that could be written are written).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import importlib
import importlib.util
import inspect
import json
import logging
import math
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from ._version import __version__
from .files import BEST_LR_NAME, CSV_NAME, PLOT_NAME, SUMMARY_NAME
from .suggestion import available_methods

#: What ``analyze`` writes beside the plot (the run's own ``lr_finder_summary.json`` is left alone).
ANALYSIS_NAME = "lr_finder_analysis.json"
#: The default image of ``compare``.
COMPARE_NAME = "lr_finder_compare.png"
METHODS = tuple(available_methods())  # "default" and every method of lr_finder.suggestion
SPEC_KEYS = ("model", "optimizer", "criterion", "train_loader")
SPEC_OPTIONAL = ("val_loader", "loss_fn", "scaler")
_PKG_DIR = Path(__file__).resolve().parent


class InputError(click.ClickException):
    """Bad arguments or an unreadable / invalid input: exit status 2, one line, no traceback."""

    exit_code = 2


class RunFailed(click.ClickException):
    """The run failed (the user's code raised, or no LR could be suggested): exit status 1."""

    exit_code = 1


# -- shared helpers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """``--quiet``: only the library's warnings, for the duration of the command."""
    log = logging.getLogger("lr_finder")
    level = log.level
    if quiet:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def _out_dir(path: str, option: str = "--out") -> Path:
    """An output folder: created when missing; an existing file there is refused (exit 2)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {path}: exists and is not a folder; give a folder for the outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot create the folder ({exc.strerror or exc})") from exc
    return out


def _read_log(path: str) -> Any:
    """Read a CSV log and check it is a range-test curve; any problem is exit 2 naming the file."""
    from .files import CSVFormatError, read_csv

    try:
        history = read_csv(path)
    except CSVFormatError as exc:
        raise InputError(str(exc)) from exc
    for column in ("loss", "raw_loss"):
        values = getattr(history, column)
        for i, v in enumerate(values):
            if not math.isfinite(v):
                raise InputError(
                    f"{path}, line {i + 2}: column {column!r} holds {v!r}; a range-test log holds finite "
                    "losses only (the sweep stops before recording a non-finite loss)"
                )
    lrs = history.lr
    for i in range(1, len(lrs)):
        if not lrs[i] >= lrs[i - 1]:
            raise InputError(
                f"{path}, line {i + 2}: lr {lrs[i]!r} is below the previous row's {lrs[i - 1]!r}; "
                "a range-test log has one row per step, the LR rising"
            )
    return history


def _fmt(lr: float | None) -> str:
    return "none" if lr is None else f"{lr:.3e}"


def _report(summary: Mapping[str, Any], written: Sequence[Path]) -> list[str]:
    """The text a command prints: the suggestion first (one parseable line), then the details."""
    s = summary["suggestion"]
    lines = []
    if s["lr"] is None:
        lines.append(f"No learning rate suggested ({s['method']}): {s['reason']}")
    else:
        lines.append(f"Suggested learning rate: {_fmt(s['lr'])}")
        lines.append(f"  method: {s['method']}, confidence {s['confidence_label']} ({s['confidence']:.2f})")
    if s["low"] is not None and s["high"] is not None:
        lines.append(f"  optimal range: {_fmt(s['low'])} .. {_fmt(s['high'])}")
    others = [
        f"{name} {_fmt(m['lr'])}"
        for name, m in summary["methods"].items()
        if name not in ("default", s["method"])
    ]
    if others:
        lines.append("  other methods: " + ", ".join(others))
    lines.append(f"  steps: {summary['steps_recorded']}")
    if summary.get("stop_reason"):
        lines.append(f"  stopped early: {summary['stop_reason']}")
    for note in s["diagnostics"]:
        if note and note != s["reason"]:
            lines.append(f"  note: {note}")
    if written:
        lines.append("Wrote " + ", ".join(str(p) for p in written))
    return lines


def _emit(summary: Mapping[str, Any], written: Sequence[Path], as_json: bool) -> None:
    if as_json:
        from .files import _jsonable

        click.echo(json.dumps(_jsonable(dict(summary)), indent=2))
    else:
        click.echo("\n".join(_report(summary, written)))


def _fail_without_suggestion(summary: Mapping[str, Any]) -> None:
    s = summary["suggestion"]
    if s["lr"] is None:
        raise RunFailed(f"no learning rate could be suggested: {s['reason']}")


# -- SPEC loading --------------------------------------------------------------------------------------


def _parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; values are Python literals (``32``, ``1e-3``, ``'adam'``, ``True``) or strings."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise InputError(f"--param {item!r}: expected KEY=VALUE, e.g. --param batch_size=64")
        try:
            params[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            params[key] = raw
    return params


def _import_file(path: Path, spec: str) -> Any:
    """Import a Python file as a module; its folder goes on ``sys.path`` so its own imports work."""
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = path.stem if path.stem.isidentifier() and path.stem not in sys.modules else None
    name = name or f"_lr_finder_spec_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise InputError(f"{path}: cannot be imported as Python (SPEC {spec!r})")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise InputError(f"{path}, line {exc.lineno}: syntax error: {exc.msg} (SPEC {spec!r})") from exc
    except Exception as exc:
        sys.modules.pop(name, None)
        raise _user_code_failed(f"importing {path}", exc) from exc
    return module


def _import_module(target: str, spec: str) -> Any:
    cwd = os.getcwd()
    if cwd not in sys.path:  # like `python -m`: modules in the working folder are importable
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
            raise InputError(
                f"SPEC {spec!r}: no module named {exc.name!r}; give 'package.module:function' importable "
                "from here, or 'path/to/file.py:function'"
            ) from exc
        raise _user_code_failed(f"importing {target}", exc) from exc
    except SyntaxError as exc:
        raise InputError(
            f"{exc.filename}, line {exc.lineno}: syntax error: {exc.msg} (SPEC {spec!r})"
        ) from exc
    except Exception as exc:
        raise _user_code_failed(f"importing {target}", exc) from exc


def load_spec(spec: str) -> Callable[..., Any]:
    """The function named by ``package.module:function`` or ``path/to/file.py:function``."""
    target, sep, func_name = spec.rpartition(":")
    if not sep or not target or not func_name.isidentifier():
        raise InputError(
            f"SPEC {spec!r} must be 'package.module:function' or 'path/to/file.py:function', naming a "
            "function that returns (model, optimizer, criterion, train_loader)"
        )
    is_path = target.endswith(".py") or "/" in target or os.sep in target
    if is_path:
        path = Path(target)
        if not path.is_file():
            raise InputError(f"{target}: no such file (SPEC {spec!r})")
        module = _import_file(path, spec)
    else:
        module = _import_module(target, spec)
    fn = getattr(module, func_name, None)
    if fn is None:
        public = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        hint = f"; its functions: {', '.join(public[:8])}" if public else ""
        raise InputError(f"SPEC {spec!r}: {target} has no {func_name!r}{hint}")
    if not callable(fn):
        raise InputError(f"SPEC {spec!r}: {func_name} is a {type(fn).__name__}, not a function")
    return fn


def _user_code_failed(what: str, exc: BaseException) -> RunFailed:
    err = RunFailed(f"{what} raised {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


def unpack_spec(result: Any, spec: str) -> dict[str, Any]:
    """The SPEC function's result as a dict with the four required keys and any optional ones."""
    usage = (
        "return (model, optimizer, criterion, train_loader[, val_loader]) or a dict with the keys "
        f"{', '.join(SPEC_KEYS)} (optional: {', '.join(SPEC_OPTIONAL)})"
    )
    if isinstance(result, Mapping):
        keys = [str(k) for k in result]
        missing = [k for k in SPEC_KEYS if k not in result]
        unknown = [k for k in keys if k not in SPEC_KEYS + SPEC_OPTIONAL]
        if missing or unknown:
            problem = "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else [])
                + ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
            )
            raise InputError(f"SPEC {spec!r} returned a dict with {problem}: {usage}")
        return {str(k): v for k, v in result.items()}
    if isinstance(result, (tuple, list)) and len(result) in (4, 5):
        return dict(zip(SPEC_KEYS + ("val_loader",), result, strict=False))
    what = (
        f"a {type(result).__name__} of {len(result)}"
        if isinstance(result, (tuple, list))
        else type(result).__name__
    )
    raise InputError(f"SPEC {spec!r} returned {what}: {usage}")


def _raised_by_library_checks(exc: BaseException) -> bool:
    """A ValueError/TypeError raised by lr_finder's own checks (not by the user's model or data code)."""
    if not isinstance(exc, (ValueError, TypeError)):
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().parent == _PKG_DIR


# -- the commands --------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="lr-finder")
def cli() -> None:
    """Find a good learning rate for a PyTorch model with the LR range test.

    \b
    Commands:
      demo      a real range test on bundled data (no download)
      run       a range test on your model, named by SPEC
      analyze   re-analyse and re-plot a saved lr_finder_log.csv, without training
      compare   overlay several saved curves with their suggestions

    Exit status: 0 success; 2 bad arguments or an invalid input file; 1 a failed run or no suggestion.
    """


@cli.command()
@click.option("--out", "out_dir", default="lr_finder_demo", show_default=True, help="Folder for the outputs.")
@click.option(
    "--num-iter", default=100, show_default=True, type=click.IntRange(min=2), help="Steps of the sweep."
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def demo(out_dir: str, num_iter: int, no_progress: bool) -> None:
    """Run a real range test on scikit-learn's bundled digits data (no download).

    Writes lr_finder_plot.png, lr_finder_log.csv, best_lr.txt and lr_finder_summary.json into OUT.
    """
    from .demo import run_demo

    _out_dir(out_dir)
    try:
        lr = run_demo(out_dir, num_iter=num_iter, show_progress=not no_progress)
    except ImportError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"Suggested learning rate: {lr:.3e}" if lr is not None else "No learning rate could be suggested."
    )
    click.echo(f"Outputs written to {out_dir}/")
    if lr is None:
        sys.exit(1)


@cli.command()
@click.argument("spec")
@click.option(
    "--start-lr", default=1e-7, show_default=True, type=float, help="First learning rate of the sweep."
)
@click.option("--end-lr", default=1.0, show_default=True, type=float, help="Last learning rate of the sweep.")
@click.option(
    "--num-iter", default=100, show_default=True, type=int, help="Steps (recorded points) of the sweep."
)
@click.option(
    "--step-mode", default="exp", show_default=True, type=click.Choice(["exp", "linear"]), help="LR spacing."
)
@click.option(
    "--smooth-f", default=0.05, show_default=True, type=float, help="EMA weight of the newest loss."
)
@click.option(
    "--diverge-th", default=5.0, show_default=True, type=float, help="Stop when loss > this x best."
)
@click.option("--accumulation-steps", default=1, show_default=True, type=int, help="Micro-batches per step.")
@click.option("--no-amp", is_flag=True, help="No mixed precision (it is only used on CUDA by default).")
@click.option("--no-adaptive-stop", is_flag=True, help="Do not stop on a sudden sustained loss spike.")
@click.option(
    "--method", default="default", show_default=True, type=click.Choice(METHODS), help="Suggestion method."
)
@click.option("--out", "out_dir", default="lr_finder_run", show_default=True, help="Folder for the outputs.")
@click.option("--slope", is_flag=True, help="Add a panel with the slope the suggestion reads.")
@click.option(
    "--param",
    "-p",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Keyword argument for the SPEC function (repeatable), e.g. -p batch_size=64.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of text.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and the result (implies --no-progress).")
@click.option("--traceback", "show_traceback", is_flag=True, help="Print the traceback of a failed run.")
def run(
    spec: str,
    start_lr: float,
    end_lr: float,
    num_iter: int,
    step_mode: str,
    smooth_f: float,
    diverge_th: float,
    accumulation_steps: int,
    no_amp: bool,
    no_adaptive_stop: bool,
    method: str,
    out_dir: str,
    slope: bool,
    params: tuple[str, ...],
    as_json: bool,
    no_progress: bool,
    quiet: bool,
    show_traceback: bool,
) -> None:
    """Run a range test on the model that SPEC builds, print the suggestion and write the outputs.

    SPEC is 'package.module:function' or 'path/to/file.py:function'. The function returns
    (model, optimizer, criterion, train_loader[, val_loader]) or a dict with those keys (optionally
    loss_fn and scaler). It places the model on its device; batches follow the model.

    Writes lr_finder_plot.png, lr_finder_log.csv, best_lr.txt and lr_finder_summary.json into OUT
    (only those names; other files there are left alone).
    """
    from .settings import RangeTestSettings

    try:
        RangeTestSettings(
            start_lr=start_lr,
            end_lr=end_lr,
            num_iter=num_iter,
            step_mode=step_mode,
            smooth_f=smooth_f,
            diverge_th=diverge_th,
            accumulation_steps=accumulation_steps,
        )
    except (ValueError, TypeError) as exc:
        raise InputError(f"invalid option: {exc}") from exc
    kwargs = _parse_params(params)
    out = _out_dir(out_dir)
    try:
        fn = load_spec(spec)
        try:
            inspect.signature(fn).bind(**kwargs)
        except TypeError as exc:
            raise InputError(
                f"--param: {getattr(fn, '__name__', spec)}() does not accept them: {exc}"
            ) from exc
        except ValueError:  # no signature (a builtin): let the call decide
            pass
        try:
            objects = unpack_spec(fn(**kwargs), spec)
        except click.ClickException:
            raise
        except Exception as exc:
            raise _user_code_failed(f"SPEC {spec!r}", exc) from exc
        with _quiet(quiet):
            _run(
                spec,
                kwargs,
                objects,
                out,
                method,
                slope,
                as_json,
                quiet or no_progress,
                {
                    "start_lr": start_lr,
                    "end_lr": end_lr,
                    "num_iter": num_iter,
                    "step_mode": step_mode,
                    "smooth_f": smooth_f,
                    "diverge_th": diverge_th,
                    "use_amp": not no_amp,
                    "adaptive_stop": not no_adaptive_stop,
                    "accumulation_steps": accumulation_steps,
                },
            )
    except RunFailed as exc:
        if show_traceback and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
            raise
        if exc.__cause__ is not None:
            hint = " (rerun with --traceback for the full traceback)"
            raise RunFailed(exc.message + hint) from exc.__cause__
        raise


def _run(
    spec: str,
    kwargs: dict[str, Any],
    objects: dict[str, Any],
    out: Path,
    method: str,
    slope: bool,
    as_json: bool,
    hide_progress: bool,
    range_args: dict[str, Any],
) -> None:
    from .finder import LRFinder

    try:
        finder = LRFinder(
            objects["model"],
            objects["optimizer"],
            objects["criterion"],
            scaler=objects.get("scaler"),
            loss_fn=objects.get("loss_fn"),
        )
    except (ValueError, TypeError) as exc:
        raise InputError(f"SPEC {spec!r} returned objects LRFinder cannot use: {exc}") from exc
    try:
        finder.range_test(
            objects["train_loader"],
            val_loader=objects.get("val_loader"),
            show_progress=not hide_progress,
            **range_args,
        )
    except Exception as exc:
        if finder.history.num_steps == 0 and _raised_by_library_checks(exc):
            raise InputError(f"SPEC {spec!r}: {exc}") from exc
        raise _user_code_failed("the range test", exc) from exc
    finder.history = dataclasses.replace(
        finder.history, settings={**finder.history.settings, "spec": spec, "spec_params": kwargs}
    )
    try:
        finder.plot(save_path=out / PLOT_NAME, method=method, show_slope=slope)
    except OSError as exc:
        raise RunFailed(f"cannot write the outputs into {out}: {exc}") from exc
    summary = finder.summary(method)
    written = [out / n for n in (PLOT_NAME, CSV_NAME, BEST_LR_NAME, SUMMARY_NAME) if (out / n).is_file()]
    _emit(summary, written, as_json)
    _fail_without_suggestion(summary)


@cli.command()
@click.argument("csv_path", metavar="CSV", type=click.Path(dir_okay=False))
@click.option(
    "--method", default="default", show_default=True, type=click.Choice(METHODS), help="Suggestion method."
)
@click.option("--out", "out_dir", default=None, help="Folder for the outputs  [default: the CSV's folder]")
@click.option("--slope", is_flag=True, help="Add a panel with the slope the suggestion reads.")
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON instead of text.")
def analyze(csv_path: str, method: str, out_dir: str | None, slope: bool, as_json: bool) -> None:
    """Re-analyse a saved lr_finder_log.csv and re-draw its plot, without training.

    Computes every method's suggestion, the optimal range and the diagnostics from the CSV's smoothed
    loss, exactly as the run did. Writes lr_finder_plot.png, best_lr.txt and lr_finder_analysis.json
    into OUT (the CSV and a run's lr_finder_summary.json are never rewritten).
    """
    from . import files, plotting

    history = _read_log(csv_path)
    out = _out_dir(out_dir if out_dir is not None else str(Path(csv_path).parent))
    run_summary = _run_summary_beside(Path(csv_path), history.num_steps)
    if run_summary is not None:  # the run's settings and stop reason, for the plot's title and the JSON
        history = dataclasses.replace(
            history, settings=run_summary["settings"], stop_reason=run_summary.get("stop_reason")
        )
    summary = files.summarize(history, method)
    summary["source_csv"] = str(Path(csv_path))
    summary["source_summary"] = None if run_summary is None else str(Path(csv_path).parent / SUMMARY_NAME)
    result = history.analyze(method)
    written = []
    plot_path = out / PLOT_NAME
    plotting.save_figure(plotting.draw(history, result, show_slope=slope), plot_path)
    written.append(plot_path)
    best = out / BEST_LR_NAME
    if result.lr is not None:
        written.append(files.write_best_lr(result.lr, best))
    elif best.is_file():
        best.unlink()  # an earlier value must not outlive an analysis that suggests none
    written.append(files.write_json(summary, out / ANALYSIS_NAME))
    _emit(summary, written, as_json)
    _fail_without_suggestion(summary)


def _run_summary_beside(csv_path: Path, steps: int) -> dict[str, Any] | None:
    """The run's ``lr_finder_summary.json`` next to the CSV, when it describes this very CSV."""
    path = csv_path.parent / SUMMARY_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and isinstance(data.get("settings"), dict)):
        return None
    if data.get("steps_recorded") != steps:  # from another run: ignore it
        return None
    reason = data.get("stop_reason")
    return {"settings": data["settings"], "stop_reason": reason if isinstance(reason, str) else None}


def _labels(paths: Sequence[str], given: str | None) -> list[str]:
    if given is not None:
        labels = [x.strip() for x in given.split(",")]
        if len(labels) != len(paths):
            raise InputError(
                f"--labels has {len(labels)} label(s) for {len(paths)} CSV file(s): give one per file, "
                "separated by commas"
            )
        return labels
    labels = [
        Path(p).parent.name if Path(p).name == CSV_NAME and Path(p).parent.name else Path(p).stem
        for p in paths
    ]
    if len(set(labels)) < len(labels):
        labels = [str(p) for p in paths]
    return labels


@cli.command()
@click.argument("csv_paths", metavar="CSV...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--out", "out_path", default=COMPARE_NAME, show_default=True, help="Image to write (.png, .svg, .pdf)."
)
@click.option(
    "--labels", default=None, help="Comma-separated legend labels, one per CSV [default: folder names]."
)
@click.option(
    "--method", default="default", show_default=True, type=click.Choice(METHODS), help="Suggestion method."
)
@click.option("--slope", is_flag=True, help="Add a panel with each curve's slope.")
@click.option("--raw", is_flag=True, help="Draw each raw loss faintly behind its smoothed loss.")
@click.option("--title", default="LR range tests compared", show_default=True, help="Title of the plot.")
def compare(
    csv_paths: tuple[str, ...],
    out_path: str,
    labels: str | None,
    method: str,
    slope: bool,
    raw: bool,
    title: str,
) -> None:
    """Overlay several saved curves (e.g. batch sizes or optimizers) with their suggestions.

    Each curve's optimal range is drawn thick, its suggested LR as a dashed line and a dot; the legend
    names each curve with its suggestion, also printed here. Only the image OUT is written: it must
    have an image extension, and an existing file there is replaced only if it is an image.
    """
    from . import plotting

    out = Path(out_path)
    ext = out.suffix.lower().lstrip(".")
    formats = plotting.image_formats()
    if ext not in formats:
        raise InputError(
            f"--out {out_path}: not an image file name; end it with .png, .svg or .pdf "
            f"(supported: {', '.join(sorted(formats))})"
        )
    if out.exists() and not out.is_file():
        raise InputError(f"--out {out_path}: exists and is not a file")
    names = _labels(csv_paths, labels)
    inputs = {Path(p).resolve() for p in csv_paths}
    if out.resolve() in inputs:
        raise InputError(f"--out {out_path}: is one of the input CSV files; choose another name")
    if out.is_file() and not _looks_like_image(out):
        raise InputError(f"--out {out_path}: an existing file that is not an image; it is left alone")
    histories = [_read_log(p) for p in csv_paths]
    results = [h.analyze(method) for h in histories]
    ax = plotting.draw_compare(histories, results, names, show_slope=slope, raw=raw, title=title or None)
    plotting.save_figure(ax, out)
    width = max(len(n) for n in names)
    for name, r in zip(names, results, strict=True):
        rng = f"  range {_fmt(r.low)} .. {_fmt(r.high)}" if r.low is not None and r.high is not None else ""
        tail = f"  ({r.confidence_label} confidence)" if r.lr is not None else f"  ({r.reason})"
        click.echo(f"{name:<{width}}  {_fmt(r.lr)}{rng}{tail}")
    click.echo(f"Wrote {out}")


_IMAGE_MAGIC = (
    b"\x89PNG",
    b"%PDF",
    b"\xff\xd8\xff",
    b"<?xml",
    b"<svg",
    b"%!PS",
    b"II*\x00",
    b"MM\x00*",
    b"RIFF",
)


def _looks_like_image(path: Path) -> bool:
    """Whether an existing file is an image (so replacing it with the new image loses no user data)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    if not head:
        return True  # an empty file holds nothing to lose
    return head.lstrip().startswith(_IMAGE_MAGIC) or (b"<svg" in head and path.suffix.lower() == ".svg")


def main() -> None:
    # warnings as one line each, without the source line they were raised from
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
