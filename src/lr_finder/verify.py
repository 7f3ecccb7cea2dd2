"""The pure part of :meth:`lr_finder.LRFinder.verify`: scoring a short constant-LR run, choosing among them.

A range test sees each LR for one step; an instability that grows over tens of steps (deep plain nets,
recurrent nets, a constant LR) does not show in it, so verification trains a few short runs around the pick.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .errors import InputError, InputTypeError
from .settings import RangeTestSettings

#: The candidates, as multiples of the suggestion: the risky side is above it, so more room below.
DEFAULT_FACTORS = (0.25, 0.5, 1.0, 2.0)
_FLOAT32_MAX = 3.4028234663852886e38
#: Fraction of a run's last steps whose mean loss scores it.
TAIL = 0.25


@dataclass(frozen=True)
class Trial:
    """One short constant-LR run: its LR, its score (mean loss of the last steps), and why it is unfit."""

    lr: float
    score: float
    stderr: float
    steps: int
    problem: str | None = None

    @property
    def stable(self) -> bool:
        return self.problem is None


@dataclass(frozen=True)
class Verification:
    """The verified learning rate (``None`` when no candidate trained stably) and every trial."""

    lr: float | None
    suggested: float
    trials: tuple[Trial, ...]
    reason: str | None = None

    @property
    def extra_steps(self) -> int:
        """Training steps the verification cost (the range test's own steps not counted)."""
        return sum(t.steps for t in self.trials)


def plan(suggested: float, factors: Any, steps: Any, base: RangeTestSettings) -> (
    tuple[list[float], RangeTestSettings]
):
    """The candidate LRs (``suggested`` times each factor) and the settings of their runs, from the range
    test's ``base`` settings; every argument checked before anything is trained."""
    example = "e.g. factors=(0.25, 0.5, 1.0, 2.0)"
    if isinstance(factors, (str, bytes)) or not isinstance(factors, Sequence):
        raise InputTypeError(f"factors={factors!r} must be a sequence of multiples of the LR, {example}")
    if not factors:
        raise InputError(f"factors=() is empty: give at least one multiple of the LR, {example}")
    if not all(isinstance(f, numbers.Real) and not isinstance(f, bool) and 0 < float(f) < math.inf for f in factors):
        raise InputError(f"factors={tuple(factors)!r}: each must be a positive finite multiple of the LR, {example}")
    lrs = sorted({suggested * float(f) for f in factors})
    if not (lrs[0] > 0 and lrs[-1] * 2 < _FLOAT32_MAX):  # optimizers cast the LR to the parameters' float32
        raise InputError(f"factors={tuple(factors)!r} x lr={suggested:g} leave float32's range: use smaller factors")
    if steps is None:
        n = max(10, base.num_iter // len(factors))
    elif isinstance(steps, bool) or not isinstance(steps, numbers.Integral) or int(steps) < 2:
        raise InputError(f"steps={steps!r} must be an int of at least 2 (training steps per candidate), or None")
    else:
        n = int(steps)
    settings = dataclasses.replace(base, num_iter=n, start_lr=lrs[0], end_lr=lrs[-1] * 2, show_progress=False)
    return lrs, settings


def score(lr: float, losses: Sequence[float], planned: int, stop_reason: str | None) -> Trial:
    """Score one run from its recorded per-step losses (``planned`` steps were asked for)."""
    values = [v for v in losses if math.isfinite(v)]
    if stop_reason is not None or len(values) < planned:
        return Trial(lr, math.inf, 0.0, len(losses), f"unstable: {stop_reason or 'non-finite loss'}")
    k = max(2, round(planned * TAIL))
    tail = values[-k:]
    mean = sum(tail) / len(tail)
    var = sum((v - mean) ** 2 for v in tail) / (len(tail) - 1)
    stderr = math.sqrt(var / len(tail))
    # the first loss is measured before the first update: the same state and batch for every candidate
    problem = f"unstable: the loss ended above where it started ({values[0]:.4g})" if mean >= values[0] else None
    return Trial(lr, mean, stderr, len(losses), problem)


def choose(trials: Sequence[Trial], suggested: float) -> Verification:
    """The LR of the lowest-scoring stable trial (of tied scores, the lowest LR's); a lower LR within one
    standard error of it wins.

    Preferring the lower of two runs that noise cannot tell apart puts the errors on the safe side: a
    too-low LR costs some speed, a too-high one can diverge later in training.

    >>> t = [Trial(1e-3, 0.50, 0.01, 20), Trial(2e-3, 0.49, 0.01, 20), Trial(4e-3, 0.30, 0.01, 20, "unstable")]
    >>> choose(t, 2e-3).lr
    0.001
    """
    stable = sorted((t for t in trials if t.stable), key=lambda t: t.lr)
    if not stable:
        return Verification(None, suggested, tuple(trials), "no candidate trained stably: lower the LR range")
    best = min(stable, key=lambda t: (t.score, t.lr))
    # ascending LR: the first one indistinguishable from the best (best itself always is)
    lr = next(t.lr for t in stable if t.score <= best.score + max(best.stderr, t.stderr))
    return Verification(lr, suggested, tuple(trials))
