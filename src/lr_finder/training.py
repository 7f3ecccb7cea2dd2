"""The training side of a range test: batches in, one optimizer step per recorded point, losses out.

No analysis and no file I/O here. The loss of each step stays on the device and is read back with a lag
of one step on CUDA (a non-blocking copy into pinned memory), so the GPU is never idle waiting for the
host; the stop rule may therefore fire one step late on CUDA, and that extra step is not recorded.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from . import monitor
from ._logging import logger
from .batches import LossFn, batch_size, compute_loss, move_to_device
from .errors import InputError


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
    """Mixed precision as the specification asks: fp16 autocast + GradScaler on CUDA; fp32 on CPU by default."""
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


class _LoaderBookkeeping:
    """What iterating an accelerate-prepared loader changes besides the data, saved to be put back.

    accelerate's ``DataLoaderShard`` counts its finished passes in ``iteration`` (the epoch its seedable
    sampler shuffles with) and registers in accelerate's ``GradientState`` while a pass runs; a pass left
    half-way stays registered. Other loaders have neither, and nothing is saved for them.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        state = getattr(loader, "gradient_state", None)
        references = getattr(state, "dataloader_references", None)
        self.references = None if references is None else list(references)
        iteration = getattr(loader, "iteration", None) if self.references is not None else None
        self.iteration = iteration if isinstance(iteration, int) else None

    def restore(self) -> None:
        if self.iteration is not None:
            self.loader.iteration = self.iteration
        if self.references is not None:
            self.loader.gradient_state.dataloader_references = list(self.references)


class BatchStream:
    """Batches from a loader, starting it over when it ends (a loader shorter than the sweep is cycled).

    A one-shot iterator (a generator) cannot be started over: running out of it is a clear error.
    :meth:`close` lets go of the loader as it was found (see :class:`_LoaderBookkeeping`).
    """

    def __init__(self, loader: Iterable[Any], name: str = "train_loader") -> None:
        self.loader = loader
        self.name = name
        self.one_shot = isinstance(loader, Iterator)
        self._bookkeeping = _LoaderBookkeeping(loader)
        self._it: Iterator[Any] = iter(loader)
        self._in_pass = 0
        self.total = 0

    def next(self) -> Any:
        try:
            batch = next(self._it)
        except StopIteration:
            if self.one_shot:
                raise InputError(
                    f"{self.name} (a one-shot iterator) ran out after {self.total} batches: pass a "
                    "re-iterable loader such as a DataLoader (it is cycled as needed), or lower num_iter"
                ) from None
            if self._in_pass == 0:
                raise InputError(
                    f"{self.name} yielded no batches: pass a loader with at least one batch"
                ) from None
            self._it = iter(self.loader)
            self._in_pass = 0
            try:
                batch = next(self._it)
            except StopIteration:
                raise InputError(
                    f"{self.name} yielded no batches on its second pass: it cannot be cycled"
                ) from None
        self._in_pass += 1
        self.total += 1
        return batch

    def close(self) -> None:
        """Drop the pass in progress and put back the loader's bookkeeping (accelerate's pass counter and
        ``GradientState`` registration). Safe to call more than once."""
        self._it = iter(())
        self._in_pass = 0
        self._bookkeeping.restore()


def set_lr(optimizer: torch.optim.Optimizer, lr: float, ratios: list[float]) -> None:
    """Set every param group to ``lr * ratio`` (in place for tensor LRs, so compiled optimizers keep working)."""
    for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
        value = lr * ratio
        current = group["lr"]
        if isinstance(current, torch.Tensor):
            current.fill_(value)
        else:
            group["lr"] = value


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    criterion: Callable[..., torch.Tensor] | None,
    stream: BatchStream,
    *,
    loss_fn: LossFn | None,
    amp: Amp,
    device: torch.device,
    accumulation_steps: int = 1,
    non_blocking: bool = True,
    before_backward: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """One optimizer step over ``accumulation_steps`` micro-batches; returns their mean loss (detached).

    ``before_backward(mean_loss)`` (issue 6, distributed): called after the last micro-batch's forward pass
    and before its backward pass, where the ranks of a DDP test exchange their loss and failure flags.
    """
    optimizer.zero_grad(set_to_none=True)
    total: torch.Tensor | None = None
    no_sync = getattr(model, "no_sync", None)
    for j in range(accumulation_steps):
        batch = move_to_device(stream.next(), device, non_blocking)
        last = j == accumulation_steps - 1
        ctx = no_sync() if (no_sync is not None and not last) else contextlib.nullcontext()
        with ctx:
            with amp.autocast():
                loss = compute_loss(model, criterion, batch, loss_fn)
            value = loss.detach().float()
            total = value if total is None else total + value
            if last and before_backward is not None:  # distributed.StepSync: every rank checks in here
                before_backward(total / accumulation_steps if accumulation_steps > 1 else total)
            scaled = loss / accumulation_steps if accumulation_steps > 1 else loss
            if amp.scaler is not None:
                amp.scaler.scale(scaled).backward()
            else:
                scaled.backward()
    if amp.scaler is not None:
        amp.scaler.step(optimizer)
        amp.scaler.update()
    else:
        optimizer.step()
    assert total is not None
    return total / accumulation_steps if accumulation_steps > 1 else total


