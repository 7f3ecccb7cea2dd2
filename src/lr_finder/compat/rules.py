"""torch-lr-finder 0.2.2's sweep and stop rule, with its expressions in its order: the same numbers, bit for bit.

The one difference: for a best loss <= 0 the stop threshold is :func:`lr_finder.monitor.divergence_threshold`,
because ``loss > diverge_th * best`` stops at once there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..monitor import divergence_threshold


def group_sweep(
    base_lrs: Sequence[float], end_lr: float, num_iter: int, step_mode: str
) -> Callable[[int], tuple[float, list[float]]]:
    """``step -> (first group's LR, one LR per group)``: every group from its own base LR to ``end_lr``.

    Unlike :func:`lr_finder.schedule.group_schedule` the groups' ratios are not kept: all groups end at
    ``end_lr`` (up to rounding, as in torch-lr-finder).

    >>> at = group_sweep([1e-3, 1e-5], 0.1, 3, "exp")
    >>> [round(v, 12) for v in at(1)[1]], at(2)[1]
    ([0.01, 0.001], [0.1, 0.1])
    """

    def at(step: int) -> tuple[float, list[float]]:
        r = step / (num_iter - 1)
        if step_mode == "exp":
            lrs = [base * (end_lr / base) ** r for base in base_lrs]
        else:
            lrs = [base + r * (end_lr - base) for base in base_lrs]
        return lrs[0], lrs

    return at


@dataclass
class EmaDivergence:
    """torch-lr-finder's smoothed loss and stop rule, fed the raw losses as they are recorded.

    An EMA started at the first raw loss, without bias correction; the sweep stops after the first step whose
    smoothed loss exceeds ``diverge_th`` times the best so far. As ``stop`` of :meth:`lr_finder.LRFinder.run`,
    ``smoothed`` and ``best`` are then torch-lr-finder's curve and best loss.

    >>> rule = EmaDivergence(smooth_f=0.5, diverge_th=2.0)
    >>> rule([1.0]), rule([1.0, 3.0]), rule([1.0, 3.0, 9.0]) is not None, rule.smoothed
    (None, None, True, [1.0, 2.0, 5.5])
    """

    smooth_f: float
    diverge_th: float
    smoothed: list[float] = field(default_factory=list)
    best: float = math.inf

    def __call__(self, raw_losses: Sequence[float]) -> str | None:
        for raw in raw_losses[len(self.smoothed) :]:
            if self.smoothed and self.smooth_f > 0:
                raw = self.smooth_f * raw + (1 - self.smooth_f) * self.smoothed[-1]
            self.smoothed.append(raw)
            self.best = min(self.best, raw)
        if not self.smoothed:
            return None
        last = self.smoothed[-1]
        threshold = divergence_threshold(self.best, self.smoothed[0], self.diverge_th)
        if last > threshold:
            return (
                f"diverged: smoothed loss {last:.4g} above {threshold:.4g} ({self.diverge_th:g} x the best "
                f"smoothed loss {self.best:.4g}) at step {len(self.smoothed) - 1}"
            )
        return None
