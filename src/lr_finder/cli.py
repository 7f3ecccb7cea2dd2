"""The ``lr-finder`` command. Argument parsing and reporting only: every command calls the public API.

Exit codes follow the type of the error, in one place (:class:`_Commands`): 0 success; 2 bad input, any
:class:`~lr_finder.errors.InputError` (:class:`~lr_finder.errors.StorageError` too), in one line naming the
input and the problem; 1 a failed run (the user's code raised, the range test recorded no curve, or no
learning rate could be suggested; what could be written is written).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from . import errors, files
from ._logging import LOGGER_NAME, api_logger
from ._version import __version__
from .files import ANALYSIS_PLOT_NAME, BEST_LR_NAME, COMPARE_NAME, CSV_NAME, PLOT_NAME, SUMMARY_NAME
from .schedule import STEP_MODES
from .settings import DEFAULTS, RangeTestSettings
from .spec import UserCodeError
from .suggestion import analyze_history, available_methods

_METHOD = click.option(
    "--method", default="default", show_default=True, type=click.Choice(available_methods()), help="Suggestion method."
)


class BadInput(click.ClickException):
    """Bad arguments or an unreadable / invalid input: exit status 2, one line, no traceback."""

    exit_code = 2


class _Commands(click.Group):
    """The command group; turns the library's typed errors into exit codes, whichever command raised."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with _messages_on_stderr():
                return super().invoke(ctx)
        except errors.InputError as exc:  # InputTypeError and StorageError too
            raise BadInput(str(exc)) from exc
        except errors.RangeTestError as exc:
            raise click.ClickException(f"the range test failed: {exc}") from exc


@contextlib.contextmanager
def _messages_on_stderr() -> Iterator[None]:
    """The command is the application, so it configures the library's logging: INFO and up, the message alone,
    on stderr (stdout is the result's), without the hints meant for users of the Python API. Put back as found
    afterwards, for a caller that invokes the command inside its own process."""
    log = logging.getLogger(LOGGER_NAME)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(lambda record: record.name != api_logger.name)
    level, propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # shown once, here, even if the SPEC's own code configures logging
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
        log.propagate = propagate


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    log = logging.getLogger(LOGGER_NAME)
    level = log.level
    log.setLevel(logging.WARNING if quiet else level)
    try:
        yield
    finally:
        log.setLevel(level)


@contextlib.contextmanager
def _output_folder(path: str | Path) -> Iterator[Path]:
    """The output folder, created now so that one that cannot be made fails before any work; the
    folders created here are taken away again when the command fails before writing into them."""
    created = files.make_dirs(path)
    try:
        yield Path(path)
    except BaseException:
        for folder in reversed(created):  # innermost first; a folder holding anything stays
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


@contextlib.contextmanager
def _user_code_reported(show_traceback: bool) -> Iterator[None]:
    """The user's code raised: exit 1 with one line (and ``--traceback`` for the user's traceback)."""
    try:
        yield
    except UserCodeError as exc:
        cause = exc.__cause__
        if show_traceback and cause is not None:
            traceback.print_exception(cause, file=sys.stderr)
            raise click.ClickException(str(exc)) from cause
        raise click.ClickException(f"{exc} (rerun with --traceback for the full traceback)") from cause


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
    others = [f"{n} {_fmt(m['lr'])}" for n, m in summary["methods"].items() if n not in ("default", s["method"])]
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
    """Print the summary, as JSON or as :func:`_report`'s text; no suggestion is a failed run."""
    click.echo(json.dumps(files.jsonable(dict(summary)), indent=2) if as_json else "\n".join(_report(summary, written)))
    if summary["suggestion"]["lr"] is None:
        raise click.ClickException(f"no learning rate could be suggested: {summary['suggestion']['reason']}")


