"""The training side of a range test: batches in, one optimizer step per recorded point, losses out.

No analysis and no file I/O here. The loss of each step stays on the device and is read back with a lag
of one step on CUDA (a non-blocking copy into pinned memory), so the GPU is never idle waiting for the
host; the stop rule may therefore fire one step late on CUDA, and that extra step is not recorded.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from . import monitor
from ._logging import logger
from .batches import LossFn, batch_size, compute_loss, move_to_device
from .errors import InputError
from .settings import RangeTestSettings

#: ``schedule(step) -> (recorded_lr, one LR per param group)``.
GroupSchedule = Callable[[int], tuple[float, Sequence[float]]]

#: ``stop(raw_losses) -> reason or None``: called after each recorded (finite) loss with every raw loss
#: recorded so far (read-only); a reason ends the sweep after that step, which stays recorded.
StopRule = Callable[[Sequence[float]], str | None]


class BatchSource(Protocol):
    def next(self) -> Any: ...


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
    """fp16 autocast + GradScaler on CUDA (bf16 when asked, without a scaler); fp32 on CPU unless bf16."""
    if not use_amp:
        return Amp(device.type)
    if device.type == "cuda":
        dtype = amp_dtype or torch.float16
        if scaler is None and dtype == torch.float16:
            scaler = torch.amp.GradScaler("cuda")
        return Amp("cuda", dtype, scaler)
    if amp_dtype == torch.bfloat16 and device.type == "cpu":
        return Amp("cpu", torch.bfloat16, None)
    logger.debug(
        "use_amp=True on %s: running in fp32 (mixed precision is for CUDA; pass amp_dtype=torch.bfloat16 "
        "for bf16 autocast on CPU)",
        device.type,
    )
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
    """What one training step needs, closed over once for the whole sweep."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Callable[..., torch.Tensor] | None
    loss_fn: LossFn | None
    amp: Amp
    device: torch.device
    accumulation_steps: int = 1
    non_blocking: bool = True

    def _loss(self, model: torch.nn.Module, batch: Any, need_grad: bool = True) -> torch.Tensor:
        with self.amp.autocast():
            return compute_loss(model, self.criterion, batch, self.loss_fn, need_grad=need_grad)

    def step(
        self, source: BatchSource, before_backward: Callable[[torch.Tensor, bool], None] | None = None
    ) -> torch.Tensor:
        """One optimizer step over ``accumulation_steps`` micro-batches; returns their mean loss (detached).

        ``before_backward(mean_loss, last)`` is called after each micro-batch's forward pass and before its
        backward pass: where the ranks of a distributed test exchange their loss and failure flags.
        """
        self.optimizer.zero_grad(set_to_none=True)
        n = self.accumulation_steps
        total = torch.zeros((), device=self.device)
        no_sync = getattr(self.model, "no_sync", None)
        for j in range(n):
            batch = move_to_device(source.next(), self.device, self.non_blocking)
            last = j == n - 1
            with no_sync() if (no_sync is not None and not last) else contextlib.nullcontext():
                loss = self._loss(self.model, batch)
                scaled = loss / n if n > 1 else loss
                # the mean as the sum of the shares whose gradients are taken: torch-lr-finder's value to the bit
                total = total + scaled.detach().float()
                if before_backward is not None:
                    before_backward(total, last)  # the step's mean loss once ``last``
                (self.amp.scaler.scale(scaled) if self.amp.scaler is not None else scaled).backward()
        if self.amp.scaler is not None:
            self.amp.scaler.step(self.optimizer)
            self.amp.scaler.update()
        else:
            self.optimizer.step()
        return total

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
                    batch = move_to_device(raw, self.device, self.non_blocking)
                    n = batch_size(batch)
                    total += self._loss(model, batch, need_grad=False).detach().double() * n
                    count += n
        finally:
            for m, training in modes:
                m.training = training
        if count == 0:
            raise InputError("val_loader yielded no batches: pass a loader with at least one batch, or val_loader=None")
        return total / count  # float64, as accumulated: rounding it to float32 would change the recorded loss


@dataclass
class Recorder:
    """What a sweep has recorded so far; kept when the sweep ends by an exception."""

    lr: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    raw_loss: list[float] = field(default_factory=list)
    stop_reason: str | None = None
    state: monitor.MonitorState = field(default_factory=monitor.init)
    #: the first loss that was not finite, with its LR (it stops the sweep and is not recorded)
    non_finite: tuple[float, float] | None = None
    #: replaces the divergence and spike rules of :func:`lr_finder.monitor.update` when given (another
    #: library's stop rule, say); a non-finite loss still stops the sweep at once
    stop: StopRule | None = None

    def add(self, lr: float, raw: float, settings: RangeTestSettings) -> bool:
        """Record one step's loss; returns True when the sweep must stop."""
        self.state = monitor.update(
            self.state,
            raw,
            smooth_f=settings.smooth_f,
            diverge_th=settings.diverge_th,
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


class LossReader:
    """Reads per-step loss tensors back to the host, with a lag of one step on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.lag = 1 if device.type == "cuda" else 0
        self.pending: deque[tuple[float, Any]] = deque()

    def push(self, lr: float, value: torch.Tensor) -> None:
        if self.lag:
            host = torch.empty((), dtype=value.dtype, pin_memory=True)
            host.copy_(value, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self.pending.append((lr, (host, event)))
        else:
            self.pending.append((lr, value))

    def ready(self, drain: bool = False) -> Iterator[tuple[float, float]]:
        while len(self.pending) > (0 if drain else self.lag):
            lr, item = self.pending.popleft()
            if self.lag:
                host, event = item
                event.synchronize()
                yield lr, float(host)
            else:
                yield lr, float(item)


def _record(reader: LossReader, record: Recorder, settings: RangeTestSettings, drain: bool = False) -> bool:
    for lr, raw in reader.ready(drain):
        if record.add(lr, raw, settings):
            reader.pending.clear()
            return True
    return False


def sweep(
    trainer: Trainer,
    stream: BatchSource,
    settings: RangeTestSettings,
    schedule: GroupSchedule,
    record: Recorder,
    *,
    val_loader: Iterable[Any] | None = None,
    sync: Any = None,
    on_step: Callable[[], None] | None = None,
) -> None:
    """Run the sweep, appending to ``record``; stops early as :func:`lr_finder.monitor.update` decides.

    ``sync``: a :class:`lr_finder.distributed.StepSync` for a model trained across processes (``None`` in a
    single process): it prefetches the batches and averages each step's loss over ranks in one all-reduce
    before the backward pass, so that all ranks record the same curve and stop (or fail) at the same step.
    """
    reader = LossReader(trainer.device)
    trainer.model.train()
    source: BatchSource = stream
    eval_model = trainer.model
    if sync is not None:
        source = sync.start(stream, settings.num_iter, settings.accumulation_steps)
        eval_model = sync.local_model(trainer.model)
    for i in range(settings.num_iter):
        lr, group_lrs = schedule(i)
        set_lr(trainer.optimizer, group_lrs)
        if sync is None:
            loss = trainer.step(source)
        else:
            loss = sync.step(lambda before_backward: trainer.step(source, before_backward))
        if val_loader is not None:
            evaluate = lambda: trainer.evaluate(val_loader, eval_model)  # noqa: E731
            loss = evaluate() if sync is None else sync.evaluate(evaluate)
        reader.push(lr, loss)
        if on_step is not None:
            on_step()
        if _record(reader, record, settings):
            return
    _record(reader, record, settings, drain=True)
