"""torch.distributed glue: loss averaging across ranks and rank-0 gating. A no-op when not initialised."""

from __future__ import annotations

from collections.abc import Callable

import torch


def is_active() -> bool:
    """True inside an initialised process group of more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if is_active() else 0


def is_main() -> bool:
    """Whether this process writes files and shows the progress bar (rank 0, or the only process)."""
    return rank() == 0


def mean_reducer() -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function averaging a per-step loss over all ranks (one all-reduce), or ``None`` when single-process."""
    if not is_active():
        return None
    import torch.distributed as dist

    world = dist.get_world_size()

    def reduce(t: torch.Tensor) -> torch.Tensor:
        out = t.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out / world

    return reduce
