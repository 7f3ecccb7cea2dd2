"""Learning-rate suggestions: pure functions of ``(lrs, losses)``, no torch, no plotting.

Every method drops non-finite points, works on curves that stopped early, and returns a
:class:`Suggestion` whose ``lr`` is inside the swept range or ``None`` with a ``reason`` saying why
and what to do.

The curve is analysed in log-LR space (the natural axis of an exponential sweep; for a linear sweep
the gradient is still taken against log LR, which ``np.gradient`` handles with uneven spacing), on
``log(loss)`` when every loss is positive and on the loss itself otherwise, after capping the loss at
its starting level and zero-phase smoothing (:func:`lr_finder.smoothing.smooth`).

Feed the methods the per-step loss (``history["raw_loss"]``), not the EMA of ``history["loss"]``: the
EMA lags about ``1 / smooth_f`` steps (1.6 decades of a 100-step sweep from 1e-7 to 10), and that lag in
decades grows as ``num_iter`` shrinks; the zero-phase smoothing here does not lag
(``benchmarks/suggestion_quality.py`` measures both).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .smoothing import smooth

#: Fewest usable points for any suggestion.
MIN_POINTS = 5
#: The method used when none is named (chosen by ``benchmarks/suggestion_quality.py``).
DEFAULT_METHOD = "backoff"
#: ``backoff``: the divisor of the loss minimum's LR at the reference sweep density ...
BACKOFF_DIVISOR = 5.0
#: ... which is that of 100 steps from 1e-7 to 10 (steps per decade of LR) ...
REFERENCE_DENSITY = 99 / 8
#: ... and the bounds of the divisor once scaled to the sweep's own density.
BACKOFF_BOUNDS = (2.0, 10.0)
#: Fraction of the steepest slope that still counts as "dropping fast" (the optimal zone).
ZONE_SLOPE_FRACTION = 0.5


@dataclass(frozen=True)
class Suggestion:
    """A suggested learning rate with its optimal range and how far to trust it.

    Attributes:
        lr: the suggested learning rate, or ``None`` when the curve cannot support one.
        method: the method that produced it.
        low, high: edges of the optimal zone (the loss drops fast there); ``None`` without a descent.
        confidence: 0 (do not trust) to 1 (clean curve, clear descent, clear divergence).
        reason: why ``lr`` is ``None`` and what to do; ``None`` when there is a suggestion.
        diagnostics: everything worth fixing about the curve, each with what to do.
        index: index of the suggested point in the arrays given, when the LR is one of them.
    """

    lr: float | None
    method: str
    low: float | None = None
    high: float | None = None
    confidence: float = 0.0
    reason: str | None = None
    diagnostics: tuple[str, ...] = field(default_factory=tuple)
    index: int | None = None

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
            "confidence": round(self.confidence, 4),
            "confidence_label": self.confidence_label,
            "reason": self.reason,
            "diagnostics": list(self.diagnostics),
        }


@dataclass(frozen=True)
class Curve:
    """A cleaned curve: finite points, LR > 0, increasing LR, with its smoothed analysis values."""

    lrs: np.ndarray
    y: np.ndarray  # log(loss) when all losses > 0, else loss
    ys: np.ndarray  # y smoothed
    grad: np.ndarray  # d ys / d log10(lr)
    index: np.ndarray  # position of each point in the caller's arrays
    imin: int  # index of the lowest smoothed value

    @property
    def n(self) -> int:
        return int(self.lrs.size)


def prepare(lrs: Sequence[float] | np.ndarray, losses: Sequence[float] | np.ndarray) -> Curve | str:
    """Clean and smooth a curve; returns a :class:`Curve`, or a reason string when it is unusable."""
    x = np.asarray(lrs, dtype=float).ravel()
    v = np.asarray(losses, dtype=float).ravel()
    if x.size != v.size:
        raise InputError(f"lrs and losses must have the same length, got {x.size} and {v.size}")
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(x) & np.isfinite(v) & (x > 0)
    index = np.flatnonzero(keep)
    x, v = x[keep], v[keep]
    order = np.argsort(x, kind="stable")
    x, v, index = x[order], v[order], index[order]
    if x.size:
        first = np.concatenate(([True], np.diff(x) > 0))  # drop repeated LRs
        x, v, index = x[first], v[first], index[first]
    if x.size < MIN_POINTS:
        return (
            f"too few usable points ({x.size} finite, need {MIN_POINTS}): raise num_iter, or lower start_lr "
            "so the sweep runs longer before it stops"
        )
    # Cap at the starting level: past the minimum the loss explodes, often by orders of magnitude in a
    # few steps; that carries no information about which LR to pick, and the jump makes the smoother
    # ring and dig a false minimum just before it.
    v = np.minimum(v, float(np.median(v[: max(3, x.size // 10)])))
    with np.errstate(all="ignore"):
        y = np.log(v) if np.all(v > 0) else v.copy()
        ys = smooth(y)
        logx = np.log10(x)
        grad = np.gradient(ys, logx)
    if not (np.all(np.isfinite(ys)) and np.all(np.isfinite(grad))):
        return "the curve has values too extreme to analyse: check the losses for overflow"
    return Curve(x, y, ys, grad, index, int(np.argmin(ys)))


_NO_DESCENT = "loss never decreased: lower start_lr, or check the model, the data and the loss"


def _steepest(c: Curve) -> tuple[float | None, int | None, str | None]:
    """The point of steepest descent of the smoothed log loss, before the curve's minimum."""
    if c.imin == 0:
        return None, None, _NO_DESCENT
    i = int(np.argmin(c.grad[: c.imin + 1]))
    if not c.grad[i] < 0:
        return None, None, _NO_DESCENT
    return float(c.lrs[i]), i, None


