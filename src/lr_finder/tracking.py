"""The range test where the run is tracked: the curve, the plot and the suggestion written to TensorBoard or
MLflow (:meth:`lr_finder.report.Readout.log_to`). Both are optional and imported only here, lazily.

``target`` is one of:

- a ``torch.utils.tensorboard.SummaryWriter`` (anything with ``add_scalar``, ``add_figure`` and ``add_text``);
- a folder (``str`` or ``os.PathLike``): a ``SummaryWriter`` is opened there, written and closed;
- ``"mlflow"``: MLflow's active run (``mlflow.start_run()``), or the run ``run_id`` names;
- an ``mlflow.MlflowClient``, with ``run_id``.

What is written, under ``prefix`` (``lr_finder``): per step ``i``, the scalars ``lr``, ``loss`` (smoothed: the
EMA of the stop rule) and ``raw_loss``; ``suggested_lr``, ``optimal_low`` and ``optimal_high`` where there are
values; the suggestion as text (``suggestion``; ``suggestion.md`` in MLflow); and the plot (``plot``;
``plot.png`` in MLflow).
"""

from __future__ import annotations

import os
from typing import Any

from . import plotting
from .errors import InputError, InputTypeError, require
from .history import History
from .suggestion import Suggestion

#: MLflow takes at most this many metrics in one ``log_batch`` call.
_MLFLOW_BATCH = 1000


def scalars(history: History, result: Suggestion) -> tuple[dict[str, list[float]], dict[str, float]]:
    """``(per-step curves, single values)``: ``lr``, ``loss``, ``raw_loss`` and the suggestion's numbers."""
    curves = {"lr": list(history.lr), "loss": list(history.loss), "raw_loss": list(history.raw_loss)}
    single = {"suggested_lr": result.lr, "optimal_low": result.low, "optimal_high": result.high}
    return curves, {k: float(v) for k, v in single.items() if v is not None}


def suggestion_text(result: Suggestion) -> str:
    """The suggestion as Markdown: the LR (or why there is none), the optimal range, the confidence, the
    diagnostics."""
    if result.lr is None:
        lines = [f"**No learning rate suggested** (method `{result.method}`): {result.reason}"]
    else:
        lines = [f"**Suggested LR: {result.lr:.3E}** (method `{result.method}`, "
                 f"confidence {result.confidence_label}, {result.confidence:.2f})"]
    if result.low is not None and result.high is not None:
        lines.append(f"Optimal range: {result.low:.3E} to {result.high:.3E}")
    if result.basis:
        lines.append(f"Basis: {result.basis}")
    lines += [f"- {note}" for note in result.diagnostics]
    return "\n\n".join(lines)


def _figure(history: History, result: Suggestion) -> Any:
    fig, ax, _ = plotting.new_figure()
    plotting.draw(history, result, ax)
    return fig


def log(history: History, result: Suggestion, target: Any, *, run_id: str | None = None,
        prefix: str = "lr_finder") -> None:
    """Write the curve, the plot and the suggestion to ``target`` (see the module's documentation)."""
    if isinstance(target, str) and target == "mlflow":
        mlflow = require("mlflow", "mlflow", "log_to()")
        if run_id is None:
            run = mlflow.active_run()
            if run is None:
                raise InputError("log_to('mlflow') needs an active run (mlflow.start_run()) or run_id=")
            run_id = run.info.run_id
        _to_mlflow(mlflow.MlflowClient(), run_id, history, result, prefix)
    elif isinstance(target, (str, os.PathLike)):
        tensorboard = require("torch.utils.tensorboard", "tensorboard", "log_to()")
        writer = tensorboard.SummaryWriter(log_dir=os.fspath(target))
        try:
            _to_tensorboard(writer, history, result, prefix)
        finally:
            writer.close()
    elif all(hasattr(target, m) for m in ("add_scalar", "add_figure", "add_text")):
        _to_tensorboard(target, history, result, prefix)
    elif all(hasattr(target, m) for m in ("log_batch", "log_figure", "log_text")):
        if run_id is None:
            raise InputError("log_to(MlflowClient()) needs run_id=: the run to write to")
        _to_mlflow(target, run_id, history, result, prefix)
    else:
        raise InputTypeError(
            "log_to() takes a TensorBoard SummaryWriter, a log folder, 'mlflow' or an MlflowClient (with run_id=),"
            f" not {type(target).__name__}"
        )


def _to_tensorboard(writer: Any, history: History, result: Suggestion, prefix: str) -> None:
    curves, single = scalars(history, result)
    for name, values in curves.items():
        for step, value in enumerate(values):
            writer.add_scalar(f"{prefix}/{name}", value, step)
    for name, value in single.items():
        writer.add_scalar(f"{prefix}/{name}", value, 0)
    writer.add_text(f"{prefix}/suggestion", suggestion_text(result), 0)
    writer.add_figure(f"{prefix}/plot", _figure(history, result), 0, close=False)
    writer.flush()


def _to_mlflow(client: Any, run_id: str, history: History, result: Suggestion, prefix: str) -> None:
    from mlflow.entities import Metric

    curves, single = scalars(history, result)
    now = _millis()
    metrics = [Metric(f"{prefix}/{name}", value, now, step)
               for name, values in curves.items() for step, value in enumerate(values)]
    metrics += [Metric(f"{prefix}/{name}", value, now, 0) for name, value in single.items()]
    for start in range(0, len(metrics), _MLFLOW_BATCH):
        client.log_batch(run_id, metrics=metrics[start:start + _MLFLOW_BATCH])
    client.log_text(run_id, suggestion_text(result), f"{prefix}/suggestion.md")
    client.log_figure(run_id, _figure(history, result), f"{prefix}/plot.png")


def _millis() -> int:
    import time

    return int(time.time() * 1000)


__all__ = ["log", "scalars", "suggestion_text"]
