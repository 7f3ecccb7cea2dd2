"""Put a suggested learning rate into an optimizer, or a scheduler's per-group values, keeping the param
groups' ratios: the range test sweeps the *base* LR (the first group's with a positive LR) and moves every
other group with it, so the suggestion is a base LR too.
"""

from __future__ import annotations

import warnings

import torch

from .errors import InputError
from .schedule import group_ratios
from .settings import check_lr
from .training import set_lr


def group_lrs(optimizer: torch.optim.Optimizer, lr: float) -> list[float]:
    """One learning rate per param group for the base LR ``lr``, keeping the groups' current ratios.

    The first group with a positive LR gets ``lr``; every other group gets ``lr`` times its current ratio
    to that group (a group at LR 0 stays at 0; when no group has a positive LR, all get ``lr``). Nothing
    is changed. Use it where a scheduler wants per-group values:

    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    >>> opt = torch.optim.SGD([{"params": model[0].parameters(), "lr": 1e-3},
    ...                        {"params": model[1].parameters(), "lr": 1e-2}])
    >>> [round(v, 6) for v in group_lrs(opt, 0.05)]
    [0.05, 0.5]
    >>> sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=group_lrs(opt, 0.05), total_steps=100)
    """
    if lr is None:
        raise InputError(
            "lr=None: the range test suggested no learning rate (see finder.suggestion().reason); "
            "pick one from the plot, or rerun the test with a wider range or more steps"
        )
    value = check_lr(lr)
    return [value * ratio for ratio in group_ratios([float(g["lr"]) for g in optimizer.param_groups])]


def apply_suggested_lr(optimizer: torch.optim.Optimizer, lr: float) -> list[float]:
    """Set the optimizer's LRs from the suggested base LR ``lr`` as :func:`group_lrs` does; returns them.

    A tensor LR is filled in place. Apply it *before* creating an LR scheduler: a scheduler already
    attached keeps its own base LRs (``initial_lr``) and would undo this at its next step (a warning).

    >>> model = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> apply_suggested_lr(opt, 0.03)
    [0.03]
    >>> opt.param_groups[0]["lr"]
    0.03
    """
    lrs = group_lrs(optimizer, lr)
    if any("initial_lr" in g for g in optimizer.param_groups):
        warnings.warn(
            "the optimizer already has an LR scheduler (its param groups have 'initial_lr'): the scheduler "
            "keeps its own base LRs and may overwrite these; create the scheduler after apply_suggested_lr, "
            "or pass group_lrs(optimizer, lr) to it (e.g. OneCycleLR(optimizer, max_lr=group_lrs(...)))",
            stacklevel=2,
        )
    set_lr(optimizer, lrs)  # the sweep's own setter: tensor LRs filled in place
    return lrs
