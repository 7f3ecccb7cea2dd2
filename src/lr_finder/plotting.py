"""Drawing range-test curves: matplotlib only here, imported lazily, headless-safe.

:func:`draw` draws one curve, optionally over a panel with the slope the suggestion reads
(:func:`draw_slope`); :func:`draw_compare` overlays several curves. Nothing here computes a suggestion or
smooths a curve: the smoothed loss and its slope are the analysis's own
(:func:`lr_finder.suggestion.prepare`), so the plot shows exactly what the suggestion read.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .history import History
from .suggestion import NO_DESCENT_DIVISOR, Curve, Suggestion, prepare

ZONE_COLORS = {"low": "#f6d743", "optimal": "#5cb85c", "high": "#d9534f"}
#: The zones' legend entries: what each range means, not a verdict on an LR inside it (the default picks
#: below the fast descent on purpose, a safety margin under the loss minimum).
ZONE_LABELS = {
    "low": "flat or slow descent",
    "optimal": "optimal range: fast descent\n(slope within 1/2 of steepest)",
    "high": "too high: loss rises",
}
#: The colour of a fallback suggestion (no descent: the LR where the sweep diverged / 40), not a point of
#: the curve, unlike the red of a pick.
FALLBACK_COLOR = "#b35900"
#: Size of a plot without the slope panel, in inches, and its resolution: 800 x 500 pixels.
FIGSIZE = (8.0, 5.0)
DPI = 100
#: Height added for the slope panel, in inches: a plot with it is 800 x 720 pixels.
SLOPE_HEIGHT = 2.2
#: Relative heights of the loss and the slope panels.
_PANELS = (FIGSIZE[1], SLOPE_HEIGHT + 0.4)
#: Past this fraction of the x axis, the suggestion's label goes on the left of its line, at the bottom.
_FLIP_AT = 0.55
_COMPARE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def new_figure(show_slope: bool = False, *, pyplot: bool = False) -> tuple[Any, Any, Any]:
    """``(figure, loss_ax, slope_ax)``, ``slope_ax`` below sharing the x axis with ``show_slope``, else ``None``.
    A pyplot figure (for ``plt.show()``) with ``pyplot``, else a bare ``Figure``: no display, never leaks."""
    size = (FIGSIZE[0], FIGSIZE[1] + (SLOPE_HEIGHT if show_slope else 0.0))
    from matplotlib.figure import Figure

    make: Any = Figure
    if pyplot:
        import matplotlib.pyplot as plt

        make = plt.figure
    fig = make(figsize=size, dpi=DPI, layout="constrained")
    if not show_slope:
        return fig, fig.add_subplot(), None
    return fig, *fig.subplots(2, 1, sharex=True, height_ratios=_PANELS)


def analysis_curve(history: History) -> Curve | str:
    """The curve the suggestion reads (the raw loss, cleaned, capped, smoothed), or why there is none."""
    return prepare(history.lr, history.raw_loss) if len(history.lr) else "no points recorded"


def smoothed_curve(history: History, curve: Curve | str) -> np.ndarray:
    """The analysis's smoothed loss, one value per step of ``history`` (NaN where it says nothing). Not
    ``history.loss``: that EMA lags about ``1 / smooth_f`` steps, and the marker would miss the descent. It
    ends where, past the minimum, it reaches the cap: the raw loss drawn behind shows how far it exploded.
    """
    out = np.full(len(history.lr), np.nan)
    if not isinstance(curve, str):
        out[curve.index[: curve.informative]] = curve.loss[: curve.informative]
    return out


def y_limits(loss: np.ndarray, raw: np.ndarray | None = None) -> tuple[float, float] | None:
    """Limits that show the descent in detail, not crushed by the final explosion, from values observed only:
    the top leaves room above the starting loss (for the labels) but stops well short of the explosion; the
    bottom shows the lowest smoothed loss and the raw loss around it (bounded: one wild point cannot squash it).
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
        r = r[: np.flatnonzero(np.isfinite(loss))[imin] + 1]
        r = r[np.isfinite(r)]
        if r.size:
            bottom = max(min(lo, float(np.min(r))), lo - 0.5 * span)
    return bottom - 0.06 * span, top + 0.05 * span


