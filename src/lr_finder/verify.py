"""The pure part of :meth:`lr_finder.LRFinder.verify`: scoring a short constant-LR run, choosing among them.

A range test sees each LR for one step; an instability that grows over tens of steps (deep plain nets,
recurrent nets, a constant LR) does not show in it, so verification trains a few short runs around the pick.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: The candidates, as multiples of the suggestion: the risky side is above it, so more room below.
DEFAULT_FACTORS = (0.25, 0.5, 1.0, 2.0)
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
