"""The online part of a range test: EMA smoothing of the loss and the stop rule, as explicit state, and
the :class:`Recorder` that keeps the curve as the sweep goes.

``init`` / ``update`` in the style of optax: the state belongs to one sweep, so a finder started on a
model that has already trained starts from a clean slate (no stale best loss, no step counter carried over).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .history import History

if TYPE_CHECKING:
    from .settings import RangeTestSettings

#: Consecutive raw losses above the divergence threshold that count as a sustained spike.
SPIKE_PATIENCE = 3


@dataclass(frozen=True)
class MonitorState:
    """State of the smoothing and stop rule after ``count`` recorded steps."""

    count: int = 0
    ema: float = 0.0  # biased EMA accumulator; ``smoothed`` is its bias-corrected value
    smoothed: float = math.nan
    best: float = math.inf  # lowest smoothed loss so far
    first: float = math.nan  # first smoothed loss (the scale for losses <= 0)
    over: int = 0  # consecutive raw losses above the threshold
    stop_reason: str | None = None


def init() -> MonitorState:
    return MonitorState()


def divergence_threshold(best: float, first: float, diverge_th: float) -> float:
    """The loss above which the sweep counts as diverged.

    For a positive best loss this is ``diverge_th * best``. For a best loss <= 0
    (likelihood losses) a multiple of it means nothing, so the rise allowed is ``(diverge_th - 1)`` times
    the scale of the curve, ``max(|best|, first - best)``.
    """
    if best > 0:
        return diverge_th * best
    scale = max(abs(best), first - best)
    if not scale > 0:
        scale = 1.0
    return best + (diverge_th - 1.0) * scale


def update(
    state: MonitorState,
    raw_loss: float,
    *,
    smooth_f: float,
    diverge_th: float,
    adaptive_stop: bool,
) -> MonitorState:
    """Record one raw loss; returns the new state, with ``stop_reason`` set when the sweep must stop.

    ``smooth_f`` is the weight of the newest loss in the EMA (0 disables smoothing). The EMA is
    bias-corrected with this sweep's own step count, so the first smoothed value equals the first loss.
    Stops: a non-finite loss at once; the smoothed loss above the divergence threshold; and with
    ``adaptive_stop`` a sudden sustained spike, ``SPIKE_PATIENCE`` raw losses in a row above the threshold
    (the EMA lags behind an explosion by about ``1 / smooth_f`` steps; the raw losses do not).
    """
    if not math.isfinite(raw_loss):
        return replace(state, stop_reason=f"non-finite loss ({raw_loss}) at step {state.count}")
    count = state.count + 1
    if smooth_f > 0:
        ema = (1.0 - smooth_f) * state.ema + smooth_f * raw_loss
        correction = -math.expm1(count * math.log1p(-smooth_f))  # 1 - (1 - smooth_f) ** count, exact for tiny smooth_f
        smoothed = ema / correction if correction > 0 else raw_loss
    else:
        ema = raw_loss
        smoothed = raw_loss
    first = smoothed if count == 1 else state.first
    best = min(state.best, smoothed)
    threshold = divergence_threshold(best, first, diverge_th)
    over = state.over + 1 if raw_loss > threshold else 0
    reason = None
    if smoothed > threshold:
        reason = (
            f"diverged: smoothed loss {smoothed:.4g} above the threshold {threshold:.4g} "
            f"({diverge_th=:g}, best smoothed loss {best:.4g}) at step {count - 1}"
        )
    elif adaptive_stop and over >= SPIKE_PATIENCE:
        reason = (
            f"loss spike: {over} raw losses in a row above the divergence threshold {threshold:.4g} "
            f"(best smoothed loss {best:.4g}) at step {count - 1}"
        )
    return MonitorState(count, ema, smoothed, best, first, over, reason)


#: ``stop(raw_losses) -> reason or None``: called after each recorded (finite) loss with every raw loss
#: recorded so far (read-only); a reason ends the sweep after that step, which stays recorded.
StopRule = Callable[[Sequence[float]], "str | None"]


@dataclass
class Recorder:
    """The curve of a sweep in progress, kept when the sweep ends by an exception; :meth:`history` freezes it."""

    lr: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    raw_loss: list[float] = field(default_factory=list)
    stop_reason: str | None = None
    state: MonitorState = field(default_factory=init)
    #: the first loss that was not finite, with its LR (it stops the sweep and is not recorded)
    non_finite: tuple[float, float] | None = None
    #: replaces the divergence and spike rules of :func:`update` when given (another library's stop rule,
    #: say); a non-finite loss still stops the sweep at once
    stop: StopRule | None = None

    def add(self, lr: float, raw: float, settings: RangeTestSettings) -> bool:
        """Record one step's loss; returns True when the sweep must stop."""
        self.state = update(
            self.state, raw, smooth_f=settings.smooth_f, diverge_th=settings.diverge_th,
            adaptive_stop=settings.adaptive_stop,
        )
        self.stop_reason = self.state.stop_reason
        if self.state.count > len(self.raw_loss):  # a finite loss was recorded
            self.lr.append(lr)
            self.raw_loss.append(raw)
            self.loss.append(self.state.smoothed)
            if self.stop is not None:
                self.stop_reason = self.stop(self.raw_loss)
        elif self.non_finite is None:
            self.non_finite = (lr, raw)
        return self.stop_reason is not None

    def history(self, settings: dict[str, Any]) -> History:
        return History(tuple(self.lr), tuple(self.loss), tuple(self.raw_loss), self.stop_reason, settings)
