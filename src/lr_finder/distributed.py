"""torch.distributed glue: ranks in lock-step, the loss averaged over ranks, rank-0 gating of I/O.

Everything here is a no-op when ``torch.distributed`` is not initialised (or has one process), and for a
model that is neither wrapped in ``DistributedDataParallel`` nor sharded (``fully_shard``, or ``DTensor``
parameters from tensor parallelism): such a model trains on its own in each process, so the range test
runs there as in a single process (this is also what makes "run the finder on rank 0 only, on a plain copy
of the model" work without a hang).

With a DDP or sharded model, :class:`StepSync` keeps every rank at the same step:

* Each step makes **one** all-reduce, of ``[loss, failed_0, ..., failed_{world-1}]``, after every rank's
  forward pass and *before* the backward pass. The backward pass runs the model's own collectives (DDP's
  gradient all-reduces, FSDP's all-gathers and reduce-scatters), so a rank that failed in its forward pass
  and skipped backward would leave the others blocked there; the check before it lets every rank see the
  failure and stop at the same point. The failing rank re-raises its own exception; the others raise a
  ``RuntimeError`` that names it. Every rank restores its own state.
* With gradient accumulation, DDP's earlier micro-batches run under ``no_sync`` (no collective), but a
  sharded model's backward passes all make collectives: there the same check runs before *each*
  micro-batch's backward pass (one all-reduce per micro-batch).
* The next step's batches are fetched *before* that all-reduce (a prefetch of one step), so an exception in
  a rank's loader is reported in the same all-reduce: a rank that lacked a batch would otherwise skip the
  forward pass, whose collectives (DDP's buffer broadcast, FSDP's all-gathers) the other ranks would wait
  in. One extra all-reduce checks the first step's batches before the sweep starts.
* The recorded loss is the mean over ranks of each rank's loss, so every rank sees the same curve (bit for
  bit: an all-reduce gives every rank the same sum), applies the same stop rule at the same step and
  returns the same suggestion. (Tensor-parallel ranks that share a batch have the same loss, so the mean
  is over the data-parallel replicas.)
* On CUDA the result of that all-reduce is needed on the host every step, to decide before the backward
  pass whether to go on: one device synchronisation per step. The host waits for the forward pass (and
  the tiny all-reduce) before it queues the backward pass, so the GPU idles for the kernel-launch latency
  once per step; small next to a step of any real model, but not free (not measured here). The loss is
  then on the host already; the sweep still reads it back with its usual one-step lag on CUDA, the same on
  every rank, so the ranks still stop together (one step late, as in a single process).
* With ``val_loader`` the per-rank validation loss is averaged in a second all-reduce per step (with its
  own failure flags). Under DDP validation runs on the module inside DDP, with no collective of its own; a
  sharded model can only run as a whole, so its validation forward passes make collectives too.

A sharded model is snapshot rank by rank: each rank saves and restores its own shards (a ``DTensor``'s
local tensor, in place, see :mod:`lr_finder.state`), never the whole model, and no collective is made for
it. :func:`reset_sharded` puts ``fully_shard`` modules back in their resting (sharded) state before the
snapshot and before the restore.

Not coordinated (they end with the process-group timeout, as in any distributed training): a failure in
creating the loader's iterator at the start of the sweep, in the host-to-device copy of a batch, in the
backward pass or in the optimizer step, a rank that dies outright (the others then get a connection error
at the next all-reduce), a failure *inside* the forward pass of a model whose forward pass makes
collectives (``SyncBatchNorm``, and every sharded model: FSDP's all-gathers, tensor parallelism's
reductions) before the last of them, and a failure during a sharded model's validation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import torch

from ._logging import logger
from .errors import InputTypeError


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


def _fsdp2_modules(model: torch.nn.Module) -> list[tuple[str, Any]]:
    """The modules ``fully_shard`` (FSDP2) was applied to, with their names, outermost first."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch < 2.6 or built without distributed
        return []
    return [(name, m) for name, m in model.named_modules() if isinstance(m, FSDPModule)]


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a ``DTensor`` (a ``fully_shard`` or tensor-parallel parameter, its grad or state)."""
    import sys

    module = sys.modules.get("torch.distributed.tensor")  # a DTensor exists only once this was imported
    return module is not None and isinstance(t, module.DTensor)


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether ``model`` has ``fully_shard`` modules or ``DTensor`` parameters (tensor parallelism)."""
    if _fsdp2_modules(model):
        return True
    return any(is_dtensor(p) for p in model.parameters())


def check_supported(model: torch.nn.Module) -> None:
    """Refuse what the range test cannot snapshot or drive in lock-step, saying what is supported.

    Refused: ``FullyShardedDataParallel`` (FSDP1: its flat parameters are swapped between sharded and
    unsharded views, with no public way to put them back after a step that failed half-way).
    """
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover - torch built without distributed
        return
    for name, module in model.named_modules():
        if isinstance(module, FullyShardedDataParallel):
            where = f"module {name!r}" if name else "the model itself"
            raise InputTypeError(
                f"FullyShardedDataParallel (FSDP1) on {where} is not supported: shard with "
                "torch.distributed.fsdp.fully_shard (FSDP2) instead; supported are DistributedDataParallel, "
                "fully_shard and DTensor (tensor-parallel) models"
            )