def _dot(ax: Any, lrs: np.ndarray, values: np.ndarray, s: Suggestion, color: str, edge: str) -> None:
    """A dot on the curve at the suggested LR: the recorded point when ``s.index`` names it, else the curve
    interpolated along log x (none where the curve has too few points)."""
    assert s.lr is not None
    if s.index is not None and 0 <= s.index < values.size and math.isfinite(values[s.index]):
        y = float(values[s.index])
    else:
        keep = np.isfinite(values) & (lrs > 0)
        if keep.sum() < 2:
            return
        y = float(np.interp(math.log10(s.lr), np.log10(lrs[keep]), values[keep]))
    ax.plot([s.lr], [y], marker="o", markersize=7, color=color, markeredgecolor=edge, zorder=5)


def _zones(ax: Any, suggestion: Suggestion | None, lo_lr: float, hi_lr: float, label: bool = True) -> None:
    """Flat or slow up to the optimal range, the optimal range (the fast descent), and too high only where
    the loss rises (from its minimum on, or from where a sweep without a descent began to explode); between
    the optimal range and the minimum the loss still falls, slower: no colour."""
    if suggestion is None:
        return
    spans = []
    low, high = suggestion.low, suggestion.high
    if low is not None and high is not None:
        spans += [(lo_lr, low, "low", 0.18), (low, high, "optimal", 0.25)]
    if suggestion.rises_from is not None:
        spans.append((max(suggestion.rises_from, high or lo_lr), hi_lr, "high", 0.15))
    for a, b, key, alpha in spans:
        if b > a:
            name = ZONE_LABELS[key] if label else None
            ax.axvspan(a, b, color=ZONE_COLORS[key], alpha=alpha, linewidth=0, label=name)


def _legend(ax: Any, **kw: Any) -> None:
    """Outside the axes, on the right, where it cannot cover the curve, when the figure lays itself out
    (ours do); on a caller's figure without a layout engine, where it covers the fewest points."""
    if ax.figure.get_layout_engine() is not None:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, fontsize=8, framealpha=0.9, **kw)
    else:
        ax.legend(loc="best", fontsize=8, framealpha=0.9, **kw)


def _axes(ax: Any, show_slope: bool, slope_ax: Any) -> tuple[Any, Any]:
    """The loss and slope axes (``None`` without the slope panel): a new figure's, or the caller's ``ax`` with,
    when no ``slope_ax`` is given, a slope panel below sharing its x axis. A subplot's grid cell is split in
    two, so the layout engine sees both axes and keeps the x label inside; axes placed by hand get a divider.
    """
    if ax is None:
        _, ax, made = new_figure(show_slope)
        return ax, made if slope_ax is None else slope_ax
    if not show_slope or slope_ax is not None:
        return ax, slope_ax
    spec = ax.get_subplotspec()
    if spec is None:
        from mpl_toolkits.axes_grid1 import make_axes_locatable

        return ax, make_axes_locatable(ax).append_axes("bottom", size="45%", pad=0.35, sharex=ax)
    cells = spec.subgridspec(2, 1, height_ratios=_PANELS, hspace=0.08)
    ax.set_subplotspec(cells[0])
    return ax, ax.figure.add_subplot(cells[1], sharex=ax)