def _minimum(c: Curve) -> tuple[float | None, int | None, str | None]:
    """A tenth of the LR at the loss minimum (fastai's ``minimum / 10`` rule)."""
    if c.imin == 0:
        return None, None, _NO_DESCENT
    lr = float(c.lrs[c.imin]) / 10.0
    if lr < c.lrs[0]:
        return None, None, "the loss minimum is within a decade of start_lr: lower start_lr"
    i = int(np.searchsorted(c.lrs, lr))
    return lr, None if c.lrs[min(i, c.n - 1)] != lr else i, None


def _points_per_decade(c: Curve, i: int, half: int = 3) -> float:
    """The sweep's density around point ``i``: recorded steps per decade of LR."""
    lo, hi = max(0, i - half), min(c.n - 1, i + half)
    span = float(np.log10(c.lrs[hi] / c.lrs[lo])) if hi > lo else 0.0
    return (hi - lo) / span if span > 0 else float("nan")


def _backoff(c: Curve) -> tuple[float | None, int | None, str | None]:
    """The LR of the loss minimum divided by 5 at the density of a 100-step sweep from 1e-7 to 10, the
    divisor scaled by ``REFERENCE_DENSITY / density`` and kept within ``BACKOFF_BOUNDS``.

    The more steps a sweep spends per decade, the more the model has trained when it reaches an LR and
    the sooner a divergence shows: the whole curve moves to lower LRs, about a factor 2 per doubling of
    ``num_iter``. Scaling the divisor with the density keeps the suggestion where it was.
    """
    if c.imin == 0:
        return None, None, _NO_DESCENT
    d = _points_per_decade(c, c.imin)
    k = BACKOFF_DIVISOR * REFERENCE_DENSITY / d if np.isfinite(d) and d > 0 else BACKOFF_DIVISOR
    lr = float(c.lrs[c.imin]) / float(np.clip(k, *BACKOFF_BOUNDS))
    if lr < c.lrs[0]:
        return None, None, "the loss minimum is too close to start_lr: lower start_lr"
    return lr, None, None


def _valley(c: Curve) -> tuple[float | None, int | None, str | None]:
    """The middle of the longest stretch over which the smoothed loss keeps decreasing."""
    down = np.diff(c.ys) < 0
    best_len, best_start, run, start = 0, 0, 0, 0
    for k, d in enumerate(down):
        if d:
            if run == 0:
                start = k
            run += 1
            if run > best_len:
                best_len, best_start = run, start
        else:
            run = 0
    if best_len == 0:
        return None, None, _NO_DESCENT
    i = best_start + best_len // 2
    return float(c.lrs[i]), i, None


METHODS: dict[str, Callable[[Curve], tuple[float | None, int | None, str | None]]] = {
    "backoff": _backoff,
    "steepest": _steepest,
    "valley": _valley,
    "minimum": _minimum,
}


def available_methods() -> list[str]:
    """Names accepted by ``method=`` (``"default"`` stands for :data:`DEFAULT_METHOD`)."""
    return ["default", *METHODS]


