"""Candidate suggestion rules for the benchmark, and fastai's rules written from their description.

A candidate is a pure function ``(lrs, losses, raw_losses) -> float | None``: ``losses`` is the finder's
EMA-smoothed loss (``history["loss"]``), ``raw_losses`` the per-step loss (``history["raw_loss"]``). Each
rule picks one of the two as its input (``ema:`` or ``raw:`` in its name); the curve is then cleaned
and smoothed once more, without lag, by :func:`lr_finder.suggestion.prepare` (Savitzky-Golay on
log loss against log LR), exactly as the package's own methods do.

Every rule is general: no per-task constant. The constants of a family (the fraction ``k``, the divisor
``c``) are few and their choice is checked by leave-one-task-out selection in the benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lr_finder.suggestion import Curve, prepare

Rule = Callable[[Sequence[float], Sequence[float], Sequence[float]], "float | None"]


# ------------------------------------------------------------------------------------------------
# building blocks on a prepared (cleaned, SG-smoothed) curve
# ------------------------------------------------------------------------------------------------


def _steepest_index(c: Curve) -> int | None:
    """Steepest descent of the smoothed log loss, before the smoothed minimum."""
    if c.imin == 0:
        return None
    i = int(np.argmin(c.grad[: c.imin + 1]))
    return i if c.grad[i] < 0 else None


def _log_lr(c: Curve, i: int) -> float:
    return float(np.log10(c.lrs[i]))


def steepest(c: Curve) -> float | None:
    i = _steepest_index(c)
    return None if i is None else float(c.lrs[i])


def minimum_over(divisor: float) -> Callable[[Curve], float | None]:
    """The LR of the smoothed minimum divided by ``divisor`` (fastai's ``minimum`` uses 10)."""

    def rule(c: Curve) -> float | None:
        if c.imin == 0:
            return None
        return float(max(c.lrs[c.imin] / divisor, c.lrs[0]))

    return rule


def steep_to_min(k: float) -> Callable[[Curve], float | None]:
    """The point a fraction ``k`` of the way from the steepest point to the minimum, in log LR."""

    def rule(c: Curve) -> float | None:
        i = _steepest_index(c)
        if i is None:
            return None
        a, b = _log_lr(c, i), _log_lr(c, c.imin)
        return float(10 ** (a + k * (b - a)))

    return rule


def drop_fraction(q: float) -> Callable[[Curve], float | None]:
    """The first LR where the smoothed log loss has made a fraction ``q`` of its total drop to the minimum."""

    def rule(c: Curve) -> float | None:
        if c.imin == 0:
            return None
        top = float(np.max(c.ys[: c.imin + 1]))
        level = top - q * (top - float(c.ys[c.imin]))
        start = int(np.argmax(c.ys[: c.imin + 1]))
        j = start + int(np.argmax(c.ys[start : c.imin + 1] <= level))
        return float(c.lrs[j])

    return rule


def capped_curve(lrs: Sequence[float], losses: Sequence[float]) -> Curve | None:
    """Like :func:`lr_finder.suggestion.prepare`, but first caps the loss at its starting level.

    Past the minimum the loss explodes (often by orders of magnitude within a few steps); the explosion
    carries no information about which LR to pick, and its jump makes a Savitzky-Golay smoother ring,
    which digs a false minimum just before it. Capping every loss at the starting level (the median of
    the first tenth of the curve) removes that artifact and keeps the descent intact. Losses <= 0 are
    analysed as they are (no log), like ``prepare`` does.
    """
    x = np.asarray(lrs, dtype=float).ravel()
    v = np.asarray(losses, dtype=float).ravel()
    keep = np.isfinite(x) & np.isfinite(v) & (x > 0)
    x, v = x[keep], v[keep]
    if x.size < 5:
        return None
    start = float(np.median(v[: max(3, x.size // 10)]))
    c = prepare(x, np.minimum(v, start))
    return None if isinstance(c, str) else c


def points_per_decade(c: Curve, i: int, half: int = 3) -> float:
    """The sweep's density around point ``i``: recorded steps per decade of LR."""
    lo, hi = max(0, i - half), min(c.n - 1, i + half)
    span = float(np.log10(c.lrs[hi] / c.lrs[lo])) if hi > lo else 0.0
    return (hi - lo) / span if span > 0 else float("nan")


#: Density of the reference sweep (100 points from 1e-7 to 10) at which the divisor of ``backoff`` is 5.
REFERENCE_DENSITY = 99 / 8


def backoff(divisor: float = 5.0, lo: float = 2.0, hi: float = 10.0) -> Callable[[Curve], float | None]:
    """The LR of the loss minimum divided by ``divisor`` at the reference sweep density, the divisor
    scaled inversely with the density (clamped to ``[lo, hi]``).

    Why the scaling: the more steps a sweep spends per decade of LR, the more the model has trained when
    it reaches a given LR and the sooner a divergence shows, so the whole curve (descent and minimum)
    moves to lower LRs, by about a factor 2 per doubling of ``num_iter`` on the benchmark's tasks. A fixed
    divisor therefore suggests LRs that drift with ``num_iter``; a divisor proportional to 1/density
    does not.
    """

    def rule(c: Curve) -> float | None:
        if c.imin == 0:
            return None
        d = points_per_decade(c, c.imin)
        k = divisor * REFERENCE_DENSITY / d if np.isfinite(d) and d > 0 else divisor
        k = float(np.clip(k, lo, hi))
        return float(max(c.lrs[c.imin] / k, c.lrs[0]))

    return rule


def on_input(which: str, rule: Callable[[Curve], float | None], cap: bool = False) -> Rule:
    """Turn a rule on a prepared curve into a candidate reading the EMA (``"ema"``) or the raw loss,
    optionally capped at its starting level (:func:`capped_curve`)."""

    def candidate(lrs: Sequence[float], losses: Sequence[float], raw_losses: Sequence[float]) -> float | None:
        values = losses if which == "ema" else raw_losses
        c = capped_curve(lrs, values) if cap else prepare(lrs, values)
        if c is None or isinstance(c, str):
            return None
        return rule(c)

    return candidate


def _family() -> dict[str, Rule]:
    out: dict[str, Rule] = {}
    for which in ("ema", "raw"):  # the package's smoothing as it is
        out[f"{which}:steepest"] = on_input(which, steepest)
        out[f"{which}:steep>min 0.5"] = on_input(which, steep_to_min(0.5))
        for c in (3, 5, 10):
            out[f"{which}:min/{c}"] = on_input(which, minimum_over(c))
        out[f"{which}:drop 0.5"] = on_input(which, drop_fraction(0.5))
    for which in ("ema", "raw"):  # capped at the starting level before smoothing
        out[f"{which} cap:steepest"] = on_input(which, steepest, cap=True)
        for c in (2, 3, 4, 5, 7, 10):
            out[f"{which} cap:min/{c}"] = on_input(which, minimum_over(c), cap=True)
        for q in (0.2, 0.5):
            out[f"{which} cap:drop {q:g}"] = on_input(which, drop_fraction(q), cap=True)
    out["ema cap:backoff"] = on_input("ema", backoff(), cap=True)
    out["raw cap:backoff"] = on_input("raw", backoff(), cap=True)
    return out


#: Every candidate by name; ``ema`` reads ``history["loss"]``, ``raw`` reads ``history["raw_loss"]``;
#: ``cap`` caps the loss at its starting level before the smoothing.
CANDIDATES: dict[str, Rule] = _family()


# ------------------------------------------------------------------------------------------------
# fastai's rules (fastai.callback.schedule), written from their documented behaviour:
#   the recorder's loss is a debiased EMA with beta 0.98 (our smooth_f=0.02); the sweep stops when the
#   smoothed loss exceeds 4x its best; lr_find drops the first tenth of the points and the last five;
#   - minimum: the LR at the lowest loss, divided by 10;
#   - steep:   the LR of the steepest finite-difference slope of loss against log LR;
#   - valley:  the longest (not necessarily contiguous) decreasing run of losses, a point about half way in;
#   - slide:   from the end, slide a window of 15 points left until the loss gradients at its two ends
#              differ by at most 0.005; the window's left end.
# ------------------------------------------------------------------------------------------------


def fastai_trim(lrs: Sequence[float], losses: Sequence[float], num_it: int) -> tuple[np.ndarray, np.ndarray]:
    """What fastai's ``lr_find`` hands its rules: all points but the first ``num_it // 10`` and the last 5."""
    x, y = np.asarray(lrs, float), np.asarray(losses, float)
    lo, hi = num_it // 10, max(len(x) - 5, 0)
    return x[lo:hi], y[lo:hi]


def _finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0)
    return x[keep], y[keep]


def fastai_minimum(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    x, y = _finite(lrs, losses)
    return None if x.size == 0 else float(x[int(np.argmin(y))] / 10)


def fastai_steep(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    x, y = _finite(lrs, losses)
    if x.size < 2:
        return None
    slope = np.diff(y) / np.diff(np.log(x))
    return float(x[int(np.argmin(slope))])


def fastai_valley(lrs: np.ndarray, losses: np.ndarray) -> float | None:
    x, y = _finite(lrs, losses)
    n = x.size
    if n < 2:
        return None
    run = np.ones(n, dtype=int)  # length of the longest decreasing subsequence ending at i
    for i in range(1, n):
        smaller = y[:i] > y[i]
        if smaller.any():
            run[i] = 1 + int(run[:i][smaller].max())
    end = int(np.argmax(run))
    start = end - int(run[end])
    span = (end - start) / 3
    idx = start + int(span) + int(span / 2)
    return float(x[min(max(idx, 0), n - 1)])


def fastai_slide(lrs: np.ndarray, losses: np.ndarray, lr_diff: int = 15, thresh: float = 0.005) -> float | None:
    x, y = _finite(lrs, losses)
    n = x.size
    if n <= lr_diff:
        return None
    g = np.gradient(y)
    right, left = n - 1, n - 1 - lr_diff
    pick = x[left]
    while left >= 0 and abs(g[right] - g[left]) > thresh:
        pick = x[left]
        right, left = right - 1, left - 1
    return float(pick)


FASTAI: dict[str, Callable[[np.ndarray, np.ndarray], float | None]] = {
    "fastai valley": fastai_valley,
    "fastai minimum/10": fastai_minimum,
    "fastai steep": fastai_steep,
    "fastai slide": fastai_slide,
}

#: The rule the benchmark proposes as the package's default (its stability is reported).
PROPOSED_DEFAULT = "raw cap:backoff"
