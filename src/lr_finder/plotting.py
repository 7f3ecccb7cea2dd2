"""Drawing range-test curves: matplotlib only here, imported lazily, headless-safe.

:func:`draw` draws one curve (zones, suggestion, raw loss faint behind the smoothed one), optionally with a
second panel showing the slope the suggestion is computed from (:func:`draw_slope`); :func:`draw_compare`
overlays several curves. Nothing here computes a suggestion: the callers pass :class:`Suggestion` objects.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .history import History
from .smoothing import smooth
from .suggestion import Curve, Suggestion, prepare

ZONE_COLORS = {"low": "#f6d743", "optimal": "#5cb85c", "high": "#d9534f"}
#: Size of a plot without the slope panel, in inches, and its resolution: 800 x 500 pixels.
FIGSIZE = (8.0, 5.0)
DPI = 100
#: Height added for the slope panel, in inches: a plot with it is 800 x 720 pixels.
SLOPE_HEIGHT = 2.2
#: Past this fraction of the x axis, the suggestion's label goes on the left of its line.
_FLIP_AT = 0.62


def _require_matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - matplotlib is a core dependency
        raise ImportError("plotting needs matplotlib: pip install matplotlib") from exc
    return matplotlib


def figure_size(show_slope: bool = False) -> tuple[float, float]:
    """The figure size in inches, with or without the slope panel."""
    return (FIGSIZE[0], FIGSIZE[1] + (SLOPE_HEIGHT if show_slope else 0.0))


def new_figure(show_slope: bool = False, *, pyplot: bool = False) -> tuple[Any, Any, Any]:
    """A figure with the loss axes and, when ``show_slope``, a slope axes below sharing its x axis.

    ``pyplot=True`` makes a pyplot figure (for ``plt.show()``); otherwise a bare ``Figure`` that needs no
    display and is not tracked by pyplot (so it never leaks). Returns ``(figure, loss_ax, slope_ax)``,
    ``slope_ax`` being ``None`` without the slope panel.
    """
    _require_matplotlib()
    size = figure_size(show_slope)
    if pyplot:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=size, dpi=DPI, layout="constrained")
    else:
        from matplotlib.figure import Figure

        fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    if not show_slope:
        return fig, fig.add_subplot(), None
    ax, slope_ax = fig.subplots(2, 1, sharex=True, height_ratios=[FIGSIZE[1], SLOPE_HEIGHT + 0.4])
    return fig, ax, slope_ax


def smoothed_curve(history: History) -> np.ndarray:
    """The raw loss smoothed without lag: the curve the suggestion reads (before its cap), for drawing.

    ``history.loss``, the EMA, lags the raw loss by about ``1 / smooth_f`` steps; drawn with the
    suggestion, it would put the marker on the wrong part of the descent.
    """
    raw = np.asarray(history.raw_loss, dtype=float)
    out = raw.copy()
    ok = np.isfinite(raw)
    if np.count_nonzero(ok) >= 3:
        v = raw[ok]
        with np.errstate(all="ignore"):
            if np.all(v > 0):
                # capped at twice the starting level (above the top of the plot): an explosion of many
                # orders of magnitude would make the smoother ring and dig a false dip before it
                start = float(np.median(v[: max(3, v.size // 10)]))
                out[ok] = np.exp(smooth(np.log(np.minimum(v, 2.0 * start))))
            else:
                out[ok] = smooth(v)
    return out


def y_limits(loss: np.ndarray, raw: np.ndarray | None = None) -> tuple[float, float] | None:
    """Limits that show the descent in detail and are not crushed by the final explosion.

    The top leaves room above the starting loss (for the labels) but stops well short of the explosion;
    the bottom shows the lowest smoothed loss and the raw loss around it (bounded, so that one wild raw
    point cannot squash the curve).
    """
    loss = np.asarray(loss, dtype=float)
    finite = loss[np.isfinite(loss)]
    if finite.size < 2:
        return None
    imin = int(np.argmin(finite))
    lo = float(finite[imin])
    hi = float(np.max(finite[: imin + 1]))
    span = hi - lo
    if span <= 0:
        span = abs(lo) * 0.1 or 1.0
    top = max(min(float(np.max(finite)), hi + 0.75 * span), hi + 0.15 * span)
    bottom = lo
    if raw is not None:
        r = np.asarray(raw, dtype=float)
        r = r[: min(r.size, np.flatnonzero(np.isfinite(loss))[imin] + 1)]
        r = r[np.isfinite(r)]
        if r.size:
            bottom = max(min(lo, float(np.min(r))), lo - 0.5 * span)
    return bottom - 0.06 * span, top + 0.05 * span


def _log_fraction(x: float, lo: float, hi: float) -> float:
    """Position of ``x`` along a log axis from ``lo`` to ``hi``, 0 to 1."""
    if not (x > 0 and lo > 0 and hi > lo):
        return 0.5
    return (math.log10(x) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))


def _value_at(lrs: np.ndarray, values: np.ndarray, lr: float, index: int | None) -> float | None:
    """The curve's value at ``lr``: the recorded point when ``index`` names it, else log-x interpolation."""
    if index is not None and 0 <= index < values.size and math.isfinite(values[index]):
        return float(values[index])
    keep = np.isfinite(values) & (lrs > 0)
    if keep.sum() < 2:
        return None
    return float(np.interp(math.log10(lr), np.log10(lrs[keep]), values[keep]))


