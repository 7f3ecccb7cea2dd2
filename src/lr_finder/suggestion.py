"""Learning-rate suggestions: pure functions of ``(lrs, losses)``, no torch, no plotting.

One pipeline serves the suggestion, the plot and the benchmark: :func:`prepare` cleans, caps, smooths the
curve and takes its slope; :func:`evaluate` asks whether the descent is real against the curve's own noise,
lets the method pick a point, and adds the zones and the diagnostics. Linear or ``n log n`` in the length.

Feed it the per-step loss (``history["raw_loss"]``), not the EMA of ``history["loss"]``: the EMA lags
about ``1 / smooth_f`` steps (1.6 decades of a 100-step sweep from 1e-7 to 10), and that lag in decades
grows as ``num_iter`` shrinks; the zero-phase smoothing here does not lag
(``benchmarks/suggestion_quality.py`` measures both).
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .history import History
from .smoothing import noise_level, smooth, window_length, window_means

#: Fewest usable points for any suggestion.
MIN_POINTS = 5
#: The method used when none is named (chosen by ``benchmarks/suggestion_quality.py``).
DEFAULT_METHOD = "backoff"
#: ``backoff``: the divisor of the loss minimum's LR at the reference sweep density (chosen by
#: cross-validation on the tuning split of ``benchmarks/suggestion_quality.py``) ...
BACKOFF_DIVISOR = 3.0
#: ... which is that of 100 steps from 1e-7 to 10 (steps per decade of LR) ...
REFERENCE_DENSITY = 99 / 8
#: ... and the bounds of the divisor once scaled to the sweep's own density.
BACKOFF_BOUNDS = (0.4 * BACKOFF_DIVISOR, 2.0 * BACKOFF_DIVISOR)
#: Fraction of the steepest slope that still counts as "dropping fast" (the optimal zone).
ZONE_SLOPE_FRACTION = 0.5
#: A descent is real when the drop from the start to the minimum exceeds this many standard errors of
#: the curve's own noise. The minimum is picked from the data, so pure noise reaches 2 to 3 of them;
#: ``tests/test_suggestion.py`` checks pure noise never passes and a short noisy descent always does.
DESCENT_Z = 5.0
#: A sweep that diverged without a real descent first (flat, then exploding: deep plain nets, some RNNs)
#: still says where training stops working; its suggestion is the LR where it stopped over this divisor,
#: chosen with ``BACKOFF_DIVISOR`` by the same cross-validation.
NO_DESCENT_DIVISOR = 40.0

#: A rise before the descent is capped at its own top rather than at the starting level when it exceeds
#: that level by this many times the point-to-point noise ...
BUMP_NOISE = 3.0
#: ... and by this fraction of the drop from the starting level to the minimum (see ``_bump``).
BUMP_DROP = 0.25

Pick = tuple[float | None, int | None, str | None]
"""What a method returns: the LR, its index in the curve when it is one of the points, or why none."""


@dataclass(frozen=True)
class Suggestion:
    """A suggested learning rate with its optimal range and how far to trust it.

    Attributes:
        lr: the suggested learning rate, or ``None`` when the curve cannot support one.
        method: the method that produced it.
        low, high: edges of the optimal range, where the slope of the smoothed loss is within half of its
            steepest (the loss drops fast there), whatever the method picks; ``None`` without a descent.
            The pick may lie outside it (``position`` says where; a diagnostic says why).
        confidence: 0 (do not trust) to 1 (clean curve, clear descent, clear divergence).
        reason: why ``lr`` is ``None`` and what to do; ``None`` when there is a suggestion.
        diagnostics: everything worth fixing about the curve, each with what to do.
        index: index of the suggested point in the arrays given, when the LR is one of them.
        rises_from: the LR of the smoothed loss minimum when the loss rises after it (the "too high"
            zone starts there), or for a ``fallback``, where the loss began its final rise; ``None`` when
            the loss never rose.
        basis: how the pick was made, in a few words ("loss minimum 3.51e-01 / 2.25 (safety margin)").
        fallback: the pick is no point of a descent (there was none) but the LR where the sweep diverged
            over ``NO_DESCENT_DIVISOR``.
    """

    lr: float | None
    method: str
    low: float | None = None
    high: float | None = None
    confidence: float = 0.0
    reason: str | None = None
    diagnostics: tuple[str, ...] = ()
    index: int | None = None
    rises_from: float | None = None
    basis: str | None = None
    fallback: bool = False

    @property
    def position(self) -> str | None:
        """Where ``lr`` lies against the optimal range: ``"below"``, ``"inside"`` or ``"above"``; ``None``
        without both."""
        if self.lr is None or self.low is None or self.high is None:
            return None
        return "below" if self.lr < self.low else "above" if self.lr > self.high else "inside"

    @property
    def confidence_label(self) -> str:
        if self.lr is None:
            return "none"
        return "high" if self.confidence >= 0.66 else "medium" if self.confidence >= 0.33 else "low"

    def to_dict(self) -> dict[str, object]:
        return {
            "lr": self.lr,
            "method": self.method,
            "low": self.low,
            "high": self.high,
            "rises_from": self.rises_from,
            "position": self.position,
            "basis": self.basis,
            "fallback": self.fallback,
            "confidence": round(self.confidence, 4),
            "confidence_label": self.confidence_label,
            "reason": self.reason,
            "diagnostics": list(self.diagnostics),
        }

    def _repr_html_(self) -> str:
        """A small table for Jupyter: LR, range, confidence, method, basis and diagnostics (all escaped)."""
        esc = html.escape
        rng = "&ndash;" if self.low is None or self.high is None else f"{self.low:.2e} to {self.high:.2e}"
        if self.position is not None:
            rng += f" (pick {self.position})"
        rows = [
            ("LR", "none" if self.lr is None else f"{self.lr:.3e}"),
            ("range", rng),
            ("confidence", f"{self.confidence:.2f} ({esc(self.confidence_label)})"),
            ("method", esc(self.method) + (" (fallback)" if self.fallback else "")),
        ]
        if self.basis:
            rows.append(("basis", esc(self.basis)))
        if self.reason:
            rows.append(("reason", esc(self.reason)))
        notes = "".join(f"<li>{esc(d)}</li>" for d in self.diagnostics if d != self.reason)
        rows.append(("diagnostics", f"<ul>{notes}</ul>" if notes else "none"))
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
                       for k, v in rows)
        return f"<table><caption>lr_finder Suggestion</caption>{body}</table>"


@dataclass(frozen=True)
class Curve:
    """A cleaned curve (finite points, LR > 0, increasing LR) with its smoothed analysis values."""

    lrs: np.ndarray
    y: np.ndarray  # capped, transformed loss
    ys: np.ndarray  # y smoothed, within the range of y
    grad: np.ndarray  # d ys / d log10(lr)
    index: np.ndarray  # position of each point in the caller's arrays
    imin: int  # index of the lowest smoothed value
    cap: float
    noise: float  # standard deviation of the point-to-point noise of the uncapped y (see prepare)
    is_log: bool  # y is log(loss): every loss is positive
    informative: int  # how many leading points say something (see prepare)
    ends_non_finite: bool = False  # the caller's losses turned NaN or infinite after the last point
    raw: np.ndarray | None = None  # the transformed loss before the cap (``None``: as ``y``)

    @property
    def n(self) -> int:
        return int(self.lrs.size)

    @property
    def loss(self) -> np.ndarray:
        """The smoothed curve in the loss's own units."""
        return np.exp(self.ys) if self.is_log else self.ys.copy()


