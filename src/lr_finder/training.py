"""The training side of a range test: batches in, one optimizer step per recorded point, losses out.

A step runner drives the model: :class:`LocalSteps` for a model trained in this process alone, and
:class:`lr_finder.distributed.LockstepSteps` for ranks that train one model together. Both have the same
small interface (``start`` / ``step`` / ``evaluate`` / ``close``, and ``abort`` for a failure before
``start``), chosen once by :func:`lr_finder.distributed.steps_for`, so :func:`sweep` never branches on it.
Each step's loss is read back to the host at once (on CUDA one synchronisation per step, as in other
finders), so the stop rule acts on the very step it fires on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import sharding
from ._logging import logger
from .batches import LossFn, batch_size, compute_loss, move_to_device
from .errors import InputError
from .loaders import BatchStream
from .monitor import Recorder
from .settings import RangeTestSettings

#: ``schedule(step) -> (recorded_lr, one LR per param group)``.
GroupSchedule = Callable[[int], tuple[float, Sequence[float]]]


@dataclass
class Amp:
    """How the forward pass runs: autocast dtype (or none) and the GradScaler used (or none)."""

    device_type: str
    dtype: torch.dtype | None = None
    scaler: Any = None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)


def resolve_amp(device: torch.device, use_amp: bool, amp_dtype: torch.dtype | None, scaler: Any) -> Amp:
    """fp16 autocast + GradScaler on CUDA (bf16 when asked, without a scaler); on CPU fp32 unless an
    ``amp_dtype`` is asked for (torch's CPU autocast runs bf16 and fp16; only the scaler given is used)."""
    if not use_amp:
        return Amp(device.type)
    if device.type == "cuda":
        dtype = amp_dtype or torch.float16
        if scaler is None and dtype == torch.float16:
            scaler = torch.amp.GradScaler("cuda")
        return Amp("cuda", dtype, scaler)
    if amp_dtype is not None and device.type == "cpu":
        return Amp("cpu", amp_dtype, scaler if amp_dtype == torch.float16 else None)
    logger.debug("use_amp=True on %s without amp_dtype: running in fp32 (mixed precision is for CUDA; pass "
                 "amp_dtype=torch.bfloat16 for bf16 autocast on CPU)", device.type)
    return Amp(device.type)


def set_lr(optimizer: torch.optim.Optimizer, lrs: Sequence[float]) -> None:
    """Set each param group's LR (in place for tensor LRs, so compiled optimizers keep working)."""
    for group, value in zip(optimizer.param_groups, lrs, strict=True):
        current = group["lr"]
        if isinstance(current, torch.Tensor):
            current.fill_(value)
        else:
            group["lr"] = value


@dataclass(frozen=True)
class Trainer:
    """The pieces of one training step, closed over once for the whole sweep."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Callable[..., torch.Tensor] | None
    loss_fn: LossFn | None
    amp: Amp
    device: torch.device
    accumulation_steps: int = 1
    non_blocking: bool = True
    clip_grad_norm: float | None = None
    clip_grad_value: float | None = None

    @classmethod
    def build(cls, model: torch.nn.Module, optimizer: torch.optim.Optimizer, criterion: Any, loss_fn: Any,
              device: torch.device, scaler: Any, settings: RangeTestSettings,
              clip_grad: tuple[float | None, float | None] = (None, None)) -> Trainer:
        """The trainer for ``settings``; a ``fully_shard`` mixed-precision policy decides the precision;
        ``clip_grad``: ``(max norm, max value)`` of the gradients before each optimizer step."""
        sharding.check_supported(model)
        amp = resolve_amp(device, settings.use_amp, settings.amp_dtype, scaler)
        policy = sharding.policy_dtype(model)
        if policy is not None and (amp.dtype is not None or amp.scaler is not scaler):
            logger.info("fully_shard's MixedPrecisionPolicy(param_dtype=%s) sets the precision: autocast off", policy)
            amp = Amp(device.type, None, scaler)
        return cls(model, optimizer, criterion, loss_fn, amp, device, settings.accumulation_steps,
                   settings.non_blocking_transfer, *clip_grad)

    def _loss(self, model: torch.nn.Module, raw: Any, need_grad: bool = True) -> torch.Tensor | None:
        batch = move_to_device(raw, self.device, self.non_blocking)
        with self.amp.autocast():
            return compute_loss(model, self.criterion, batch, self.loss_fn, need_grad=need_grad)

    def forward(self, raw: Any) -> torch.Tensor | None:
        """One micro-batch's share of the step's loss (its loss over ``accumulation_steps``), with its graph;
        ``None`` when ``loss_fn`` skips the batch."""
        loss = self._loss(self.model, raw)
        return loss / self.accumulation_steps if self.accumulation_steps > 1 and loss is not None else loss

    def backward(self, share: torch.Tensor) -> None:
        (self.amp.scaler.scale(share) if self.amp.scaler is not None else share).backward()

    def optimizer_step(self) -> None:
        norm, value = self.clip_grad_norm, self.clip_grad_value
        if norm is not None or value is not None:
            if self.amp.scaler is not None:
                self.amp.scaler.unscale_(self.optimizer)  # clip the true gradients, as training does
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            if norm is not None:
                torch.nn.utils.clip_grad_norm_(params, norm)
            elif value is not None:
                torch.nn.utils.clip_grad_value_(params, value)
        if self.amp.scaler is not None:
            self.amp.scaler.step(self.optimizer)
            self.amp.scaler.update()
        else:
            self.optimizer.step()

    def no_sync(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """DDP's ``no_sync`` for every micro-batch but a step's last: their gradients are summed locally."""
        no_sync = getattr(self.model, "no_sync", None)
        return no_sync() if no_sync is not None and not last else contextlib.nullcontext()

    def evaluate(self, loader: Iterable[Any], model: torch.nn.Module | None = None) -> torch.Tensor:
        """Exact mean loss over a whole loader (weighted by batch size), in eval mode under ``no_grad``.

        Assumes a mean-reduced loss per batch, weighted by :func:`lr_finder.batches.batch_size`, so uneven
        batches (a last partial one) give the exact mean over samples. The train/eval mode of every
        submodule is put back afterwards.
        """
        model = self.model if model is None else model
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        count = 0
        try:
            with torch.no_grad():
                for raw in loader:
                    loss = self._loss(model, raw, need_grad=False)
                    if loss is not None:  # a batch loss_fn skips counts for nothing
                        n = batch_size(raw)
                        total += loss.detach().double() * n
                        count += n
        finally:
            for m, training in modes:
                m.training = training
        if count == 0:
            raise InputError("val_loader yielded no batches: pass a loader with at least one batch, or val_loader=None")
        return total / count  # float64, as accumulated: rounding it to float32 would change the recorded loss


class LocalSteps:
    """Training steps of a model that this process trains alone."""

    world = 1

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.stream: BatchStream | None = None
        self.skipped = 0  # batches whose loss was None (skipped, the next one used)

    def start(self, loader: Iterable[Any], settings: RangeTestSettings) -> None:
        """Start drawing batches from ``loader`` (cycled as needed), the model in training mode."""
        self.trainer.model.train()
        self.stream = BatchStream(loader)

    def _next(self) -> Any:
        assert self.stream is not None, "start() first"
        return self.stream.next()

    def _share(self) -> torch.Tensor:
        """The loss share of the next batch that has one: a batch ``loss_fn`` skips (``None``, as Lightning's
        ``training_step`` returns to skip one) gives way to the next, as in training."""
        passes = None
        while (share := self.trainer.forward(self._next())) is None:
            assert self.stream is not None
            self.skipped += 1
            passes = self.stream.passes if passes is None else passes
            if self.stream.passes - passes > 1:  # a whole pass went by without a loss
                raise InputError(f"loss_fn returned None for every batch of the train loader ({self.skipped} "
                                 "skipped): the range test needs a loss to train on")
        return share

    def step(self) -> torch.Tensor:
        """One optimizer step over ``accumulation_steps`` micro-batches; returns their mean loss (detached)."""
        t, n = self.trainer, self.trainer.accumulation_steps
        t.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=t.device)
        for j in range(n):
            with t.no_sync(last=j == n - 1):
                share = self._share()
                # the mean as the sum of the shares whose gradients are taken: torch-lr-finder's value to the bit
                total = total + share.detach().float()
                t.backward(share)
        t.optimizer_step()
        return total

    def evaluate(self, loader: Iterable[Any]) -> torch.Tensor:
        return self.trainer.evaluate(loader)

    def abort(self) -> None:
        """This process failed before :meth:`start`; alone, it has no one to tell."""

    def close(self) -> None:
        """Put the loader back (its bookkeeping, e.g. persistent workers). Safe to call more than once."""
        if self.stream is not None:
            self.stream.close()


def sweep(
    steps: LocalSteps,
    settings: RangeTestSettings,
    schedule: GroupSchedule,
    record: Recorder,
    *,
    val_loader: Iterable[Any] | None = None,
    on_step: Callable[[], object] | None = None,
) -> None:
    """Run the sweep on started ``steps``, appending to ``record`` until it says stop or ``num_iter`` ends."""
    for i in range(settings.num_iter):
        lr, group_lrs = schedule(i)
        set_lr(steps.trainer.optimizer, group_lrs)
        loss = steps.step()
        if val_loader is not None:
            loss = steps.evaluate(val_loader)
        if on_step is not None:
            on_step()
        if record.add(lr, float(loss), settings):
            return