def _finish(ax: Any, slope_ax: Any, ylabel: str, title: str | None) -> Any:
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.25)
    bottom = ax
    if slope_ax is not None:
        ax.tick_params(labelbottom=False)
        bottom = slope_ax
    bottom.set_xlabel("learning rate (log scale)")
    return bottom


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

    The smoothed loss with the raw loss faint behind it, on a log-x axis; the too low / optimal / too high
    zones; the suggested LR as a red dashed line and dot, labelled with its value (and its confidence when not
    high). ``show_slope`` adds a panel below with the slope the suggestion reads (on ``slope_ax``, or on axes
    appended below ``ax``); ``notes`` writes the stop reason and the diagnostics under the plot.
    """
    ax, slope_ax = _axes(ax, show_slope, slope_ax)
    curve = analysis_curve(history)
    _draw_loss(ax, history, curve, suggestion, annotate=annotate, zones=zones)
    if title and history.stop_reason:
        title = f"{title} ({len(history.lr)} steps, stopped early)"
    bottom = _finish(ax, slope_ax, "loss (smoothed, raw faint)", title)
    if ax.get_legend_handles_labels()[0]:
        _legend(ax)
    if slope_ax is not None:
        draw_slope(history, suggestion, slope_ax, curve, zones=zones)
    if notes:
        _write_notes(bottom, suggestion, history)
    return ax


def _draw_loss(
    ax: Any, history: History, curve: Curve | str, suggestion: Suggestion | None, *, annotate: bool, zones: bool
) -> None:
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
    fallback = suggestion is not None and suggestion.fallback
    _set_ylim(ax, [(rise_limits(raw) if fallback else None) or y_limits(loss, raw) or y_limits(raw)])
    if not isinstance(curve, str) and suggestion is not None and suggestion.low is not None:
        i = int(curve.index[curve.imin])
        ax.plot([lrs[i]], [loss[i]], linestyle="none", marker="v", markersize=8, color="#1f4e9c",
                markeredgecolor="white", zorder=4, label="loss minimum")  # fmt: skip
    span = _lr_span(history)
    _mark_explosion(ax, lrs, raw, suggestion, span)
    if span is None:
        return
    lo_lr, hi_lr = span
    if zones:
        _zones(ax, suggestion, lo_lr, hi_lr)
    if suggestion is not None and suggestion.lr is not None:
        _mark(ax, lrs, loss, suggestion, lo_lr, hi_lr, annotate)
    if hi_lr > lo_lr:
        ax.set_xlim(lo_lr, hi_lr)


def rise_limits(raw: np.ndarray) -> tuple[float, float] | None:
    """Limits for a curve without a descent that exploded: from its lowest value up to twice its starting
    level above that (more when the start is near zero), so the flat start reads flat and the explosion
    shows where it begins; ``None`` when the loss never rose that far."""
    r = np.asarray(raw, dtype=float)
    r = r[np.isfinite(r)]
    if r.size < 2:
        return None
    level, lo = float(np.median(r[: max(3, r.size // 10)])), float(np.min(r))
    top = level + max(abs(level), 10.0 * (level - lo), 1e-12)
    if float(np.max(r)) <= top:
        return None
    return lo - 0.04 * (top - lo), top


def _mark_explosion(ax: Any, lrs: np.ndarray, raw: np.ndarray, s: Suggestion | None, span: Any) -> None:
    """Where the raw loss, rising past ``s.rises_from``, leaves the top of the plot, an arrow with how far it
    went, when that is far (the limits keep the descent readable, this keeps the explosion visible)."""
    if s is None or s.rises_from is None or not np.isfinite(raw).any():
        return
    bottom, top = ax.get_ylim()
    with np.errstate(invalid="ignore"):
        off = np.flatnonzero((lrs >= s.rises_from) & ~(raw <= top))  # above the top, or not finite
    if not off.size:
        return
    j = int(off[0])
    tail = raw[j:][np.isfinite(raw[j:])]
    if tail.size == raw.size - j and float(np.max(tail)) < top + 0.5 * (top - bottom):
        return  # noise around the top, not an explosion
    peak = f"{float(np.max(tail)):.3g}" if tail.size else "not finite"
    if tail.size and tail.size < raw.size - j:
        peak += ", then not finite"
    x = _fraction(float(lrs[j]), span)
    ax.annotate(
        f"loss exploded: up to {peak}\nfrom LR {lrs[j]:.2e}", xy=(lrs[j], 1.0), xycoords=("data", "axes fraction"),
        xytext=(min(max(x, 0.03), 0.97), 0.86), textcoords="axes fraction", va="top", fontsize=8, color="#a02020",
        ha="right" if x > 0.8 else "left" if x < 0.2 else "center",
        arrowprops={"arrowstyle": "->", "color": "#a02020", "linewidth": 1.2},
        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
    )


def _fraction(lr: float, span: tuple[float, float] | None) -> float:
    """Where ``lr`` lies across the log x axis spanning ``span``, from 0 to 1."""
    if span is None or not span[1] > span[0]:
        return 0.5
    return (math.log10(lr) - math.log10(span[0])) / (math.log10(span[1]) - math.log10(span[0]))


def _lr_span(history: History) -> tuple[float, float] | None:
    """The swept LRs' range (every step, those whose loss was not finite included)."""
    lrs = np.asarray(history.lr, dtype=float)
    keep = lrs[np.isfinite(lrs) & (lrs > 0)]
    return (float(np.min(keep)), float(np.max(keep))) if keep.size else None