def evaluate(
    model: torch.nn.Module,
    criterion: Callable[..., torch.Tensor] | None,
    loader: Iterable[Any],
    *,
    loss_fn: LossFn | None,
    amp: Amp,
    device: torch.device,
    non_blocking: bool = True,
) -> torch.Tensor:
    """Exact mean loss over a whole loader (weighted by batch size), in eval mode under ``no_grad``.

    Assumes a mean-reduced loss per batch, weighted by :func:`lr_finder.batches.batch_size` (the first
    dimension of the batch's first tensor), so uneven batches (a last partial one) give the exact mean over
    samples. The train/eval mode of every submodule is put back afterwards, and so is the bookkeeping of an
    accelerate-prepared loader (its pass counter).
    """
    modes = [(m, m.training) for m in model.modules()]
    bookkeeping = _LoaderBookkeeping(loader)
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    try:
        with torch.no_grad():
            for raw in loader:
                batch = move_to_device(raw, device, non_blocking)
                with amp.autocast():
                    loss = compute_loss(model, criterion, batch, loss_fn, need_grad=False)
                n = batch_size(batch)
                total += loss.detach().double() * n
                count += n
    finally:
        for m, training in modes:
            m.training = training
        bookkeeping.restore()
    if count == 0:
        raise InputError(
            "val_loader yielded no batches: pass a loader with at least one batch, or val_loader=None"
        )
    return (total / count).float()


@dataclass
class Recorder:
    """What a sweep has recorded so far; kept when the sweep ends by an exception."""

    lr: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    raw_loss: list[float] = field(default_factory=list)
    stop_reason: str | None = None
    state: monitor.MonitorState = field(default_factory=monitor.init)


class _LossReader:
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


def sweep(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    criterion: Callable[..., torch.Tensor] | None,
    stream: BatchStream,
    lrs: Iterable[float],
    ratios: list[float],
    record: Recorder,
    *,
    smooth_f: float,
    diverge_th: float,
    adaptive_stop: bool,
    loss_fn: LossFn | None,
    amp: Amp,
    device: torch.device,
    accumulation_steps: int = 1,
    val_loader: Iterable[Any] | None = None,
    non_blocking: bool = True,
    sync: Any = None,
    on_step: Callable[[], None] | None = None,
) -> None:
    """Run the sweep, appending to ``record``; stops early as :func:`lr_finder.monitor.update` decides.

    ``sync``: a :class:`lr_finder.distributed.StepSync` for a DDP model (``None`` in a single process): it
    prefetches the batches and averages each step's loss over ranks in one all-reduce before the backward
    pass, so that all ranks record the same curve and stop (or fail) at the same step.
    """
    reader = _LossReader(device)

    def consume(drain: bool) -> bool:
        for lr, raw in reader.ready(drain):
            record.state = monitor.update(
                record.state, raw, smooth_f=smooth_f, diverge_th=diverge_th, adaptive_stop=adaptive_stop
            )
            if record.state.count > len(record.raw_loss):  # a finite loss was recorded
                record.lr.append(lr)
                record.raw_loss.append(raw)
                record.loss.append(record.state.smoothed)
            if record.state.stop_reason is not None:
                record.stop_reason = record.state.stop_reason
                reader.pending.clear()
                return True
        return False

    model.train()
    source: Any = stream
    eval_model = model
    if sync is not None:  # distributed (DDP): the batches come prefetched, checked on every rank
        lrs = list(lrs)
        source = sync.start(stream, len(lrs), accumulation_steps)
        eval_model = sync.local_model(model)
    for lr in lrs:
        set_lr(optimizer, lr, ratios)

        def step(before_backward: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor:
            return train_step(
                model,
                optimizer,
                criterion,
                source,
                loss_fn=loss_fn,
                amp=amp,
                device=device,
                accumulation_steps=accumulation_steps,
                non_blocking=non_blocking,
                before_backward=before_backward,
            )

        loss = step() if sync is None else sync.step(step)
        if val_loader is not None:

            def run_eval() -> torch.Tensor:
                return evaluate(
                    eval_model, criterion, val_loader, loss_fn=loss_fn, amp=amp, device=device,
                    non_blocking=non_blocking,
                )

            loss = run_eval() if sync is None else sync.evaluate(run_eval)
        reader.push(lr, loss)
        if on_step is not None:
            on_step()
        if consume(drain=False):
            return
    consume(drain=True)
