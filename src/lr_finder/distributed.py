"""torch.distributed glue: which process writes, and ranks that train one model in lock-step.

Without an initialised process group of several processes, or for a model neither wrapped in
``DistributedDataParallel`` nor sharded (``fully_shard``, ``DTensor`` parameters), each process runs its own
test as a single process would (so "the finder on rank 0 only, on a plain copy" works without a hang).
With a DDP or sharded model, :class:`LockstepSteps` keeps every rank at the same step:

* One all-reduce per step, of ``[loss, failed_0, ..., failed_{world-1}]``, after every rank's forward pass
  and *before* the backward pass, whose collectives (DDP's gradient all-reduces, FSDP's all-gathers) would
  leave the others blocked if one rank had failed: every rank sees the failure and stops at the same point.
  The failing rank re-raises its own exception, the others a ``RuntimeError`` naming it; each restores its
  own state. A sharded model's accumulated micro-batches all make collectives, so there the check runs
  before each micro-batch's backward (DDP's run under ``no_sync``).
* The next step's batches are fetched before that all-reduce, so a loader's exception is reported in it;
  one extra all-reduce checks the snapshot and the first batches.
* The recorded loss is the mean over ranks: every rank records the same curve, stops at the same step and
  suggests the same LR. With ``val_loader`` the validation loss is averaged in a second all-reduce (under
  DDP on the module inside it, without collectives; a sharded model's validation makes its own).

Each rank snapshots its own shards (a ``DTensor``'s local tensor), with no collective. Not coordinated (they
end with the process-group timeout, as in any distributed training): a failure in a batch's copy to the
device, in the backward pass or the optimizer step, a rank that dies, a failure inside a forward pass that
makes collectives (``SyncBatchNorm``, sharded models) before the last of them, and a failure during a
sharded model's validation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import torch

from . import sharding
from ._logging import logger
from .errors import InputError
from .settings import RangeTestSettings
from .training import LocalSteps, Trainer


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


def find_ddp(model: torch.nn.Module) -> torch.nn.parallel.DistributedDataParallel | None:
    """The ``DistributedDataParallel`` wrapper of ``model`` (itself, or inside ``torch.compile``), if any."""
    from torch.nn.parallel import DistributedDataParallel

    for module in model.modules():
        if isinstance(module, DistributedDataParallel):
            return module
    return None


def steps_for(trainer: Trainer) -> LocalSteps:
    """The step runner for ``trainer``: in lock-step across processes for a DDP or sharded model, else local."""
    model = trainer.model
    if not is_active():
        return LocalSteps(trainer)
    ddp = find_ddp(model)
    owner = ddp if ddp is not None else model if sharding.is_sharded(model) else None
    if owner is None:
        logger.info(
            "torch.distributed is initialised but the model is neither wrapped in DistributedDataParallel nor "
            "sharded with fully_shard: rank %d runs its own range test, with no averaging over ranks (wrap "
            "it in DDP for a test at the global batch size)",
            rank(),
        )
        return LocalSteps(trainer)
    # The all-reduce buffer lives where the model's own collectives do (NCCL needs this rank's GPU, and a
    # bare device="cuda" would mean GPU 0 on every rank); a sharded parameter's device is its shard's.
    param = next(owner.parameters(), None)
    where = trainer.device if param is None else param.device
    import torch.distributed as dist

    backend = str(dist.get_backend())
    if where.type == "cpu" and "nccl" in backend and "gloo" not in backend and torch.cuda.is_available():
        where = torch.device("cuda", torch.cuda.current_device())  # shards offloaded to the CPU; NCCL needs a GPU
    return LockstepSteps(trainer, where, every_micro_batch=ddp is None)


class LockstepSteps(LocalSteps):
    """Training steps of one model across ranks, in lock-step (see the module docstring)."""

    def __init__(self, trainer: Trainer, device: torch.device, every_micro_batch: bool = False) -> None:
        import torch.distributed as dist

        super().__init__(trainer)
        self.world = dist.get_world_size()
        self.rank = dist.get_rank()
        self.device = device
        # Under fully_shard every backward pass makes collectives, the accumulated micro-batches' too (DDP
        # skips them under no_sync): the ranks then check for failures before each micro-batch's backward.
        self.every_micro_batch = every_micro_batch
        self._batches: deque[Any] = deque()
        self._steps_left = 0
        ddp = find_ddp(trainer.model)
        self._eval_model = trainer.model if ddp is None else ddp.module  # through DDP, eval would broadcast

    def start(self, loader: Iterable[Any], settings: RangeTestSettings) -> None:
        """Start the stream and check the first step's batches on every rank (one all-reduce)."""
        try:
            super().start(loader, settings)
        except Exception:
            self.abort()
            raise
        self._batches.clear()
        self._steps_left = settings.num_iter
        error = self._prefetch()
        self._exchange_or_raise(torch.zeros(()), error, "its snapshot or the first batches of its loader")

    def _prefetch(self) -> Exception | None:
        """Fetch the next step's batches; the exception raised by the loader, if any, is returned."""
        if self._steps_left <= 0:
            return None
        self._steps_left -= 1
        try:
            for _ in range(self.trainer.accumulation_steps):
                self._batches.append(super()._next())
        except Exception as exc:  # reported to every rank by the next all-reduce, then re-raised here
            return exc
        return None

    def _next(self) -> Any:
        return self._batches.popleft()

    def step(self) -> torch.Tensor:
        """One optimizer step on every rank; returns the step's loss averaged over ranks."""
        t, n = self.trainer, self.trainer.accumulation_steps
        t.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=t.device)
        mean = total
        for j in range(n):
            last = j == n - 1
            with t.no_sync(last):
                try:
                    share = t.forward(self._next())
                    if share is None:  # every rank must take part in the backward pass's collectives
                        raise InputError("loss_fn returned None (skip this batch) in a test whose ranks train in "
                                         "lock-step: return a loss for every batch, as distributed training needs")
                    total = total + share.detach().float()
                    error = self._prefetch() if last else None
                except Exception:  # before this micro-batch's all-reduce: the others learn of it there
                    self.abort()
                    raise
                if last or self.every_micro_batch:
                    mean = self._exchange_or_raise(total, error, "its forward pass, its loss or its loader")
                t.backward(share)
        t.optimizer_step()
        return mean

    def evaluate(self, loader: Iterable[Any]) -> torch.Tensor:
        """The validation loss over ``loader`` on every rank, averaged over ranks."""
        try:
            value = self.trainer.evaluate(loader, self._eval_model)
        except Exception:
            self.abort()
            raise
        return self._exchange_or_raise(value, None, "validation")

    def abort(self) -> None:
        """Take part in the next all-reduce as a failure, so the other ranks raise instead of waiting (best
        effort: this rank's own exception matters more)."""
        try:
            self._exchange(None)
        except Exception as comm:  # pragma: no cover - the process group itself is broken
            logger.error("could not tell the other ranks about this rank's failure: %s", comm)

    def _exchange(self, value: torch.Tensor | None) -> tuple[torch.Tensor, list[int]]:
        """All-reduce ``[value, one-hot failure flag]`` (``value=None``: this rank failed); returns the mean of
        ``value`` over ranks (a CPU float64 scalar) and the ranks that failed."""
        import torch.distributed as dist

        buf = torch.zeros(1 + self.world, dtype=torch.float64, device=self.device)
        if value is None:
            buf[1 + self.rank] = 1.0
        else:
            buf[0] = value.detach().reshape(())
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        host = buf.cpu()
        failed = [r for r in range(self.world) if host[1 + r].item() > 0]
        return host[0] / self.world, failed

    def _exchange_or_raise(self, value: torch.Tensor, error: Exception | None, during: str) -> torch.Tensor:
        mean, failed = self._exchange(None if error is not None else value)
        if error is not None:
            raise error
        if failed:
            who = f"rank {failed[0]}" if len(failed) == 1 else f"ranks {failed}"
            raise RuntimeError(
                f"LR range test stopped on every rank: {who} raised an exception during {during} (its own "
                f"error is raised on that rank; see its log). This rank ({self.rank}) stopped at the same step "
                "and restored its model and optimizer."
            )
        return mean
