"""Candidate suggestion rules under study, and fastai's rules written from their description.

A candidate is a pure function ``(lrs, losses, raw_losses) -> float | None``: ``losses`` is the finder's
EMA-smoothed loss (``history["loss"]``), ``raw_losses`` the per-step loss (``history["raw_loss"]``). Each
rule picks one of the two as its input (``ema:`` or ``raw:`` in its name) and goes through the package's
own pipeline: :func:`lr_finder.suggestion.prepare` (clean, cap at the starting level, smooth without lag,
slope) and :func:`lr_finder.suggestion.evaluate` (is the descent real?, the rule's pick). Only the pick is
written here; the shipped methods are scored by the benchmark through :func:`lr_finder.analyze` itself.

Every rule is general: no per-task constant. The constants of a family (the fraction ``k``, the divisor
``c``) are few and their choice is checked by leave-one-task-out selection in the benchmark.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lr_finder.suggestion import DEFAULT_METHOD, METHODS, Curve, Method, Pick, evaluate, prepare

Rule = Callable[[Sequence[float], Sequence[float], Sequence[float]], "float | None"]


# ------------------------------------------------------------------------------------------------
# picks on a prepared curve whose descent is real (evaluate checks that first)
# ------------------------------------------------------------------------------------------------


def minimum_over(divisor: float) -> Method:
    """The LR of the smoothed minimum divided by ``divisor`` (fastai's ``minimum`` uses 10)."""

    def rule(c: Curve) -> Pick:
        return float(max(c.lrs[c.imin] / divisor, c.lrs[0])), None, None

    return rule


def steep_to_min(k: float) -> Method:
    """The point a fraction ``k`` of the way from the steepest point to the minimum, in log LR."""
    steepest = METHODS["steepest"]

    def rule(c: Curve) -> Pick:
        lr, _, reason = steepest(c)
        if lr is None:
            return None, None, reason
        a, b = np.log10(lr), np.log10(c.lrs[c.imin])
        return float(10 ** (a + k * (b - a))), None, None

    return rule


def drop_fraction(q: float) -> Method:
    """The first LR where the smoothed log loss has made a fraction ``q`` of its total drop to the minimum."""

    def rule(c: Curve) -> Pick:
        top = float(np.max(c.ys[: c.imin + 1]))
        level = top - q * (top - float(c.ys[c.imin]))
        start = int(np.argmax(c.ys[: c.imin + 1]))
        j = start + int(np.argmax(c.ys[start : c.imin + 1] <= level))
        return float(c.lrs[j]), j, None

    return rule


def on_input(which: str, name: str, rule: Method) -> Rule:
    """Turn a pick on a prepared curve into a candidate reading the EMA (``"ema"``) or the raw loss."""

    def candidate(lrs: Sequence[float], losses: Sequence[float], raw_losses: Sequence[float]) -> float | None:
        values = losses if which == "ema" else raw_losses
        return evaluate(prepare(lrs, values), name, rule).lr

    return candidate


def _family() -> dict[str, Rule]:
    out: dict[str, Rule] = {}
    for which in ("ema", "raw"):
        picks: dict[str, Method] = {"steep>min 0.5": steep_to_min(0.5)}
        picks.update({f"min/{c}": minimum_over(c) for c in (2, 3, 4, 5, 7, 10)})
        picks.update({f"drop {q:g}": drop_fraction(q) for q in (0.2, 0.5)})
        for name, rule in picks.items():
            out[f"{which}:{name}"] = on_input(which, name, rule)
    return out


#: Every candidate by name; ``ema`` reads ``history["loss"]``, ``raw`` reads ``history["raw_loss"]``.
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

#: The rule whose stability the benchmark reports: the package's default, as the package runs it.
PROPOSED_DEFAULT = f"lr_finder {DEFAULT_METHOD}"
