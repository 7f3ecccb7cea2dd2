"""Drawing a range-test curve: matplotlib only here, imported lazily, headless-safe."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .history import History
from .suggestion import Suggestion

ZONE_COLORS = {"low": "#f6d743", "optimal": "#5cb85c", "high": "#d9534f"}


def _require_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - matplotlib is a core dependency
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from exc
    return matplotlib


def y_limits(loss: np.ndarray) -> tuple[float, float] | None:
    """Limits that show the descent in detail and are not crushed by the final explosion."""
    finite = loss[np.isfinite(loss)]
    if finite.size < 2:
        return None
    imin = int(np.argmin(finite))
    lo = float(finite[imin])
    hi = float(np.max(finite[: imin + 1]))
    span = hi - lo
    if span <= 0:
        span = abs(lo) * 0.1 or 1.0
    top = min(float(np.max(finite)), hi + 0.75 * span)
    return lo - 0.08 * span, max(top, hi) + 0.05 * span


def draw(
    history: History,
    suggestion: Suggestion | None,
    ax: Any = None,
    *,
    annotate: bool = True,
    zones: bool = True,
    title: str | None = "LR range test",
) -> Any:
    """Draw the curve on ``ax`` (a new figure when ``None``) and return the axes.

    Log-x axis; smoothed loss with the raw loss faint behind it; yellow / green / red zones (too low /
    optimal / too high) from the suggestion's range; a red dashed line at the suggested LR, labelled.
    """
    _require_matplotlib()
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 5), dpi=100, layout="constrained")
        ax = fig.add_subplot()
    lrs = np.asarray(history.lr, dtype=float)
    loss = np.asarray(history.loss, dtype=float)
    raw = np.asarray(history.raw_loss, dtype=float)
    if lrs.size:
        ax.plot(lrs, raw, color="0.55", alpha=0.35, linewidth=1, label="raw loss")
        ax.plot(lrs, loss, color="#1f4e9c", linewidth=2, label="smoothed loss")
        ax.set_xscale("log")
        lim = y_limits(loss)
        if lim is not None:
            ax.set_ylim(*lim)
        lo_lr, hi_lr = float(lrs[0]), float(lrs[-1])
        if zones and suggestion is not None and suggestion.low is not None and suggestion.high is not None:
            ax.axvspan(lo_lr, suggestion.low, color=ZONE_COLORS["low"], alpha=0.18, label="too low")
            ax.axvspan(suggestion.low, suggestion.high, color=ZONE_COLORS["optimal"], alpha=0.22, label="optimal")
            ax.axvspan(suggestion.high, hi_lr, color=ZONE_COLORS["high"], alpha=0.15, label="too high")
        if suggestion is not None and suggestion.lr is not None:
            ax.axvline(suggestion.lr, color="red", linestyle="--", linewidth=1.5, label=f"suggested LR ({suggestion.method})")
            if annotate:
                ax.annotate(
                    f"suggested LR = {suggestion.lr:.2e}",
                    xy=(suggestion.lr, 0.97),
                    xycoords=("data", "axes fraction"),
                    xytext=(6, 0),
                    textcoords="offset points",
                    ha="left",
                    va="top",
                    color="red",
                    fontsize=10,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "red", "alpha": 0.85},
                )
        ax.set_xlim(lo_lr, hi_lr)
    else:
        ax.text(0.5, 0.5, "no points recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("loss (smoothed)")
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper left", fontsize=8, framealpha=0.85)
    return ax


def save_figure(ax: Any, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Save the figure holding ``ax`` to ``path`` atomically (folders created)."""
    from .files import atomic_write

    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    atomic_write(path, lambda fh: ax.figure.savefig(fh, format=fmt, dpi=dpi))
