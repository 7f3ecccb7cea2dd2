"""torch.distributed glue: ranks in lock-step, the loss averaged over ranks, rank-0 gating of I/O.

Everything here is a no-op when ``torch.distributed`` is not initialised (or has one process), and for a
model that is not wrapped in ``DistributedDataParallel``: such a model trains on its own in each process,
so the range test runs there as in a single process (this is also what makes "run the finder on rank 0
only, on a plain copy of the model" work without a hang).

With a DDP model, :class:`StepSync` keeps every rank at the same step:

* Each step makes **one** all-reduce, of ``[loss, failed_0, ..., failed_{world-1}]``, after every rank's
  forward pass and *before* the backward pass. The backward pass runs DDP's gradient all-reduces, so a rank
  that failed in its forward pass and skipped backward would leave the others blocked there; the check
  before it lets every rank see the failure and stop at the same point. The failing rank re-raises its own
  exception; the others raise a ``RuntimeError`` that names it. Every rank restores its own state.
* The next step's batches are fetched *before* that all-reduce (a prefetch of one step), so an exception in
  a rank's loader is reported in the same all-reduce: a rank that lacked a batch would otherwise skip the
  forward pass, whose DDP pre-forward hook broadcasts buffers (a collective the other ranks would wait in).
  One extra all-reduce checks the first step's batches before the sweep starts.
* The recorded loss is the mean over ranks of each rank's loss, so every rank sees the same curve (bit for
  bit: an all-reduce gives every rank the same sum), applies the same stop rule at the same step and
  returns the same suggestion.
* On CUDA the result of that all-reduce is needed on the host every step, to decide before the backward
  pass whether to go on: one device synchronisation per step. The host waits for the forward pass (and
  the tiny all-reduce) before it queues the backward pass, so the GPU idles for the kernel-launch latency
  once per step; small next to a step of any real model, but not free (not measured here). The loss is
  then on the host already; the sweep still reads it back with its usual one-step lag on CUDA, the same on
  every rank, so the ranks still stop together (one step late, as in a single process).
* With ``val_loader`` the per-rank validation loss is averaged in a second all-reduce per step (with its
  own failure flags); validation runs on the module inside DDP, so it makes no collective of its own.

Not coordinated (they end with the process-group timeout, as in any DDP training): a failure in creating
the loader's iterator at the start of the sweep, in the host-to-device copy of a batch, in the backward
pass or in the optimizer step, a rank that dies outright (the others then get a connection error at the
next all-reduce), and models whose *forward pass* makes collectives (``SyncBatchNorm``) when a rank fails
before one of them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import torch

from ._logging import logger


def is_active() -> bool:
    """True inside an initialised process group of more than one process."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if is_active() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if is_active() else 1


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


_FSDP_FIX = (
    "A range test must snapshot and restore every parameter bit for bit, and it cannot do that for sharded "
    "parameters. Run it before sharding instead: on the plain (unsharded) model in one process, or wrapped "
    "in torch.nn.parallel.DistributedDataParallel on the same ranks and with the same per-rank batch size "
    "(then the suggestion is for the same global batch); apply fully_shard / FSDP afterwards and train with "
    "the suggested LR."
)