def _write_notes(bottom: Any, suggestion: Suggestion | None, history: History) -> None:
    notes = [f"stopped early: {history.stop_reason}"] if history.stop_reason else []
    if suggestion is not None:
        if suggestion.lr is None and suggestion.reason:
            notes.append(f"no suggestion: {suggestion.reason}")
        notes.extend(n for n in suggestion.diagnostics if n and n != suggestion.reason)
    if not notes:
        return
    width = max(40, int(bottom.figure.get_figwidth() * 13))  # characters of 8 pt text across the figure
    bottom.annotate(
        "\n".join(textwrap.fill("note: " + n, width) for n in list(dict.fromkeys(notes))[:4]),
        xy=(0.0, 0.0), xycoords=("axes fraction", bottom.xaxis.label), xytext=(0, -4), textcoords="offset points",
        ha="left", va="top", fontsize=8, color="#8a4b00", annotation_clip=False,
    ).set_in_layout(True)


def _mark(
    ax: Any, lrs: np.ndarray, loss: np.ndarray, s: Suggestion, lo_lr: float, hi_lr: float, annotate: bool
) -> None:
    assert s.lr is not None
    color = FALLBACK_COLOR if s.fallback else "red"
    if s.fallback:  # no point of the curve: a line of its own, no dot on the noise
        label = f"fallback: stop LR / {NO_DESCENT_DIVISOR:g}"
        ax.axvline(s.lr, color=color, linestyle="-.", linewidth=1.5, label=label)
    else:
        ax.axvline(s.lr, color=color, linestyle="--", linewidth=1.5, label=f"suggested LR ({s.method})")
        _dot(ax, lrs, loss, s, color, "white")
    if not annotate:
        return
    text = f"suggested LR = {s.lr:.2e}"
    if s.basis:
        text += f"\n= {s.basis}"
    if s.fallback:
        text += "\n(no descent to pick from)"
    elif s.position is not None:
        text += "\nin the optimal range" if s.position == "inside" else f"\n{s.position} the optimal range"
    if s.confidence_label in ("low", "medium"):
        text += f"\n({s.confidence_label} confidence)"
    # On the left of the line, low: left of a pick the loss is still near its start, at the top, and the
    # bottom is free; a pick too near the left edge for that gets the label on its right, at the top.
    flip = _fraction(s.lr, (lo_lr, hi_lr)) > _FLIP_AT
    ax.annotate(
        text, xy=(s.lr, 0.03 if flip else 0.97), xycoords=("data", "axes fraction"), xytext=(-7 if flip else 7, 0),
        textcoords="offset points", ha="right" if flip else "left", va="bottom" if flip else "top", color=color,
        fontsize=9,
        bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": color, "alpha": 0.9},
    )