def _clean(
    lrs: Sequence[float] | np.ndarray, losses: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool, dict[str, int]]:
    """Finite points with LR > 0, sorted by LR, repeated LRs dropped, with their original indices; whether
    the losses turned non-finite after the last point kept; and how many points were dropped, by why."""
    x = np.asarray(lrs, dtype=float).ravel()
    v = np.asarray(losses, dtype=float).ravel()
    if x.size != v.size:
        raise InputError(f"lrs and losses must have the same length, got {x.size} and {v.size}")
    with np.errstate(invalid="ignore"):
        good_lr = np.isfinite(x) & (x > 0)
    keep = good_lr & np.isfinite(v)
    index = np.flatnonzero(keep)
    ends_non_finite = bool(index.size and not np.all(np.isfinite(v[index[-1] + 1 :])))
    x, first = np.unique(x[keep], return_index=True)  # sorted; of a repeated LR, its first point
    dropped = {
        "an LR that is not positive and finite": int(np.count_nonzero(~good_lr)),
        "a non-finite loss": int(np.count_nonzero(good_lr & ~np.isfinite(v))),
        "a repeated LR (the first one counts)": int(index.size - x.size),
    }
    return x, v[keep][first], index[first], ends_non_finite, dropped


def _too_few(total: int, kept: int, dropped: dict[str, int]) -> str:
    """Why a curve has fewer than ``MIN_POINTS`` usable points, counting what was dropped and why."""
    why = [f"{k} with {reason}" for reason, k in dropped.items() if k]
    detail = f"{kept} of {total} points" + (f", dropped {', '.join(why)}" if why else "")
    fixes = ["raise num_iter, or lower start_lr so the sweep runs longer before it stops"]
    if dropped["a repeated LR (the first one counts)"]:
        fixes.insert(0, "log one point per LR, the LR rising at every step")
    return f"too few usable points ({detail}; need {MIN_POINTS}): {'; or '.join(fixes)}"