def check_supported(model: torch.nn.Module) -> None:
    """Refuse FSDP (``fully_shard``, ``FullyShardedDataParallel``) and DTensor parameters, saying why."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover - torch built without distributed
        return
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch < 2.6
        FSDPModule = ()  # type: ignore[assignment,misc]  # noqa: N806
    for name, module in model.named_modules():
        if isinstance(module, (FullyShardedDataParallel, FSDPModule)):
            fsdp1 = isinstance(module, FullyShardedDataParallel)
            kind = "FullyShardedDataParallel" if fsdp1 else "fully_shard"
            where = f"module {name!r}" if name else "the model itself"
            raise TypeError(f"LRFinder does not support FSDP-sharded models ({kind} on {where}). {_FSDP_FIX}")
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch < 2.4
        return
    for name, p in model.named_parameters():
        if isinstance(p, DTensor):
            raise TypeError(
                f"LRFinder does not support sharded (DTensor) parameters such as {name!r} (FSDP2, tensor "
                "or sequence parallelism). " + _FSDP_FIX
            )


def step_sync(model: torch.nn.Module, device: torch.device) -> StepSync | None:
    """The lock-step driver for a DDP model in a process group of several processes, else ``None``."""
    if not is_active():
        return None
    ddp = find_ddp(model)
    if ddp is None:
        logger.info(
            "torch.distributed is initialised but the model is not wrapped in DistributedDataParallel: "
            "rank %d runs its own range test, with no averaging over ranks (wrap it in DDP for a test at "
            "the global batch size)",
            rank(),
        )
        return None
    # The all-reduce buffer lives where DDP's own gradients do (NCCL needs this rank's GPU, and a bare
    # device="cuda" would mean GPU 0 on every rank).
    param = next(ddp.parameters(), None)
    return StepSync(device if param is None else param.device)


class StepSync:
    """Keeps the ranks of a DDP range test in lock-step (see the module docstring).

    Used by :func:`lr_finder.training.sweep`: :meth:`start` once, then :meth:`step` for every step (and
    :meth:`evaluate` after it with a ``val_loader``). It also stands in for the batch stream, handing out
    the batches it prefetched.
    """

    def __init__(self, device: torch.device) -> None:
        import torch.distributed as dist

        self.world = dist.get_world_size()
        self.rank = dist.get_rank()
        self.device = device
        self._queue: deque[Any] = deque()
        self._stream: Any = None
        self._per_step = 1
        self._left = 0
        self._checked = False
        self._mean: torch.Tensor | None = None

    # -- the batch stream -------------------------------------------------------------------------
    def next(self) -> Any:
        """The next prefetched batch (``train_step`` calls this in place of ``BatchStream.next``)."""
        if not self._queue:
            raise RuntimeError("lr_finder internal error: a step asked for more batches than were prefetched")
        return self._queue.popleft()

    def _prefetch(self) -> Exception | None:
        """Fetch the next step's batches; the exception raised by the loader, if any, is returned."""
        if self._left <= 0:
            return None
        self._left -= 1
        try:
            for _ in range(self._per_step):
                self._queue.append(self._stream.next())
        except Exception as exc:  # reported to every rank by the next all-reduce, then re-raised here
            return exc
        return None

    # -- the all-reduce -----------------------------------------------------------------------------
    def _exchange(self, value: torch.Tensor | None) -> tuple[torch.Tensor, list[int]]:
        """All-reduce ``[value, one-hot failure flag]`` (``value=None``: this rank failed).

        Returns the mean of ``value`` over ranks (a CPU float64 scalar) and the ranks that failed.
        """
        import torch.distributed as dist

        buf = torch.zeros(1 + self.world, dtype=torch.float64, device=self.device)
        if value is None:
            buf[1 + self.rank] = 1.0
        else:
            buf[0] = value.detach().reshape(())
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
        host = buf.cpu()  # the one host synchronisation per step on CUDA
        failed = [r for r in range(self.world) if host[1 + r].item() > 0]
        return host[0] / self.world, failed

    def _others_failed(self, failed: list[int], during: str) -> RuntimeError:
        who = f"rank {failed[0]}" if len(failed) == 1 else f"ranks {failed}"
        return RuntimeError(
            f"LR range test stopped on every rank: {who} raised an exception during {during} (its own "
            f"error is raised on that rank; see its log). This rank ({self.rank}) stopped at the same step "
            "and restored its model and optimizer."
        )

    def _report_own_failure(self) -> None:
        """Tell the other ranks that this one failed (best effort: its own exception matters more)."""
        try:
            self._exchange(None)
        except Exception as comm:  # pragma: no cover - the process group itself is broken
            logger.error("could not tell the other ranks about this rank's failure: %s", comm)

    # -- the sweep ------------------------------------------------------------------------------------
    def start(self, stream: Any, num_steps: int, per_step: int) -> StepSync:
        """Prefetch and check the first step's batches on every rank; returns the stream to train from."""
        self._stream = stream
        self._per_step = per_step
        self._left = num_steps
        self._queue.clear()
        error = self._prefetch()
        _, failed = self._exchange(None if error is not None else torch.zeros((), device=self.device))
        if error is not None:
            raise error
        if failed:
            raise self._others_failed(failed, "the first batches of its loader")
        return self

    def step(self, run: Callable[[Callable[[torch.Tensor], None]], Any]) -> torch.Tensor:
        """Run one training step as ``run(before_backward)``; returns the loss averaged over ranks.

        ``run`` must call ``before_backward(mean_loss_of_the_step)`` after the last micro-batch's forward
        pass and before its backward pass (``train_step`` does).
        """
        self._checked = False
        self._mean = None
        try:
            run(self._before_backward)
        except Exception:
            if not self._checked:  # failed before the all-reduce (loader, forward, loss): say so, then raise
                self._report_own_failure()
            raise
        if not self._checked or self._mean is None:
            raise RuntimeError("lr_finder internal error: the training step did not call before_backward")
        return self._mean

    def _before_backward(self, loss: torch.Tensor) -> None:
        error = self._prefetch()  # the next step's batches, so that a loader error is seen in this all-reduce
        self._checked = True
        mean, failed = self._exchange(None if error is not None else loss)
        if error is not None:
            raise error
        if failed:
            raise self._others_failed(failed, "its forward pass, its loss or its loader")
        self._mean = mean

    def evaluate(self, run: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Run the validation pass ``run()`` on every rank; returns its loss averaged over ranks."""
        try:
            value = run()
        except Exception:
            self._report_own_failure()
            raise
        mean, failed = self._exchange(value)
        if failed:
            raise self._others_failed(failed, "validation")
        return mean

    @staticmethod
    def local_model(model: torch.nn.Module) -> torch.nn.Module:
        """The module inside DDP, for validation: evaluating through DDP would broadcast buffers."""
        ddp = find_ddp(model)
        return model if ddp is None else ddp.module