def _zone(c: Curve) -> tuple[int, int] | None:
    """Index range of the optimal zone: around the steepest point, slope within a fraction of it."""
    if c.imin == 0:
        return None
    g = c.grad[: c.imin + 1]
    k = int(np.argmin(g))
    if not g[k] < 0:
        return None
    fast = g <= ZONE_SLOPE_FRACTION * g[k]
    lo = k
    while lo > 0 and fast[lo - 1]:
        lo -= 1
    hi = k
    while hi < g.size - 1 and fast[hi + 1]:
        hi += 1
    return lo, hi


def _diagnose(c: Curve, zone: tuple[int, int] | None) -> tuple[float, list[str]]:
    """Confidence in [0, 1] and the problems found, each with its fix."""
    notes: list[str] = []
    drop = float(c.ys[0] - c.ys[c.imin])
    upto = max(c.imin + 1, MIN_POINTS)
    noise = float(np.std(c.y[:upto] - c.ys[:upto])) + 1e-12
    snr = drop / noise
    if zone is None or drop <= 0:
        notes.append(_NO_DESCENT)
        return 0.0, notes
    rise = float(c.ys[-1] - c.ys[c.imin])
    tail = max(2, c.n // 20)
    diverged = c.imin < c.n - tail and rise > 0.1 * drop
    confidence = min(1.0, snr / 10.0)
    if not diverged:
        notes.append("loss never diverged: raise end_lr so the sweep reaches the LRs where training breaks")
        confidence *= 0.5
    if snr < 3.0:
        notes.append(
            "curve too noisy: raise num_iter, use a larger batch, or lower smooth_f (stronger smoothing)"
        )
    width = zone[1] - zone[0] + 1
    if width < 3:
        notes.append("the descent spans fewer than 3 points: raise num_iter for a finer sweep")
        confidence *= 0.5
    return float(np.clip(confidence, 0.0, 1.0)), notes


def analyze(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    method: str = "default",
) -> Suggestion:
    """Suggest a learning rate from a range-test curve.

    Args:
        lrs: the learning rates of the sweep, one per step.
        losses: the loss at each step, preferably raw (``history["raw_loss"]``): the curve is smoothed
            here without lag, while an EMA shifts every feature to higher LRs.
        method: one of :func:`available_methods`.

    Returns:
        A :class:`Suggestion`; its ``lr`` is ``None`` with a ``reason`` when the curve cannot support one.

    >>> import numpy as np
    >>> lrs = np.logspace(-5, 0, 60)
    >>> losses = 2.0 - np.tanh(np.log10(lrs) + 2.5) + np.maximum(0.0, np.log10(lrs) + 0.8) ** 2 * 20
    >>> round(float(np.log10(analyze(lrs, losses, "steepest").lr)), 1)  # steepest fall of log(loss)
    -2.2
    >>> s = analyze(lrs, losses)  # the default: the minimum's LR, backed off
    >>> s.method, f"{s.lr:.1e}", s.confidence_label
    ('backoff', '2.7e-02', 'high')
    """
    name = DEFAULT_METHOD if method == "default" else method
    if name not in METHODS:
        raise InputError(f"{method=} is not one of {available_methods()}")
    c = prepare(lrs, losses)
    if isinstance(c, str):
        return Suggestion(None, name, reason=c, diagnostics=(c,))
    zone = _zone(c)
    confidence, notes = _diagnose(c, zone)
    if zone is None:  # no real descent: no method may pick a point out of flat or rising noise
        return Suggestion(None, name, reason=_NO_DESCENT, diagnostics=tuple(notes))
    lr, i, reason = METHODS[name](c)
    low = high = None
    if zone is not None:
        low, high = float(c.lrs[zone[0]]), float(c.lrs[zone[1]])
        if lr is not None:
            low, high = min(low, lr), max(high, lr)
    if lr is None:
        return Suggestion(None, name, low, high, 0.0, reason, tuple(dict.fromkeys([reason or "", *notes])))
    return Suggestion(
        lr, name, low, high, confidence, None, tuple(notes), None if i is None else int(c.index[i])
    )


def suggest_lr(
    lrs: Sequence[float] | np.ndarray, losses: Sequence[float] | np.ndarray, method: str = "default"
) -> float | None:
    """The suggested learning rate alone (see :func:`analyze`), or ``None`` when there is none."""
    return analyze(lrs, losses, method).lr