def prepare(lrs: Sequence[float] | np.ndarray, losses: Sequence[float] | np.ndarray) -> Curve | str:
    """Clean, cap, transform and smooth a curve; returns a :class:`Curve`, or a reason string when it is
    unusable."""
    x, v, index, ends_non_finite, dropped = _clean(lrs, losses)
    if x.size < MIN_POINTS:
        return _too_few(x.size + sum(dropped.values()), x.size, dropped)
    is_log = bool(np.all(v > 0))
    with np.errstate(all="ignore"):
        uncapped = np.log(v) if is_log else v.copy()
        # Cap at the starting level (the median of the first tenth, at least 3 points): past the minimum the
        # loss explodes, often by orders of magnitude in a few steps; that carries no information about which
        # LR to pick, and the jump makes the smoother ring and dig a false minimum just before it.
        cap = float(np.median(uncapped[: max(3, x.size // 10)]))
        y = np.minimum(uncapped, cap)
        smoothed = smooth(y)
        bump = _bump(uncapped, smoothed, cap)
        if bump is not None:  # the loss rose well above its start before it fell: cap at that top instead
            cap = bump
            y = np.minimum(uncapped, cap)
            smoothed = smooth(y)
        grad = np.gradient(smoothed, np.log10(x))
    if not (np.all(np.isfinite(smoothed)) and np.all(np.isfinite(grad))):
        return "the curve has values too extreme to analyse: check the losses for overflow"
    # A smoother overshoots at sharp corners: the curve reported never leaves the values observed (the
    # minimum's position and the slope keep the smoother's own, so that a clipped bottom does not tie).
    ys = np.clip(smoothed, float(np.min(y)), cap)
    imin = int(np.argmin(smoothed))
    # Past the minimum, once the smoothed curve reaches the cap (the loss exploded), the rest says nothing.
    at_cap = np.flatnonzero(ys[imin:] >= cap - 1e-9 * (1.0 + abs(cap)))
    stop = ys.size if at_cap.size == 0 else imin + int(at_cap[0]) + 1
    # The noise of the loss itself (the cap would hide half of it), up to the minimum, where the curve is
    # smooth but for its noise (past it the loss may lurch about before it explodes); at least half the
    # curve, so that a minimum near the start (pure noise) is not judged on a handful of points.
    noise = noise_level(uncapped[: min(stop, max(imin + 1, x.size // 2))])
    return Curve(x, y, ys, grad, index, imin, cap, noise, is_log, stop, ends_non_finite, uncapped)


def _bump(uncapped: np.ndarray, smoothed: np.ndarray, cap: float) -> float | None:
    """The top of a rise before the descent, when the loss clearly rose above its starting level first.

    Capped at the starting level, such a rise leaves a corner where the falling loss crosses the cap; the
    smoother rounds it off and the slope read there is off (the steepest point moves toward the corner).
    The highest mean of a smoothing window before the minimum counts when it lies above the cap by 3 times
    the point-to-point noise and by a quarter of the drop to the minimum: noise and the slow drift of a flat
    curve stay below that, and their cap stays the starting level.
    """
    imin = int(np.argmin(smoothed))
    w = min(window_length(uncapped.size), imin + 1)
    top = float(np.max(window_means(uncapped[: imin + 1], w)))
    rise = top - cap
    if rise > BUMP_NOISE * noise_level(uncapped[: imin + 1]) and rise > BUMP_DROP * (cap - float(smoothed[imin])):
        return top
    return None


def descent(c: Curve) -> tuple[float, float]:
    """The drop of the curve and its standard error under the curve's own noise (above zero).

    From the mean of the first quarter of the curve (before the bottom: a descent that starts early makes
    the drop smaller, never larger) to the bottom, the lowest mean of ``window`` consecutive informative
    points. Means, not the smoothed minimum, because their noise is known exactly and is lower.
    """
    w = window_length(c.n)
    means = window_means(c.y[: max(c.informative, w)], w)
    j = int(np.argmin(means))
    if j == 0:
        return 0.0, 1.0
    m = min(max(3, c.n // 4), j)
    level = float(np.mean(c.y[:m]))
    # floor: rounding noise of a curve without any noise must not make a flat curve "descend"
    noise = max(c.noise, 1e-9 * (1.0 + abs(level)))
    return level - float(means[j]), noise * float(np.sqrt(1.0 / m + 1.0 / w))


_NO_DESCENT = (
    "loss never decreased (beyond its own noise): lower start_lr, raise num_iter or the batch size, or "
    "check the model, the data and the loss"
)


def _steepest(c: Curve) -> Pick:
    """The point of steepest descent of the smoothed log loss, before the curve's minimum."""
    i = int(np.argmin(c.grad[: c.imin + 1]))
    return float(c.lrs[i]), i, None


def _minimum(c: Curve) -> Pick:
    """A tenth of the LR at the loss minimum (fastai's ``minimum / 10`` rule)."""
    lr = float(c.lrs[c.imin]) / 10.0
    if lr < c.lrs[0]:
        return None, None, "the loss minimum is within a decade of start_lr: lower start_lr"
    i = int(np.searchsorted(c.lrs, lr))
    return lr, None if c.lrs[min(i, c.n - 1)] != lr else i, None


def _backoff(c: Curve) -> Pick:
    """The LR of the loss minimum over ``BACKOFF_DIVISOR``, scaled by ``REFERENCE_DENSITY / density`` (the
    sweep's steps per decade around the minimum) and kept within ``BACKOFF_BOUNDS``.

    The more steps a sweep spends per decade, the more the model has trained when it reaches an LR and
    the sooner a divergence shows: the whole curve moves to lower LRs, about a factor 2 per doubling of
    ``num_iter``. Scaling the divisor with the density keeps the suggestion where it was.
    """
    lo, hi = max(0, c.imin - 3), min(c.n - 1, c.imin + 3)  # hi > lo: at least MIN_POINTS points
    span = float(np.log10(c.lrs[hi] / c.lrs[lo]))  # 0 only when LRs a few ulps apart round to one ratio
    k = BACKOFF_DIVISOR * REFERENCE_DENSITY / ((hi - lo) / span) if span > 0 else BACKOFF_DIVISOR
    lr = float(c.lrs[c.imin]) / float(np.clip(k, *BACKOFF_BOUNDS))
    if lr < c.lrs[0]:
        return None, None, "the loss minimum is too close to start_lr: lower start_lr"
    return lr, None, None


def _valley(c: Curve) -> Pick:
    """The middle of the longest stretch over which the smoothed loss keeps decreasing."""
    down = np.concatenate(([0], (np.diff(c.ys) < 0).astype(np.int8), [0]))
    edges = np.diff(down)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    k = int(np.argmax(ends - starts))  # the first of the longest runs
    i = int(starts[k] + (ends[k] - starts[k]) // 2)
    return float(c.lrs[i]), i, None


Method = Callable[[Curve], Pick]
#: The methods by name. :func:`evaluate` calls one only on a curve whose descent is real, so it may rely
#: on a minimum past the first point and a negative slope before it.
METHODS: dict[str, Method] = {
    "backoff": _backoff,
    "steepest": _steepest,
    "valley": _valley,
    "minimum": _minimum,
}


def available_methods() -> list[str]:
    """Names accepted by ``method=`` (``"default"`` stands for :data:`DEFAULT_METHOD`)."""
    return ["default", *METHODS]


def zone(c: Curve) -> tuple[int, int] | None:
    """Index range of the optimal zone: around the steepest point before the minimum, the contiguous
    stretch whose slope is at least :data:`ZONE_SLOPE_FRACTION` of the steepest."""
    g = c.grad[: c.imin + 1]
    k = int(np.argmin(g))
    if not g[k] < 0:
        return None
    slow = np.flatnonzero(g > ZONE_SLOPE_FRACTION * g[k])
    before, after = slow[slow < k], slow[slow > k]
    lo = int(before[-1]) + 1 if before.size else 0
    hi = int(after[0]) - 1 if after.size else g.size - 1
    return lo, hi


def rises(c: Curve, drop: float) -> bool:
    """Whether the loss rises after its minimum (it diverged): the end sits clearly above the minimum (by a
    tenth of the ``drop`` before it), or the loss turned NaN or infinite."""
    tail = max(2, c.n // 20)
    return c.ends_non_finite or (c.imin < c.n - tail and float(c.ys[-1] - c.ys[c.imin]) > 0.1 * drop)


def _diagnose(c: Curve, drop: float, rose: bool, width: int) -> tuple[float, list[str]]:
    """Confidence in [0, 1] and the problems found, each with its fix."""
    notes: list[str] = []
    snr = drop / max(c.noise, 1e-12)
    confidence = min(1.0, snr / 10.0)
    if not rose:
        notes.append("loss never diverged: raise end_lr so the sweep reaches the LRs where training breaks")
        confidence *= 0.5
    if snr < 3.0:
        notes.append(
            "curve too noisy: raise num_iter or use a larger batch (the analysis smooths the raw loss itself; "
            "smooth_f only drives the stop rule)"
        )
    if width < 3:
        notes.append("the descent spans fewer than 3 points: raise num_iter for a finer sweep")
        confidence *= 0.5
    return confidence, notes  # in (0, 1]: a real descent has drop > 0


def _below_divergence(c: Curve, name: str, diverged_at: float) -> Suggestion:
    """A curve without a real descent whose sweep diverged at ``diverged_at``: well below that LR."""
    lr = max(diverged_at / NO_DESCENT_DIVISOR, float(c.lrs[0]))
    basis = f"fallback: stop LR {diverged_at:.2e} / {NO_DESCENT_DIVISOR:g}"
    note = (
        f"the loss never decreased beyond its noise before the sweep diverged at {diverged_at:.2e}: this is "
        f"that LR / {NO_DESCENT_DIVISOR:g}, not a point of the curve; check it with verify(), or lower "
        "start_lr / raise num_iter to see a descent"
    )
    return Suggestion(lr, name, None, None, 0.1, None, (note,), None, _final_rise(c, diverged_at), basis, True)


def _final_rise(c: Curve, diverged_at: float) -> float:
    """Where the loss began the rise it ended on: the first of the last run of points clearly above the
    starting level (by 3 times the noise); ``diverged_at`` when the curve does not end on such a run (its
    last points were not finite)."""
    above = (c.y if c.raw is None else c.raw) > c.cap + 3.0 * c.noise
    if not above[-1]:
        return diverged_at
    below = np.flatnonzero(~above)
    return float(c.lrs[int(below[-1]) + 1 if below.size else 0])


def evaluate(c: Curve | str, name: str, method: Method, diverged_at: float | None = None) -> Suggestion:
    """The rest of the pipeline on a prepared curve: is the descent real?, ``method``'s pick, the zones,
    the diagnostics. Any rule ``Curve -> (lr, index, reason)`` can be scored this way. ``diverged_at``: the
    LR where the sweep stopped on a divergence, if it did (used only when there is no real descent)."""
    if isinstance(c, str):
        return Suggestion(None, name, reason=c, diagnostics=(c,))
    drop, stderr = descent(c)
    z = zone(c) if drop > DESCENT_Z * stderr else None
    if z is None and diverged_at is not None:
        return _below_divergence(c, name, diverged_at)
    if z is None:  # no method may pick a point out of flat or rising noise
        return Suggestion(None, name, reason=_NO_DESCENT, diagnostics=(_NO_DESCENT,))
    rose = rises(c, drop)
    confidence, notes = _diagnose(c, drop, rose, z[1] - z[0] + 1)
    lr, i, reason = method(c)
    low, high = float(c.lrs[z[0]]), float(c.lrs[z[1]])
    top = float(c.lrs[c.imin]) if rose else None
    if lr is None:
        diagnostics = tuple(dict.fromkeys([reason or "", *notes]))
        return Suggestion(None, name, low, high, 0.0, reason, diagnostics, rises_from=top)
    index = None if i is None else int(c.index[i])
    basis = _basis(name, c, lr)
    s = Suggestion(lr, name, low, high, confidence, None, tuple(notes), index, top, basis)
    if s.position == "inside":
        return s
    where = (
        f"the suggestion {lr:.2e} lies {s.position} the optimal range ({low:.2e} to {high:.2e}, where the loss "
        "drops fastest)"
    )
    why = f": {name} takes {_BASIS_WORDS[name]}" if name in _BASIS_WORDS else ""
    return dataclasses.replace(s, diagnostics=(*notes, where + why))


#: How each method picks, in the words of a diagnostic ...
_BASIS_WORDS = {
    "backoff": "the loss minimum's LR over a divisor (about 3), a safety margin below the minimum",
    "minimum": "a tenth of the loss minimum's LR",
    "valley": "the middle of the longest stretch over which the loss keeps falling",
    "steepest": "the steepest point of the descent",
}


def _basis(name: str, c: Curve, lr: float) -> str | None:
    """... and in a few words for the plot's label, with the numbers of this curve."""
    lr_min = float(c.lrs[c.imin])
    return {
        "backoff": f"loss minimum {lr_min:.2e} / {lr_min / lr:.2f} (safety margin)",
        "minimum": f"loss minimum {lr_min:.2e} / 10",
        "valley": "middle of the longest descent",
        "steepest": "steepest descent",
    }.get(name)


def analyze(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    method: str = "default",
    *,
    diverged_at: float | None = None,
) -> Suggestion:
    """Suggest a learning rate from a range-test curve.

    Args:
        lrs: the learning rates of the sweep, one per step.
        losses: the loss at each step, preferably raw (``history["raw_loss"]``): the curve is smoothed
            here without lag, while an EMA shifts every feature to higher LRs.
        method: one of :func:`available_methods`.
        diverged_at: the LR at which the sweep stopped early, when it did (:func:`analyze_history` passes
            it). A curve with no real descent then gets that LR / ``NO_DESCENT_DIVISOR`` with low
            confidence instead of ``None``.

    Returns:
        A :class:`Suggestion`; its ``lr`` is ``None`` with a ``reason`` when the curve cannot support one.

    >>> import numpy as np
    >>> lrs = np.logspace(-5, 0, 60)
    >>> losses = 2.0 - np.tanh(np.log10(lrs) + 2.5) + np.maximum(0.0, np.log10(lrs) + 0.8) ** 2 * 20
    >>> round(float(np.log10(analyze(lrs, losses, "steepest").lr)), 1)  # steepest fall of log(loss)
    -2.2
    >>> s = analyze(lrs, losses)  # the default: the minimum's LR, backed off
    >>> s.method, f"{s.lr:.1e}", s.confidence_label
    ('backoff', '4.5e-02', 'high')
    >>> analyze(lrs, np.full(60, 2.3) + np.random.default_rng(0).normal(0, 0.1, 60)).reason[:40]
    'loss never decreased (beyond its own noi'
    """
    name = DEFAULT_METHOD if method == "default" else method
    if name not in METHODS:
        raise InputError(f"{method=} is not one of {available_methods()}")
    return evaluate(prepare(lrs, losses), name, METHODS[name], diverged_at)


def analyze_history(history: History, method: str = "default") -> Suggestion:
    """:func:`analyze` of a range test's record: its raw per-step losses (not the EMA), and its last LR as
    ``diverged_at`` when the sweep stopped early."""
    diverged_at = history.lr[-1] if history.stop_reason and history.lr else None
    return analyze(history.lr, history.raw_loss, method, diverged_at=diverged_at)
