"""Drawing range-test curves: matplotlib only here, imported lazily, headless-safe.

:func:`draw` draws one curve (zones, suggestion, raw loss faint behind the smoothed one), optionally with a
second panel showing the slope the suggestion is computed from (:func:`draw_slope`); :func:`draw_compare`
overlays several curves. Nothing here computes a suggestion or smooths a curve: the callers pass
:class:`Suggestion` objects, and the smoothed loss and its slope are the analysis's own
(:func:`lr_finder.suggestion.prepare`), so the plot shows exactly what the suggestion read.
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
from .suggestion import Curve, Suggestion, prepare

ZONE_COLORS = {"low": "#f6d743", "optimal": "#5cb85c", "high": "#d9534f"}
#: Size of a plot without the slope panel, in inches, and its resolution: 800 x 500 pixels.
FIGSIZE = (8.0, 5.0)
DPI = 100
#: Height added for the slope panel, in inches: a plot with it is 800 x 720 pixels.
SLOPE_HEIGHT = 2.2
#: Past this fraction of the x axis, the suggestion's label goes on the left of its line.
_FLIP_AT = 0.62


def new_figure(show_slope: bool = False, *, pyplot: bool = False) -> tuple[Any, Any, Any]:
    """A figure with the loss axes and, when ``show_slope``, a slope axes below sharing its x axis.

    ``pyplot=True`` makes a pyplot figure (for ``plt.show()``); otherwise a bare ``Figure`` that needs no
    display and is not tracked by pyplot (so it never leaks). Returns ``(figure, loss_ax, slope_ax)``,
    ``slope_ax`` being ``None`` without the slope panel.
    """
    size = (FIGSIZE[0], FIGSIZE[1] + (SLOPE_HEIGHT if show_slope else 0.0))
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


def analysis_curve(history: History) -> Curve | str:
    """The curve the suggestion reads (the raw loss, cleaned, capped, smoothed), or why there is none."""
    if not len(history.lr):
        return "no points recorded"
    return prepare(history.lr, history.raw_loss)


def smoothed_curve(history: History, curve: Curve | str | None = None) -> np.ndarray:
    """The analysis's smoothed loss, one value per step of ``history`` (NaN where it says nothing).

    It is the curve the suggestion reads: the raw loss, capped at its starting level and smoothed without
    lag (``history.loss``, the EMA, lags about ``1 / smooth_f`` steps and would put the marker on the
    wrong part of the descent). It ends where, past the minimum, it reaches the cap: the loss exploded
    there, and the raw loss drawn behind shows how far.
    """
    curve = analysis_curve(history) if curve is None else curve
    out = np.full(len(history.lr), np.nan)
    if not isinstance(curve, str):
        stop = curve.informative
        out[curve.index[:stop]] = curve.loss[:stop]
    return out


def y_limits(loss: np.ndarray, raw: np.ndarray | None = None) -> tuple[float, float] | None:
    """Limits that show the descent in detail and are not crushed by the final explosion.

    From values observed only, of any sign: the top leaves room above the starting loss (for the labels)
    but stops well short of the explosion; the bottom shows the lowest smoothed loss and the raw loss
    around it (bounded, so that one wild raw point cannot squash the curve).
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
    """Too low up to the optimal zone, optimal, and too high only where the loss rises (from its
    minimum on); between the optimal zone and the minimum the loss still falls, slower: no colour."""
    if suggestion is None or suggestion.low is None or suggestion.high is None:
        return
    spans = [
        (lo_lr, suggestion.low, "low", 0.18, "too low"),
        (suggestion.low, suggestion.high, "optimal", 0.25, "optimal"),
    ]
    if suggestion.rises_from is not None:
        spans.append((max(suggestion.rises_from, suggestion.high), hi_lr, "high", 0.15, "too high"))
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