def policy_dtype(model: torch.nn.Module) -> torch.dtype | None:
    """The compute dtype set by a ``fully_shard`` ``MixedPrecisionPolicy`` of ``model`` (its ``param_dtype``).

    Where one is set, it decides the precision of the range test, as it will of training: the finder's own
    autocast is then off (a second cast on top would change what the test measures), and only a GradScaler
    passed as ``scaler`` is used (for an fp16 policy).
    """
    for _, module in _fsdp2_modules(model):
        policy = getattr(module._get_fsdp_state(), "_mp_policy", None)  # no public accessor in torch 2.13
        dtype = getattr(policy, "param_dtype", None)
        if dtype is not None:
            return dtype
    return None


def reset_sharded(model: torch.nn.Module) -> None:
    """Put every ``fully_shard`` module of ``model`` back in its resting state: sharded, between steps.

    After a forward pass with no backward (validation under ``no_grad``, or a step stopped by an exception
    before its backward pass), the root module keeps its *unsharded* parameters registered, and the next
    forward pass would reuse them instead of all-gathering the shards. The snapshot must see the sharded
    parameters (a rank's own shards, never the whole model), and a restore writes into the shards, so this
    runs before both. It makes no collective: FSDP only waits for its own pending work and frees memory.
    """
    fsdp = _fsdp2_modules(model)
    inner = {id(m) for _, outer in fsdp for m in outer.modules() if m is not outer}
    for _, module in fsdp:
        if id(module) in inner:
            continue  # reset through its outermost fully_shard module (the root FSDP requires)
        if getattr(module._get_fsdp_state(), "_is_root", None) is None:
            continue  # never run forward: still sharded as fully_shard left it (and FSDP not yet set up)
        reset = getattr(module, "reset_iter_state", None)
        if reset is not None:
            reset()
        else:  # pragma: no cover - torch before reset_iter_state: reshard what can be resharded
            for _, m in fsdp:
                m.reshard()


def step_sync(model: torch.nn.Module, device: torch.device) -> StepSync | None:
    """The lock-step driver for a DDP or ``fully_shard`` model across several processes, else ``None``."""
    if not is_active():
        return None
    ddp = find_ddp(model)
    owner = ddp if ddp is not None else model if is_sharded(model) else None
    if owner is None:
        logger.info(
            "torch.distributed is initialised but the model is neither wrapped in DistributedDataParallel nor "
            "sharded with fully_shard: rank %d runs its own range test, with no averaging over ranks (wrap "
            "it in DDP for a test at the global batch size)",
            rank(),
        )
        return None
    # The all-reduce buffer lives where the model's own collectives do (NCCL needs this rank's GPU, and a
    # bare device="cuda" would mean GPU 0 on every rank); a sharded parameter's device is its shard's.
    param = next(owner.parameters(), None)
    where = device if param is None else param.device
    import torch.distributed as dist

    backend = str(dist.get_backend())
    if where.type == "cpu" and "nccl" in backend and "gloo" not in backend and torch.cuda.is_available():
        where = torch.device("cuda", torch.cuda.current_device())  # shards offloaded to the CPU; NCCL needs a GPU
    return StepSync(where, every_micro_batch=ddp is None)


class StepSync:
    """Keeps the ranks of a DDP range test in lock-step (see the module docstring).

    Used by :func:`lr_finder.training.sweep`: :meth:`start` once, then :meth:`step` for every step (and
    :meth:`evaluate` after it with a ``val_loader``). It also stands in for the batch stream, handing out
    the batches it prefetched.
    """

    def __init__(self, device: torch.device, every_micro_batch: bool = False) -> None:
        import torch.distributed as dist

        self.world = dist.get_world_size()
        self.rank = dist.get_rank()
        self.device = device
        # Under fully_shard every backward pass makes collectives, the accumulated micro-batches' too (DDP
        # skips them under no_sync): the ranks then check for failures before each micro-batch's backward.
        self.every_micro_batch = every_micro_batch
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
            raise self._others_failed(failed, "its snapshot or the first batches of its loader")
        return self

    def abort(self) -> None:
        """This rank failed before :meth:`start` (its snapshot, its loader): take part in the first exchange
        as a failure, so that every other rank's :meth:`start` raises."""
        self._exchange(None)

    def step(self, run: Callable[[Callable[[torch.Tensor, bool], None]], Any]) -> torch.Tensor:
        """Run one training step as ``run(before_backward)``; returns the loss averaged over ranks.

        ``run`` must call ``before_backward(mean_loss_of_the_step, last)`` after each micro-batch's forward
        pass and before its backward pass (``Trainer.step`` does); ``last`` marks the step's last one.
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

    def _before_backward(self, loss: torch.Tensor, last: bool = True) -> None:
        if not last:
            if self.every_micro_batch:
                self._checked = True
                _, failed = self._exchange(loss)
                if failed:
                    raise self._others_failed(failed, "its forward pass or its loss")
                self._checked = False  # a failure later in this step is still this rank's to report
            return
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