def slope_label(curve: Curve) -> str:
    """The y label of the slope panel: log loss for positive losses, the loss itself otherwise."""
    return "d ln(loss) / d log10(LR)" if curve.is_log else "d loss / d log10(LR)"


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
    history: History, suggestion: Suggestion | None, ax: Any,
    curve: Curve | str, *, zones: bool = True, color: str = "#6a3d9a", label: str | None = None,
) -> Any:
    """The slope of ``history``'s analysis ``curve`` against log10(LR), the quantity the suggestion reads, over
    the points of the smoothed loss. A ``label`` (one curve of a comparison) draws the suggestion in ``color``
    instead of red, and no caption.
    """
    ax.set_xscale("log")
    if isinstance(curve, str):
        text = textwrap.fill(f"no slope: {curve}", 80)
        ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=8)
        return ax
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    span = _lr_span(history)
    if zones and span is not None:
        _zones(ax, suggestion, *span, label=False)
    stop = curve.informative
    ax.plot(curve.lrs[:stop], curve.grad[:stop], color=color, linewidth=1.6, label=label or "slope")
    if suggestion is not None and suggestion.lr is not None:
        own = FALLBACK_COLOR if suggestion.fallback else "red"
        style = "-." if suggestion.fallback else "--"
        ax.axvline(suggestion.lr, color=own if label is None else color, linestyle=style, linewidth=1.2)
    _set_ylim(ax, [slope_limits(curve)])
    ax.set_ylabel(slope_label(curve), fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    if label is None:
        steepest = suggestion is not None and suggestion.method == "steepest"
        caption = "slope of the smoothed loss" + (": the suggestion is its steepest descent" if steepest else "")
        ax.text(
            0.01, 0.96, caption, transform=ax.transAxes, ha="left", va="top", fontsize=8, color="0.25",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
        )
    return ax


def _set_ylim(ax: Any, limits: Sequence[tuple[float, float] | None]) -> None:
    known = [lim for lim in limits if lim is not None]
    if known:
        ax.set_ylim(min(a for a, _ in known), max(b for _, b in known))


def draw_compare(
    histories: Sequence[History], suggestions: Sequence[Suggestion | None], labels: Sequence[str], ax: Any = None,
    *, show_slope: bool = False, slope_ax: Any = None, raw: bool = False, title: str | None = "LR range tests compared",
) -> Any:
    """Overlay several curves: each smoothed loss in its colour, its optimal range drawn thick, its
    suggestion as a dashed line and a dot, and a legend naming each curve with its suggested LR.
    Returns the loss axes."""
    from matplotlib.lines import Line2D

    if not (len(histories) == len(suggestions) == len(labels)):
        lengths = f"{len(histories)}, {len(suggestions)}, {len(labels)}"
        raise InputError(f"histories, suggestions and labels differ in length: {lengths}")
    ax, slope_ax = _axes(ax, show_slope, slope_ax)
    curves = [analysis_curve(h) for h in histories]
    xs: list[float] = []
    y_lims = []
    for k, (h, c, s, name) in enumerate(zip(histories, curves, suggestions, labels, strict=True)):
        color = _COMPARE_COLORS[k % len(_COMPARE_COLORS)]
        if len(h.lr):
            y_lims.append(_draw_one(ax, h, c, s, name, color, raw))
            xs += [float(np.min(h.lr)), float(np.max(h.lr))]
        if slope_ax is not None:
            draw_slope(h, s, slope_ax, c, zones=False, color=color, label=name)
    ax.set_xscale("log")
    if xs and max(xs) > min(xs):
        ax.set_xlim(min(xs), max(xs))
    _set_ylim(ax, y_lims)
    if slope_ax is not None:  # limits from the same curves the slopes are drawn from
        usable = [c for c in curves if not isinstance(c, str)]
        _set_ylim(slope_ax, [slope_limits(c) for c in usable])
        kinds = {slope_label(c) for c in usable}
        slope_ax.set_ylabel(kinds.pop() if len(kinds) == 1 else "d ln(loss) (or d loss) / d log10(LR)", fontsize=9)
    handles = ax.get_legend_handles_labels()[0] + [
        Line2D([], [], color="0.4", linewidth=6, alpha=0.35, label="optimal range"),
        Line2D([], [], color="0.4", linestyle="--", marker="o", label="suggested LR"),
    ]
    methods = {s.method for s in suggestions if s is not None}
    legend_title = f"suggested LR ({methods.pop()})" if len(methods) == 1 else "suggested LR"
    _legend(ax, handles=handles, title=legend_title, title_fontsize=8)
    _finish(ax, slope_ax, "loss (smoothed)", title)
    return ax


def _draw_one(
    ax: Any, h: History, c: Curve | str, s: Suggestion | None, name: str, color: str, raw: bool
) -> tuple[float, float] | None:
    """One curve of a comparison; returns the y-limits it needs."""
    lrs = np.asarray(h.lr, dtype=float)
    raw_loss = np.asarray(h.raw_loss, dtype=float)
    loss = smoothed_curve(h, c)
    if raw:
        ax.plot(lrs, raw_loss, color=color, alpha=0.15, linewidth=1)
    text = f"{name}: {s.lr:.2e}" if s is not None and s.lr is not None else f"{name}: no suggestion"
    ax.plot(lrs, loss, color=color, linewidth=1.8, label=text)
    if s is not None and s.low is not None and s.high is not None:
        inside = (lrs >= s.low) & (lrs <= s.high)
        if inside.any():
            ax.plot(lrs[inside], loss[inside], color=color, linewidth=6, alpha=0.35, solid_capstyle="round")
    if s is not None and s.lr is not None:
        ax.axvline(s.lr, color=color, linestyle="-." if s.fallback else "--", linewidth=1.1, alpha=0.9)
        if not s.fallback:  # a fallback is no point of its curve
            _dot(ax, lrs, loss, s, color, "black")
    return y_limits(loss) or y_limits(raw_loss)


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