def _legend(ax: Any, **kw: Any) -> None:
    """Outside the axes, on the right, where it cannot cover the curve, when the figure lays itself out
    (ours do); on a caller's figure without a layout engine, where it covers the fewest points."""
    if ax.figure.get_layout_engine() is not None:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kw)
    else:
        ax.legend(loc="best", **kw)


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
    ax, slope_ax = _axes(ax, show_slope, slope_ax)
    curve = analysis_curve(history)
    _draw_loss(ax, history, curve, suggestion, annotate=annotate, zones=zones)
    ax.set_ylabel("loss (smoothed, raw faint)")
    if title:
        n = len(history.lr)
        ax.set_title(f"{title} ({n} steps, stopped early)" if history.stop_reason else title)
    ax.grid(True, which="both", alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        _legend(ax, fontsize=8, framealpha=0.9)
    bottom = ax
    if slope_ax is not None:
        draw_slope(history, suggestion, slope_ax, zones=zones, curve=curve)
        ax.tick_params(labelbottom=False)
        bottom = slope_ax
    bottom.set_xlabel("learning rate (log scale)")
    if notes:
        _write_notes(bottom, _notes(suggestion, history))
    return ax


def _draw_loss(
    ax: Any, history: History, curve: Curve | str, suggestion: Suggestion | None, *, annotate: bool, zones: bool
) -> None:
    """The raw loss, the analysis's smoothed loss, the zones and the suggestion, on the loss axes."""
    lrs = np.asarray(history.lr, dtype=float)
    raw = np.asarray(history.raw_loss, dtype=float)
    if not np.isfinite(raw).any():
        text = "no points recorded" if not lrs.size else "no finite loss recorded"
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    if not lrs.size:
        return
    loss = smoothed_curve(history, curve)
    ax.plot(lrs, raw, color="0.45", alpha=0.3, linewidth=1, label="raw loss")
    ax.plot(lrs, loss, color="#1f4e9c", linewidth=2, label="smoothed loss")
    ax.set_xscale("log")
    lim = y_limits(loss, raw) if np.isfinite(loss).sum() >= 2 else y_limits(raw)
    if lim is not None:
        ax.set_ylim(*lim)
    span = _lr_span(history)
    if span is None:
        return
    lo_lr, hi_lr = span
    if zones:
        _zones(ax, suggestion, lo_lr, hi_lr)
    if suggestion is not None and suggestion.lr is not None:
        _mark(ax, lrs, loss, suggestion, lo_lr, hi_lr, annotate)
    if hi_lr > lo_lr:
        ax.set_xlim(lo_lr, hi_lr)


def _lr_span(history: History) -> tuple[float, float] | None:
    """The swept LRs' range (every step, those whose loss was not finite included)."""
    lrs = np.asarray(history.lr, dtype=float)
    keep = lrs[np.isfinite(lrs) & (lrs > 0)]
    return (float(np.min(keep)), float(np.max(keep))) if keep.size else None


def _write_notes(bottom: Any, found: list[str]) -> None:
    """The stop reason and the diagnostics, under the x label of the bottom axes."""
    if not found:
        return
    width = max(40, int(bottom.figure.get_figwidth() * 13))  # characters of 8 pt text across the figure
    bottom.annotate(
        "\n".join(_wrap("note: " + n, width) for n in found[:4]),
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


def _axes(ax: Any, show_slope: bool, slope_ax: Any) -> tuple[Any, Any]:
    """The loss axes and the slope axes (``None`` without the slope panel): a new figure's, or the caller's
    ``ax`` with a slope panel appended below it when none is given."""
    if ax is None:
        _, ax, made = new_figure(show_slope)
        return ax, slope_ax if slope_ax is not None else made
    if show_slope and slope_ax is None:
        slope_ax = _append_below(ax)
    return ax, slope_ax


def _append_below(ax: Any) -> Any:
    """A slope axes below a caller's ``ax``, sharing its x axis; ``ax`` shrinks to make room.

    A subplot's grid cell is split in two, so the figure's layout engine (constrained, tight) sees both
    axes and keeps the lower one's x label inside the figure; axes placed by hand get a divider.
    """
    spec = ax.get_subplotspec()
    if spec is None:
        from mpl_toolkits.axes_grid1 import make_axes_locatable

        return make_axes_locatable(ax).append_axes("bottom", size="45%", pad=0.35, sharex=ax)
    cells = spec.subgridspec(2, 1, height_ratios=[FIGSIZE[1], SLOPE_HEIGHT + 0.4], hspace=0.08)
    ax.set_subplotspec(cells[0])
    return ax.figure.add_subplot(cells[1], sharex=ax)


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


def slope_label(curve: Curve | str) -> str:
    """The y label of the slope panel: log loss for positive losses, the loss itself otherwise."""
    if isinstance(curve, str) or curve.is_log:
        return "d ln(loss) / d log10(LR)"
    return "d loss / d log10(LR)"


def slope_limits(curve: Curve) -> tuple[float, float] | None:
    """Limits centred on the descent, not crushed by the steep rise at the end (the slope as drawn: up to
    where the curve stops saying anything)."""
    grad = curve.grad[: curve.informative]
    g = grad[: curve.imin + 1] if curve.imin > 0 else grad
    g = g[np.isfinite(g)]
    if g.size == 0:
        return None
    gmin = float(np.min(g))
    if gmin < 0:
        return 1.25 * gmin, 0.6 * abs(gmin)
    lo, hi = (float(v) for v in np.percentile(grad, [5, 95]))
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
    curve: Curve | str | None = None,
) -> Any:
    """The slope of the analysis's smoothed loss against log10(LR): the quantity the suggestion reads,
    drawn over the same points as the smoothed loss above it.

    The steepest-descent suggestion is this slope's most negative point before the loss minimum; the
    optimal zone is where the slope is at least half as steep. ``curve``: the analysis curve of
    ``history`` when the caller already has it.
    """
    curve = analysis_curve(history) if curve is None else curve
    ax.set_xscale("log")
    if isinstance(curve, str):
        text = _wrap(f"no slope: {curve}", 80)
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8)
        return ax
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    span = _lr_span(history)
    if zones and span is not None:
        _zones(ax, suggestion, *span, label=False)
    stop = curve.informative
    ax.plot(curve.lrs[:stop], curve.grad[:stop], color=color, linewidth=1.6, label=label or "slope")
    if suggestion is not None and suggestion.lr is not None:
        ax.axvline(suggestion.lr, color=marker_color, linestyle="--", linewidth=1.2)
    lim = slope_limits(curve)
    if lim is not None:
        ax.set_ylim(*lim)
    ax.set_ylabel(slope_label(curve), fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    if label is None:
        steepest = suggestion is not None and suggestion.method == "steepest"
        ax.text(
            0.01,
            0.96,
            "slope of the smoothed loss" + (": the suggestion is its steepest descent" if steepest else ""),
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
    if not (len(histories) == len(suggestions) == len(labels)):
        raise InputError(
            f"histories, suggestions and labels differ in length: {len(histories)}, {len(suggestions)}, "
            f"{len(labels)}"
        )
    ax, slope_ax = _axes(ax, show_slope, slope_ax)
    curves = [analysis_curve(h) for h in histories]
    xs: list[float] = []
    y_lims: list[tuple[float, float]] = []
    for k, (h, c, s, name) in enumerate(zip(histories, curves, suggestions, labels, strict=True)):
        color = _COMPARE_COLORS[k % len(_COMPARE_COLORS)]
        lim = _draw_one(ax, h, c, s, name, color, raw)
        if lim is not None:
            y_lims.append(lim)
        if len(h.lr):
            xs += [float(np.min(h.lr)), float(np.max(h.lr))]
        if slope_ax is not None:
            draw_slope(h, s, slope_ax, zones=False, color=color, label=name, marker_color=color, curve=c)
    ax.set_xscale("log")
    if xs and max(xs) > min(xs):
        ax.set_xlim(min(xs), max(xs))
    if y_lims:
        ax.set_ylim(min(a for a, _ in y_lims), max(b for _, b in y_lims))
    if slope_ax is not None:
        _compare_slope_axes(slope_ax, curves)
    _compare_legend(ax, suggestions)
    ax.set_ylabel("loss (smoothed)")
    ax.grid(True, which="both", alpha=0.25)
    if title:
        ax.set_title(title)
    if slope_ax is not None:
        ax.tick_params(labelbottom=False)
    (slope_ax if slope_ax is not None else ax).set_xlabel("learning rate (log scale)")
    return ax


def _draw_one(
    ax: Any, h: History, c: Curve | str, s: Suggestion | None, name: str, color: str, raw: bool
) -> tuple[float, float] | None:
    """One curve of a comparison; returns the y-limits it needs."""
    lrs = np.asarray(h.lr, dtype=float)
    if lrs.size == 0:
        return None
    loss = smoothed_curve(h, c)
    if raw:
        ax.plot(lrs, np.asarray(h.raw_loss, dtype=float), color=color, alpha=0.15, linewidth=1)
    text = f"{name}: {s.lr:.2e}" if s is not None and s.lr is not None else f"{name}: no suggestion"
    ax.plot(lrs, loss, color=color, linewidth=1.8, label=text)
    if s is not None and s.low is not None and s.high is not None:
        inside = (lrs >= s.low) & (lrs <= s.high)
        if inside.any():
            ax.plot(lrs[inside], loss[inside], color=color, linewidth=6, alpha=0.35, solid_capstyle="round")
    if s is not None and s.lr is not None:
        ax.axvline(s.lr, color=color, linestyle="--", linewidth=1.1, alpha=0.9)
        y = _value_at(lrs, loss, s.lr, s.index)
        if y is not None:
            ax.plot([s.lr], [y], marker="o", markersize=7, color=color, markeredgecolor="black", zorder=5)
    return y_limits(loss) if np.isfinite(loss).sum() >= 2 else y_limits(np.asarray(h.raw_loss, dtype=float))


def _compare_slope_axes(slope_ax: Any, curves: Sequence[Curve | str]) -> None:
    """Limits holding every curve's descent, from the same curves the slopes are drawn from."""
    usable = [c for c in curves if not isinstance(c, str)]
    lims = [lim for lim in (slope_limits(c) for c in usable) if lim is not None]
    if lims:
        slope_ax.set_ylim(min(a for a, _ in lims), max(b for _, b in lims))
    kinds = {slope_label(c) for c in usable}
    slope_ax.set_ylabel(kinds.pop() if len(kinds) == 1 else "d ln(loss) (or d loss) / d log10(LR)", fontsize=9)


def _compare_legend(ax: Any, suggestions: Sequence[Suggestion | None]) -> None:
    from matplotlib.lines import Line2D

    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Line2D([], [], color="0.4", linewidth=6, alpha=0.35, label="optimal range"),
        Line2D([], [], color="0.4", linestyle="--", marker="o", label="suggested LR"),
    ]
    methods = {s.method for s in suggestions if s is not None}
    method = next(iter(methods)) if len(methods) == 1 else None
    title = f"suggested LR ({method})" if method else "suggested LR"
    _legend(ax, handles=handles, fontsize=8, framealpha=0.9, title=title, title_fontsize=8)


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
    from matplotlib.figure import Figure

    return dict(Figure().canvas.get_supported_filetypes())
