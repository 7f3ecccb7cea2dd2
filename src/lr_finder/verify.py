"""The pure part of :meth:`lr_finder.LRFinder.verify`: scoring a short constant-LR run, choosing among them.

A range test sees each LR for one step; an instability that grows over tens of steps (deep plain nets,
recurrent nets, a constant LR) does not show in it, so verification trains a few short runs around the pick.
"""

from __future__ import annotations

import dataclasses
import html
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError, InputTypeError
from .monitor import SPIKE_PATIENCE, StopRule, divergence_threshold
from .settings import RangeTestSettings
from .smoothing import noise_level

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

    def _repr_html_(self) -> str:
        """A table for Jupyter: the verified and the suggested LR, then one row per trial (all escaped)."""
        head = "none" if self.lr is None else f"{self.lr:.3e}"
        caption = f"lr_finder Verification: LR {head} (suggested {self.suggested:.3e}, {self.extra_steps} extra steps)"
        rows = "".join(
            f"<tr><td>{t.lr:.3e}{' &larr;' if t.lr == self.lr else ''}</td><td>{t.score:.4g}</td><td>{t.steps}</td>"
            f"<td style='text-align:left'>{html.escape(t.problem or 'stable')}</td></tr>"
            for t in self.trials
        )
        reason = f"<p>{html.escape(self.reason)}</p>" if self.reason else ""
        return (f"<table><caption>{caption}</caption><tr><th>LR</th><th>score (tail mean loss)</th><th>steps</th>"
                f"<th>status</th></tr>{rows}</table>{reason}")


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


def trial_stop(diverge_th: float) -> StopRule:
    """The stop rule of a constant-LR run, on its own terms and whatever the range test's smoothing: it has
    diverged when its last losses (their median: one noisy batch is not enough) are ``diverge_th`` times
    where it started (for losses <= 0, see :func:`lr_finder.monitor.divergence_threshold`).

    A sweep's rule (the smoothed loss against its best) misjudges such a run: once its loss is low, one
    noisy batch is many times the best.
    """

    def stop(raw: Sequence[float]) -> str | None:
        if len(raw) < SPIKE_PATIENCE:
            return None
        threshold = divergence_threshold(raw[0], raw[0], diverge_th)
        recent = sorted(raw[-SPIKE_PATIENCE:])[SPIKE_PATIENCE // 2]
        if recent <= threshold:
            return None
        return (f"diverged: the loss rose to {recent:.4g}, above {threshold:.4g} ({diverge_th=:g}, the run started "
                f"at {raw[0]:.4g}) at step {len(raw) - 1}")

    return stop


def score(lr: float, losses: Sequence[float], planned: int, stop_reason: str | None, start_noise: float = 0.0) -> (
    Trial
):
    """Score one run from its recorded per-step losses (``planned`` steps were asked for).

    The first loss is measured before the first update: the same state and batch for every candidate. The
    run is unfit when the mean of its last quarter is above that loss by more than twice ``start_noise``, a
    batch's noise at that state (see :func:`start_noise`): a flat run is not a rising one.
    """
    values = [v for v in losses if math.isfinite(v)]
    if stop_reason is not None or len(values) < planned:
        return Trial(lr, math.inf, 0.0, len(losses), f"unstable: {stop_reason or 'non-finite loss'}")
    k = max(2, round(planned * TAIL))
    tail = values[-k:]
    mean = sum(tail) / k
    stderr = math.sqrt(sum((v - mean) ** 2 for v in tail) / (k - 1) / k)
    risen = mean > values[0] + 2.0 * start_noise
    problem = f"unstable: the loss ended above where it started ({mean:.4g} > {values[0]:.4g})" if risen else None
    return Trial(lr, mean, stderr, len(losses), problem)


def start_noise(raw_losses: Sequence[float]) -> float:
    """A batch's loss noise at the model's starting state, from the range test's first points (at LRs too
    small to move the model): :func:`lr_finder.smoothing.noise_level` of its first tenth (at least 5)."""
    head = [v for v in raw_losses[: max(5, len(raw_losses) // 10)] if math.isfinite(v)]
    return noise_level(np.asarray(head)) if len(head) >= 3 else 0.0


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
