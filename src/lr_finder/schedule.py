"""The LR sweep as pure functions of the step index (no hidden counters)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .errors import InputError

STEP_MODES = ("exp", "linear")


def lr_at(step: int, start_lr: float, end_lr: float, num_iter: int, step_mode: str = "exp") -> float:
    """The learning rate of sweep step ``step`` (0-based): ``start_lr`` at 0, ``end_lr`` at ``num_iter - 1``.

    >>> lr_at(0, 1e-7, 1.0, 8), lr_at(7, 1e-7, 1.0, 8)
    (1e-07, 1.0)
    """
    if step_mode not in STEP_MODES:
        raise InputError(f"{step_mode=} is not one of {STEP_MODES}")
    if step <= 0:
        return float(start_lr)  # the ends exactly, not up to rounding
    if step >= num_iter - 1:
        return float(end_lr)
    frac = step / (num_iter - 1)
    if step_mode == "exp":
        return float(start_lr * (end_lr / start_lr) ** frac)
    return float(start_lr + frac * (end_lr - start_lr))


def lr_schedule(start_lr: float, end_lr: float, num_iter: int, step_mode: str = "exp") -> np.ndarray:
    """Every learning rate of a sweep, to preview it without training.

    >>> lr_schedule(1e-3, 1e-1, 3).round(6).tolist()
    [0.001, 0.01, 0.1]
    """
    return np.array([lr_at(i, start_lr, end_lr, num_iter, step_mode) for i in range(num_iter)])


def group_ratios(base_lrs: Sequence[float]) -> list[float]:
    """Each param group's LR relative to the reference group (the first with a positive LR).

    The sweep sets ``group_lr = swept_lr * ratio`` so discriminative LRs keep their proportions;
    a group at LR 0 (frozen on purpose) stays at 0. When no group has a positive LR, all follow the sweep.
    """
    ref = next((lr for lr in base_lrs if lr > 0), None)
    return [1.0] * len(base_lrs) if ref is None else [lr / ref for lr in base_lrs]


def group_schedule(
    lr: Callable[[int], float], ratios: Sequence[float]
) -> Callable[[int], tuple[float, list[float]]]:
    """The sweep for every param group: ``step -> (swept LR, one LR per group)``, each group at its ratio.

    >>> group_schedule(lambda step: 0.1 * 10**step, [1.0, 0.5])(1)
    (1.0, [1.0, 0.5])
    """

    def at(step: int) -> tuple[float, list[float]]:
        value = lr(step)
        return value, [value * ratio for ratio in ratios]

    return at