@click.group(
    cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.version_option(__version__, prog_name="lr-finder")
def cli() -> None:
    """Find a good learning rate for a PyTorch model with the LR range test.

    \b
    Commands:
      demo      a real range test on bundled data (no download)
      run       a range test on your model, named by SPEC
      analyze   re-analyse and re-plot a saved lr_finder_log.csv, without training
      compare   overlay several saved curves with their suggestions

    Exit status: 0 success; 2 bad input (arguments, SPEC, CSV, or an output path that cannot be
    written); 1 a failed run or no suggestion.
    """


@cli.command()
@click.option("--out", "out_dir", default="lr_finder_demo", show_default=True, help="Folder for the outputs.")
@click.option(
    "--num-iter", default=DEFAULTS["num_iter"], show_default=True, type=click.IntRange(min=2),
    help="Steps of the sweep.",
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def demo(out_dir: str, num_iter: int, no_progress: bool) -> None:
    """Run a real range test on scikit-learn's bundled digits data (no download).

    Writes lr_finder_plot.png, lr_finder_log.csv, best_lr.txt and lr_finder_summary.json into OUT.
    """
    from .demo import run_demo

    with _output_folder(out_dir):
        try:
            lr = run_demo(out_dir, num_iter=num_iter, show_progress=not no_progress)
        except ImportError as exc:
            raise click.ClickException(str(exc)) from exc
    click.echo(f"Suggested learning rate: {lr:.3e}" if lr is not None else "No learning rate could be suggested.")
    click.echo(f"Outputs written to {out_dir}/")
    if lr is None:
        sys.exit(1)


#: The ``run`` options that are range-test settings, with their help; the defaults come from DEFAULTS.
_SETTING_HELP = {
    "start_lr": "First learning rate of the sweep.",
    "end_lr": "Last learning rate of the sweep.",
    "num_iter": "Steps (recorded points) of the sweep.",
    "step_mode": "LR spacing.",
    "smooth_f": "EMA weight of the newest loss.",
    "diverge_th": "Stop when loss > this x best.",
    "accumulation_steps": "Micro-batches per step.",
    "use_amp": "Mixed precision (used on CUDA only).",
    "adaptive_stop": "Also stop on a sudden sustained loss spike.",
    "show_progress": "Show the progress bar.",
}
#: Flags named after what they switch, not after the setting.
_FLAG_NAMES = {"use_amp": "amp", "show_progress": "progress"}


def _setting_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add one option per range-test setting, its default and type taken from ``settings.DEFAULTS``."""
    for name, help_text in reversed(_SETTING_HELP.items()):
        default = DEFAULTS[name]
        flag = _FLAG_NAMES.get(name, name).replace("_", "-")
        decl = f"--{flag}/--no-{flag}" if isinstance(default, bool) else f"--{flag}"
        kind = click.Choice(STEP_MODES) if name == "step_mode" else type(default)
        command = click.option(decl, name, default=default, type=kind, show_default=True, help=help_text)(command)
    return command


@cli.command()
@click.argument("spec")
@_setting_options
@_METHOD
@click.option("--out", "out_dir", default="lr_finder_run", show_default=True, help="Folder for the outputs.")
@click.option("--slope", is_flag=True, help="Add a panel with the slope the suggestion reads.")
@click.option(
    "--param", "-p", "params", multiple=True, metavar="KEY=VALUE",
    help="Keyword argument for the SPEC function (repeatable), e.g. -p batch_size=64.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON instead of text.")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and the result (implies --no-progress).")
@click.option("--traceback", "show_traceback", is_flag=True, help="Print the traceback of a failed run.")
def run(
    spec: str, method: str, out_dir: str, slope: bool, params: tuple[str, ...], as_json: bool, quiet: bool,
    show_traceback: bool, **options: Any,
) -> None:
    """Run a range test on the model that SPEC builds, print the suggestion and write the outputs.

    SPEC is 'package.module:function' or 'path/to/file.py:function'. The function returns
    (model, optimizer, criterion, train_loader[, val_loader]) or a dict with those keys (optionally
    loss_fn and scaler). It places the model on its device; batches follow the model.

    Writes lr_finder_plot.png, lr_finder_log.csv, best_lr.txt and lr_finder_summary.json into OUT
    (only those names; other files there are left alone).
    """
    from . import distributed, report
    from . import spec as specs

    if quiet:
        options["show_progress"] = False
    settings = RangeTestSettings(**options)  # every check, before the SPEC is even imported
    kwargs = specs.parse_params(params)
    with _output_folder(out_dir) as out, _user_code_reported(show_traceback):
        objects = specs.build(spec, kwargs)
        with _quiet(quiet):
            finder = _range_test(spec, objects, settings)
            finder.history = dataclasses.replace(
                finder.history, settings={**finder.history.settings, "spec": spec, "spec_params": kwargs}
            )
            # drawn and saved as plot() would, without plot()'s log of the analysis: _emit prints it
            result = finder.suggestion(method)
            if distributed.is_main():
                report.draw(finder.history, result, out / PLOT_NAME, show_slope=slope)
            finder.save(out, result)
            written = [out / n for n in (PLOT_NAME, CSV_NAME, BEST_LR_NAME, SUMMARY_NAME) if (out / n).is_file()]
            _emit(finder.summary(method), written, as_json)


def _range_test(spec: str, objects: Mapping[str, Any], settings: RangeTestSettings) -> Any:
    """The range test on the SPEC's objects; the library's typed errors pass, anything else is the user's."""
    from .finder import LRFinder

    try:
        finder = LRFinder(
            objects["model"], objects["optimizer"], objects["criterion"],
            scaler=objects.get("scaler"), loss_fn=objects.get("loss_fn"),
        )
    except errors.InputError as exc:
        raise BadInput(f"SPEC {spec!r} returned objects LRFinder cannot use: {exc}") from exc
    try:
        finder.run(objects["train_loader"], settings, val_loader=objects.get("val_loader"))
    except errors.InputError as exc:
        raise BadInput(f"SPEC {spec!r}: {exc}") from exc
    except errors.LRFinderError:
        raise
    except Exception as exc:
        raise UserCodeError("the range test", exc) from exc
    return finder


@cli.command()
@click.argument("csv_path", metavar="CSV", type=click.Path(dir_okay=False, path_type=Path))
@_METHOD
@click.option("--out", "out_dir", default=None, help="Folder for the outputs  [default: the CSV's folder]")
@click.option("--slope", is_flag=True, help="Add a panel with the slope the suggestion reads.")
@click.option("--json", "as_json", is_flag=True, help="Print the analysis as JSON instead of text.")
def analyze(csv_path: Path, method: str, out_dir: str | None, slope: bool, as_json: bool) -> None:
    """Re-analyse a saved lr_finder_log.csv and re-draw its plot, without training.

    Computes every method's suggestion, the optimal range and the diagnostics from the CSV's raw loss
    (its loss column when it has no raw_loss), as the run did when the run's lr_finder_summary.json lies
    beside the CSV (it tells whether the sweep stopped early, which a curve without a descent needs).
    Writes lr_finder_analysis.png, lr_finder_analysis_best_lr.txt and
    lr_finder_analysis.json into OUT: names of its own, so a run's files (its plot, best_lr.txt,
    summary and CSV) are never rewritten.
    """
    from . import report

    history = files.read_csv(csv_path)
    run_summary = _run_summary_beside(csv_path, history.num_steps)
    if run_summary is not None:  # the run's settings and stop reason, for the plot's title and the JSON
        history = dataclasses.replace(history, **run_summary)
    summary = report.summarize(history, method)
    summary["source_csv"] = str(csv_path)
    summary["source_summary"] = None if run_summary is None else str(csv_path.parent / SUMMARY_NAME)
    result = analyze_history(history, method)
    with _output_folder(out_dir if out_dir is not None else csv_path.parent) as out:
        image = report.draw(history, result, out / ANALYSIS_PLOT_NAME, show_slope=slope)
        saved = report.save(out, history, result, summary, analysis=True)
    _emit(summary, [p for p in (image, *saved.values()) if p is not None], as_json)


def _run_summary_beside(csv_path: Path, steps: int) -> dict[str, Any] | None:
    """The settings and stop reason of the run's ``lr_finder_summary.json`` next to the CSV, when it
    describes this very CSV."""
    try:
        data = json.loads((csv_path.parent / SUMMARY_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and isinstance(data.get("settings"), dict)) or data.get("steps_recorded") != steps:
        return None  # not a run's summary, or another run's
    reason = data.get("stop_reason")
    return {"settings": data["settings"], "stop_reason": reason if isinstance(reason, str) else None}


def _labels(paths: Sequence[str], given: str | None) -> list[str]:
    if given is not None:
        labels = [x.strip() for x in given.split(",")]
        if len(labels) != len(paths):
            raise BadInput(
                f"--labels has {len(labels)} label(s) for {len(paths)} CSV file(s): give one per file, "
                "separated by commas"
            )
        return labels
    labels = [p.parent.name if p.name == CSV_NAME and p.parent.name else p.stem for p in map(Path, paths)]
    return labels if len(set(labels)) == len(labels) else list(paths)


def _compare_target(out_path: str, inputs: Sequence[str]) -> Path:
    """The image ``compare`` writes; never a file that holds something else (an input, notes, data)."""
    from . import plotting

    try:
        out = files.image_target(out_path, plotting.image_formats(), default_name=COMPARE_NAME)
    except errors.InputError as exc:
        raise BadInput(f"--out {exc}") from exc
    if os.path.exists(out) and not os.path.isfile(out):
        raise BadInput(f"--out {out_path}: exists and is not a file")
    if out.resolve() in {Path(p).resolve() for p in inputs}:
        raise BadInput(f"--out {out_path}: is one of the input CSV files; choose another name")
    if os.path.isfile(out) and not files.looks_like_image(out):
        raise BadInput(f"--out {out_path}: an existing file that is not an image; it is left alone")
    return out


@cli.command()
@click.argument("csv_paths", metavar="CSV...", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--out", "out_path", default=COMPARE_NAME, show_default=True,
    help=f"Image to write (.png, .svg, .pdf), or a folder to write {COMPARE_NAME} in.",
)
@click.option("--labels", default=None, help="Comma-separated legend labels, one per CSV [default: folder names].")
@_METHOD
@click.option("--slope", is_flag=True, help="Add a panel with each curve's slope.")
@click.option("--raw", is_flag=True, help="Draw each raw loss faintly behind its smoothed loss.")
@click.option("--title", default="LR range tests compared", show_default=True, help="Title of the plot.")
def compare(
    csv_paths: tuple[str, ...], out_path: str, labels: str | None, method: str, slope: bool, raw: bool, title: str
) -> None:
    """Overlay several saved curves (e.g. batch sizes or optimizers) with their suggestions.

    Each curve's optimal range is drawn thick, its suggested LR as a dashed line and a dot; the legend
    names each curve with its suggestion, also printed here. Only the image OUT is written: it must
    have an image extension, and an existing file there is replaced only if it is an image.
    """
    from . import plotting

    out = _compare_target(out_path, csv_paths)
    names = _labels(csv_paths, labels)
    histories = [files.read_csv(p) for p in csv_paths]
    results = [analyze_history(h, method) for h in histories]
    ax = plotting.draw_compare(histories, results, names, show_slope=slope, raw=raw, title=title or None)
    written = plotting.save_figure(ax, out)
    width = max(len(n) for n in names)
    for name, r in zip(names, results, strict=True):
        rng = f"  range {_fmt(r.low)} .. {_fmt(r.high)}" if r.low is not None and r.high is not None else ""
        tail = f"  ({r.confidence_label} confidence)" if r.lr is not None else f"  ({r.reason})"
        click.echo(f"{name:<{width}}  {_fmt(r.lr)}{rng}{tail}")
    click.echo(f"Wrote {written}")


def main() -> None:
    # warnings as one line each, without the source line they were raised from
    warnings.formatwarning = lambda message, category, *args, **kwargs: f"warning: {message}\n"
    cli()


if __name__ == "__main__":  # pragma: no cover
    main()