def _zones(ax: Any, suggestion: Suggestion | None, lo_lr: float, hi_lr: float, label: bool = True) -> None:
    if suggestion is None or suggestion.low is None or suggestion.high is None:
        return
    spans = (
        (lo_lr, suggestion.low, "low", 0.18, "too low"),
        (suggestion.low, suggestion.high, "optimal", 0.25, "optimal"),
        (suggestion.high, hi_lr, "high", 0.15, "too high"),
    )
    for a, b, key, alpha, name in spans:
        if b > a:
            ax.axvspan(a, b, color=ZONE_COLORS[key], alpha=alpha, linewidth=0, label=name if label else None)


def _notes(suggestion: Suggestion | None, history: History) -> list[str]:
    notes: list[str] = []
    if history.stop_reason:
        notes.append(f"stopped early: {history.stop_reason}")
    if suggestion is not None:
        if suggestion.lr is None and suggestion.reason:
            notes.append(f"no suggestion: {suggestion.reason}")
        notes.extend(n for n in suggestion.diagnostics if n and n != suggestion.reason)
    return list(dict.fromkeys(notes))


def _wrap(text: str, width: int = 105) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def draw(
    history: History,
    suggestion: Suggestion | None,
    ax: Any = None,
    *,
    annotate: bool = True,
    zones: bool = True,
    title: str | None = "LR range test",
    show_slope: bool = False,
    slope_ax: Any = None,
    notes: bool = True,
) -> Any:
    """Draw the curve on ``ax`` (a new figure when ``None``) and return the loss axes.

    Log-x axis; smoothed loss with the raw loss faint behind it; yellow / green / red zones (too low /
    optimal / too high) from the suggestion's range; a red dashed line and a dot at the suggested LR,
    labelled with its value (and its confidence when it is not high); y-limits that keep the descent
    readable however far the loss explodes at the end. With ``show_slope`` a second panel below shows
    the slope the suggestion is computed from (on ``slope_ax``, or on axes appended below ``ax``).
    ``notes`` writes the stop reason and the diagnostics under the plot.
    """
    _require_matplotlib()
    if ax is None:
        _, ax, made = new_figure(show_slope)
        slope_ax = slope_ax if slope_ax is not None else made
    elif show_slope and slope_ax is None:
        slope_ax = _append_below(ax)
    lrs = np.asarray(history.lr, dtype=float)
    loss = smoothed_curve(history)
    raw = np.asarray(history.raw_loss, dtype=float)
    if lrs.size:
        ax.plot(lrs, raw, color="0.45", alpha=0.3, linewidth=1, label="raw loss")
        ax.plot(lrs, loss, color="#1f4e9c", linewidth=2, label="smoothed loss")
        ax.set_xscale("log")
        lim = y_limits(loss, raw)
        if lim is not None:
            ax.set_ylim(*lim)
        lo_lr, hi_lr = float(np.min(lrs)), float(np.max(lrs))
        if zones:
            _zones(ax, suggestion, lo_lr, hi_lr)
        if suggestion is not None and suggestion.lr is not None:
            _mark(ax, lrs, loss, suggestion, lo_lr, hi_lr, annotate)
        if hi_lr > lo_lr:
            ax.set_xlim(lo_lr, hi_lr)
    else:
        ax.text(0.5, 0.5, "no points recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("loss (smoothed, raw faint)")
    if title:
        n = len(history.lr)
        ax.set_title(f"{title} ({n} steps, stopped early)" if history.stop_reason else title)
    ax.grid(True, which="both", alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    bottom = ax
    if slope_ax is not None:
        draw_slope(history, suggestion, slope_ax, zones=zones)
        ax.tick_params(labelbottom=False)
        bottom = slope_ax
    bottom.set_xlabel("learning rate (log scale)")
    if notes:
        found = _notes(suggestion, history)
        if found:
            bottom.annotate(
                "\n".join(_wrap("note: " + n) for n in found[:4]),
                xy=(0.0, 0.0),
                xycoords=("axes fraction", bottom.xaxis.label),
                xytext=(0, -4),
                textcoords="offset points",
                ha="left",
                va="top",
                fontsize=8,
                color="#8a4b00",
                annotation_clip=False,
            ).set_in_layout(True)
    return ax


def _append_below(ax: Any) -> Any:
    """A slope axes below a caller's ``ax``, sharing its x axis; ``ax`` shrinks to make room."""
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    return make_axes_locatable(ax).append_axes("bottom", size="45%", pad=0.35, sharex=ax)


def _mark(
    ax: Any, lrs: np.ndarray, loss: np.ndarray, s: Suggestion, lo_lr: float, hi_lr: float, annotate: bool
) -> None:
    assert s.lr is not None
    ax.axvline(s.lr, color="red", linestyle="--", linewidth=1.5, label=f"suggested LR ({s.method})")
    y = _value_at(lrs, loss, s.lr, s.index)
    if y is not None:
        ax.plot([s.lr], [y], marker="o", markersize=7, color="red", markeredgecolor="white", zorder=5)
    if not annotate:
        return
    text = f"suggested LR = {s.lr:.2e}"
    if s.confidence_label in ("low", "medium"):
        text += f"\n({s.confidence_label} confidence)"
    right = _log_fraction(s.lr, lo_lr, hi_lr) > _FLIP_AT
    ax.annotate(
        text,
        xy=(s.lr, 0.97),
        xycoords=("data", "axes fraction"),
        xytext=(-7 if right else 7, 0),
        textcoords="offset points",
        ha="right" if right else "left",
        va="top",
        color="red",
        fontsize=10,
        bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "red", "alpha": 0.9},
    )


def slope_label(loss: Sequence[float] | np.ndarray) -> str:
    """The y label of the slope panel: log loss for positive losses, the loss itself otherwise."""
    v = np.asarray(loss, dtype=float)
    v = v[np.isfinite(v)]
    positive = v.size > 0 and bool(np.all(v > 0))
    return "d ln(loss) / d log10(LR)" if positive else "d loss / d log10(LR)"


def slope_limits(curve: Curve) -> tuple[float, float] | None:
    """Limits centred on the descent, not crushed by the steep rise at the end."""
    g = curve.grad[: curve.imin + 1] if curve.imin > 0 else curve.grad
    g = g[np.isfinite(g)]
    if g.size == 0:
        return None
    gmin = float(np.min(g))
    if gmin < 0:
        return 1.25 * gmin, 0.6 * abs(gmin)
    lo, hi = (float(v) for v in np.percentile(curve.grad, [5, 95]))
    pad = 0.1 * (hi - lo) or 1.0
    return lo - pad, hi + pad


def draw_slope(
    history: History,
    suggestion: Suggestion | None,
    ax: Any,
    *,
    zones: bool = True,
    color: str = "#6a3d9a",
    label: str | None = None,
    marker_color: str = "red",
) -> Any:
    """The slope of the re-smoothed log loss against log10(LR): the quantity the suggestion reads.

    The steepest-descent suggestion is this slope's most negative point before the loss minimum; the
    optimal zone is where the slope is at least half as steep.
    """
    curve = prepare(history.lr, history.raw_loss) if len(history.lr) else "no points recorded"
    if isinstance(curve, str):
        ax.text(
            0.5,
            0.5,
            f"no slope: {curve}",
            ha="center",
            va="center",
            transform=ax.transAxes,
            fontsize=8,
            wrap=True,
        )
        ax.set_xscale("log")
        return ax
    ax.set_xscale("log")
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    if zones:
        _zones(ax, suggestion, float(curve.lrs[0]), float(curve.lrs[-1]), label=False)
    ax.plot(curve.lrs, curve.grad, color=color, linewidth=1.6, label=label or "slope of smoothed log loss")
    if suggestion is not None and suggestion.lr is not None:
        ax.axvline(suggestion.lr, color=marker_color, linestyle="--", linewidth=1.2)
    lim = slope_limits(curve)
    if lim is not None:
        ax.set_ylim(*lim)
    ax.set_ylabel(slope_label(history.loss), fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    if label is None:
        ax.text(
            0.01,
            0.96,
            "slope of the smoothed loss"
            + (
                ": the suggestion is its steepest descent"
                if suggestion and suggestion.method == "steepest"
                else ""
            ),
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize=8,
            color="0.25",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
        )
    return ax


_COMPARE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def draw_compare(
    histories: Sequence[History],
    suggestions: Sequence[Suggestion | None],
    labels: Sequence[str],
    ax: Any = None,
    *,
    show_slope: bool = False,
    slope_ax: Any = None,
    raw: bool = False,
    title: str | None = "LR range tests compared",
) -> Any:
    """Overlay several curves: each smoothed loss in its colour, its optimal range drawn thick, its
    suggestion as a dashed line and a dot, and a legend naming each curve with its suggested LR.
    Returns the loss axes."""
    _require_matplotlib()
    if not (len(histories) == len(suggestions) == len(labels)):
        raise InputError(
            f"histories, suggestions and labels differ in length: {len(histories)}, {len(suggestions)}, "
            f"{len(labels)}"
        )
    if ax is None:
        _, ax, made = new_figure(show_slope)
        slope_ax = slope_ax if slope_ax is not None else made
    elif show_slope and slope_ax is None:
        slope_ax = _append_below(ax)
    from matplotlib.lines import Line2D

    lows: list[float] = []
    highs: list[float] = []
    xs: list[float] = []
    methods = {s.method for s in suggestions if s is not None}
    for k, (h, s, name) in enumerate(zip(histories, suggestions, labels, strict=True)):
        color = _COMPARE_COLORS[k % len(_COMPARE_COLORS)]
        lrs = np.asarray(h.lr, dtype=float)
        loss = smoothed_curve(h)
        if lrs.size == 0:
            continue
        xs += [float(np.min(lrs)), float(np.max(lrs))]
        if raw:
            ax.plot(lrs, np.asarray(h.raw_loss, dtype=float), color=color, alpha=0.15, linewidth=1)
        text = f"{name}: {s.lr:.2e}" if s is not None and s.lr is not None else f"{name}: no suggestion"
        ax.plot(lrs, loss, color=color, linewidth=1.8, label=text)
        if s is not None and s.low is not None and s.high is not None:
            inside = (lrs >= s.low) & (lrs <= s.high)
            if inside.any():
                ax.plot(
                    lrs[inside], loss[inside], color=color, linewidth=6, alpha=0.35, solid_capstyle="round"
                )
        if s is not None and s.lr is not None:
            ax.axvline(s.lr, color=color, linestyle="--", linewidth=1.1, alpha=0.9)
            y = _value_at(lrs, loss, s.lr, s.index)
            if y is not None:
                ax.plot([s.lr], [y], marker="o", markersize=7, color=color, markeredgecolor="black", zorder=5)
        lim = y_limits(loss)
        if lim is not None:
            lows.append(lim[0])
            highs.append(lim[1])
        if slope_ax is not None:
            draw_slope(h, s, slope_ax, zones=False, color=color, label=name, marker_color=color)
    ax.set_xscale("log")
    if xs and max(xs) > min(xs):
        ax.set_xlim(min(xs), max(xs))
    if lows:
        ax.set_ylim(min(lows), max(highs))
    if slope_ax is not None:
        curves = [prepare(h.lr, h.loss) for h in histories if len(h.lr)]
        found = [slope_limits(c) for c in curves if not isinstance(c, str)]
        lims = [x for x in found if x is not None]
        if lims:
            slope_ax.set_ylim(min(a for a, _ in lims), max(b for _, b in lims))
        kinds = {slope_label(h.loss) for h in histories if len(h.lr)}
        slope_ax.set_ylabel(
            kinds.pop() if len(kinds) == 1 else "d ln(loss) (or d loss) / d log10(LR)",
            fontsize=9,
        )
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="0.4", linewidth=6, alpha=0.35, label="optimal range"),
        Line2D([], [], color="0.4", linestyle="--", marker="o", label="suggested LR"),
    ]
    method = next(iter(methods)) if len(methods) == 1 else None
    ax.legend(
        handles=handles,
        loc="lower left",
        fontsize=8,
        framealpha=0.9,
        title=f"suggested LR ({method})" if method else "suggested LR",
        title_fontsize=8,
    )
    ax.set_ylabel("loss (smoothed)")
    ax.grid(True, which="both", alpha=0.25)
    if title:
        ax.set_title(title)
    if slope_ax is not None:
        ax.tick_params(labelbottom=False)
        slope_ax.set_xlabel("learning rate (log scale)")
    else:
        ax.set_xlabel("learning rate (log scale)")
    return ax


def save_figure(ax: Any, path: str | os.PathLike[str], dpi: int = DPI) -> Path:
    """Save the figure holding ``ax`` atomically (folders created) and return the file written.

    ``path`` is read by :func:`lr_finder.files.image_target`: a folder gets ``lr_finder_plot.png`` in it,
    and a name without an image extension is refused (an ``InputError`` naming it).
    """
    from .files import atomic_write, image_target

    target = image_target(path, image_formats())
    fmt = target.suffix.lower().lstrip(".")
    return atomic_write(target, lambda fh: ax.figure.savefig(fh, format=fmt, dpi=dpi))


def image_formats() -> dict[str, str]:
    """File extensions matplotlib can write (``{"png": "Portable Network Graphics", ...}``)."""
    _require_matplotlib()
    from matplotlib.figure import Figure

    return dict(Figure().canvas.get_supported_filetypes())
