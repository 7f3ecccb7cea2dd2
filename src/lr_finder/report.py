"""A range test's report, the one path of ``LRFinder.plot``, ``lr-finder run`` / ``analyze`` and compat's plot:
the analysis logged once per curve, the figure (drawn on the caller's axes, saved, or shown where there is a
display), and the files (the CSV, ``best_lr.txt`` and the JSON summary).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import math
import os
import platform
import sys
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import files, plotting
from ._logging import logger
from ._version import __version__
from .history import History
from .smoothing import HAVE_SCIPY
from .suggestion import DEFAULT_METHOD, Suggestion, analyze_history, available_methods

#: The curves whose analysis was logged, by identity and method (an entry goes with its history), so that
#: ``plot()`` after ``get_suggested_lr()`` does not repeat the diagnostics.
_logged: weakref.WeakValueDictionary[tuple[int, str], History] = weakref.WeakValueDictionary()


def log_suggestion(history: History, result: Suggestion) -> None:
    """Log the suggestion (INFO) or why there is none (WARNING), and the diagnostics (WARNING: shown even where
    no logging is configured), once per curve and method: ``get_suggested_lr``, ``plot`` and ``verify`` after it
    repeat nothing."""
    key = (id(history), result.method)
    if _logged.get(key) is history:
        return
    _logged[key] = history
    if result.lr is None:
        logger.warning("No learning rate suggested: %s", result.reason)
        return
    logger.info("Suggested Learning Rate: %.2E", result.lr)
    for note in result.diagnostics:
        logger.warning("LR finder diagnostic: %s", note)


def show() -> bool:
    """``plt.show()`` where there is a display; ``False``, nothing shown, on a backend without one (Agg)."""
    import matplotlib
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend().lower()
    if "agg" in backend and "inline" not in backend:
        return False
    plt.show()  # pragma: no cover - needs a display
    return True


def draw(
    history: History, result: Suggestion | None, save_path: str | os.PathLike[str] | None = None, ax: Any = None,
    *, annotate: bool = True, show_slope: bool = False,
) -> Path | None:
    """Draw the curve on ``ax`` and save it to ``save_path`` (see :func:`lr_finder.plotting.save_figure`);
    with neither, on a new figure shown where there is a display. Returns the image written, if any."""
    if ax is None and save_path is None:
        import matplotlib.pyplot as plt

        fig, ax, slope_ax = plotting.new_figure(show_slope, pyplot=True)
        plotting.draw(history, result, ax, annotate=annotate, show_slope=show_slope, slope_ax=slope_ax)
        if not show():
            plt.close(fig)
            logger.warning("No display to show the plot on: pass save_path='lr_finder_plot.png' to save it")
        return None
    ax = plotting.draw(history, result, ax, annotate=annotate, show_slope=show_slope)
    if save_path is None:
        return None
    written = plotting.save_figure(ax, save_path)
    logger.info("LR Finder plot saved to %s", written)
    return written


def save(
    out_dir: str | os.PathLike[str], history: History, result: Suggestion, summary: dict[str, Any],
    *, analysis: bool = False,
) -> dict[str, Path]:
    """Write ``lr_finder_log.csv``, ``best_lr.txt`` and ``lr_finder_summary.json`` into ``out_dir``; with
    ``analysis`` (``lr-finder analyze``), no CSV and names of its own, so a run's files are never rewritten.
    A curve that suggests no LR removes an earlier ``best_lr.txt``: a pipeline never reads a value it does
    not support."""
    out = Path(out_dir)
    written: dict[str, Path] = {}
    if not analysis:
        written["csv"] = files.write_csv(history, out / files.CSV_NAME)
        logger.info("Saved lr history to %s", written["csv"])
    best = out / (files.ANALYSIS_BEST_LR_NAME if analysis else files.BEST_LR_NAME)
    if result.lr is not None:
        written["best_lr"] = files.write_best_lr(result.lr, best)
    else:
        if best.is_file():
            best.unlink()
            logger.warning("Removed %s from an earlier run: this run suggests no LR", best)
        logger.warning("%s not written: %s", best.name, result.reason)
    written["summary"] = files.write_json(summary, out / (files.ANALYSIS_JSON_NAME if analysis else files.SUMMARY_NAME))
    return written


def _version(name: str) -> str | None:
    version = getattr(sys.modules.get(name), "__version__", None)  # a module already imported says it best
    if isinstance(version, str):
        return str(version)
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def summarize(history: History, method: str = "default") -> dict[str, Any]:
    """Everything about a curve as plain JSON-able data (what ``lr_finder_summary.json`` holds): versions,
    platform, device, settings, stop reason, timing, how the curve was analysed, the suggestion of ``method``
    and every method's. A history read back from a CSV has no settings and no timing (``None``).
    """
    settings = dict(history.settings)
    elapsed = settings.get("elapsed_s")
    steps = history.num_steps
    chosen = analyze_history(history, method)
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
            "slope": "d ln(loss) / d log10(lr)" if finite and min(finite) > 0 else "d loss / d log10(lr)",
            "default_method": DEFAULT_METHOD,
        },
        "suggestion": chosen.to_dict(),
        "optimal_range": {"low": chosen.low, "high": chosen.high},
        "diagnostics": list(chosen.diagnostics),
        "methods": {m: analyze_history(history, m).to_dict() for m in available_methods()},
    }


class Readout:
    """What :class:`lr_finder.LRFinder` reads from its last curve (``self.history``): the suggestion, the
    summary, the plot and the files. Only rank 0 of a distributed test draws and writes."""

    history: History
    device: Any  # a torch.device
    cache_dir: Path | None
    reset: Callable[[], None]  # the finder's own: plot(auto_reset=True) calls it

    def _require_history(self, what: str) -> None:
        if not self.history.lr:
            why = f" (the last one recorded no step: {self.history.stop_reason})" if self.history.stop_reason else ""
            raise RuntimeError(f"{what} needs a finished range test: call range_test(train_loader) first{why}")

    def suggestion(self, method: str = "default") -> Suggestion:
        """The full analysis of the last curve: LR, optimal range, confidence and diagnostics."""
        self._require_history("suggestion()")
        return analyze_history(self.history, method)

    def get_suggested_lr(self, method: str = "default") -> float | None:
        """The suggested learning rate, or ``None`` (with the reason logged) when the curve cannot support one.

        ``method``: one of :func:`lr_finder.available_methods`; ``"default"`` is the rule chosen by
        ``benchmarks/suggestion_quality.py``.
        """
        result = self.suggestion(method)
        log_suggestion(self.history, result)
        return result.lr

    def summary(self, method: str = "default") -> dict[str, Any]:
        """Everything about the last run as plain data (:func:`lr_finder.report.summarize`; ``device_name``
        is the GPU's name on CUDA)."""
        self._require_history("summary()")
        name = _cuda_name(self.device) if self.device.type == "cuda" else self.device.type
        return {**summarize(self.history, method), "device_name": name}

    def plot(
        self,
        save_path: str | os.PathLike[str] | None = None,
        suggest: bool = True,
        save_csv: bool = True,
        annotate: bool = True,
        auto_reset: bool = True,
        ax: Any = None,
        *,
        method: str = "default",
        show_slope: bool = False,
    ) -> float | None:
        """Draw the curve, save the files, and return the suggested LR (``None`` when there is none).

        Args:
            save_path: the image to write (``.png``, ``.svg``, ``.pdf``, ...; folders are created), or a folder
                (existing, or ending in ``/``) for ``lr_finder_plot.png``. Without it and ``ax``, the plot is
                shown where there is a display.
            suggest: mark the suggestion and the zones.
            save_csv: write ``lr_finder_log.csv``, ``best_lr.txt`` and ``lr_finder_summary.json`` into
                ``cache_dir`` when given, else beside the plot, else the working directory.
            annotate: write the suggested value on the plot.
            auto_reset: call :meth:`reset` afterwards (``range_test`` has already restored the model).
            ax: matplotlib axes to draw on; a new figure when ``None``.
            method: the suggestion method (see :func:`lr_finder.available_methods`).
            show_slope: a panel below with the slope the suggestion reads (d log loss / d log10 LR).

        Raises:
            InputError: ``save_path`` names no image file (before anything is drawn).
            StorageError: a folder cannot be created or a file written; the message names the path.
        """
        self._require_history("plot()")
        target = None if save_path is None else files.image_target(save_path, plotting.image_formats())
        result = self.suggestion(method)
        log_suggestion(self.history, result)
        if _is_main():  # only rank 0 draws and writes
            draw(self.history, result if suggest else None, target, ax, annotate=annotate, show_slope=show_slope)
            if save_csv:
                self.save(self.cache_dir or (target.parent if target is not None else Path.cwd()), result)
        if auto_reset:
            self.reset()
        return result.lr

    def log_to(
        self, target: Any, *, run_id: str | None = None, method: str = "default", prefix: str = "lr_finder"
    ) -> None:
        """Write the curve (LR, smoothed and raw loss per step), the plot and the suggestion with its optimal
        range to TensorBoard or MLflow; under ``torch.distributed`` only rank 0 writes.

        Args:
            target: a ``torch.utils.tensorboard.SummaryWriter``; a folder (a writer is opened there and
                closed); ``"mlflow"`` (MLflow's active run, or ``run_id``); or an ``mlflow.MlflowClient``
                with ``run_id``. See :mod:`lr_finder.tracking`.
            run_id: the MLflow run to write to.
            method: the suggestion method (see :func:`lr_finder.available_methods`).
            prefix: the tags' and artifacts' prefix.

        Raises:
            ImportError: tensorboard or mlflow is missing (one line naming the extra to install).
        """
        self._require_history("log_to()")
        result = self.suggestion(method)
        if not _is_main():
            logger.debug("log_to(): rank %d writes nothing (rank 0 does)", _rank())
            return
        from . import tracking  # tensorboard and mlflow are imported only when asked for

        tracking.log(self.history, result, target, run_id=run_id, prefix=prefix)

    def save(self, out_dir: str | os.PathLike[str], result: Suggestion | None = None) -> dict[str, Path]:
        """Write ``lr_finder_log.csv``, ``best_lr.txt`` (when there is a suggestion) and the JSON summary into
        ``out_dir``; under ``torch.distributed`` only rank 0 writes (the others get ``{}``)."""
        self._require_history("save()")
        if not _is_main():
            logger.debug("save(): rank %d writes no files (rank 0 does)", _rank())
            return {}
        result = result or self.suggestion()
        return save(out_dir, self.history, result, self.summary(result.method))


def _is_main() -> bool:
    from .distributed import is_main  # torch is loaded only by a finder (``lr-finder analyze`` needs none)

    return is_main()


def _rank() -> int:
    from .distributed import rank

    return rank()


def _cuda_name(device: Any) -> str:
    import torch

    return torch.cuda.get_device_name(device)
