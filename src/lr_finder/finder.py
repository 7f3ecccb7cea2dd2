"""``LRFinder``: the range test itself (checks, the step runner, the snapshot around the sweep, the history),
and verify(); what it reads from its curve (suggestion, plot, files) is :class:`lr_finder.report.Readout`."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import distributed, report
from ._logging import logger
from .batches import LossFn
from .errors import InputError, InputTypeError, RangeTestError
from .history import History
from .loaders import LoaderBookkeeping, is_one_shot, loader_generators
from .monitor import Recorder, StopRule
from .schedule import group_ratios, group_schedule
from .settings import RangeTestSettings, check_flag, check_lr, check_positive
from .sharding import reset_sharded
from .snapshot import PinnedBuffer, Snapshot, capture
from .training import GroupSchedule, LocalSteps, Trainer, sweep
from .validation import (
    check_cache_dir,
    check_loader,
    check_not_a_loader,
    check_objects,
    check_val_loader,
    resolve_device,
    unwrap_optimizer,
)
from .verify import DEFAULT_FACTORS, Verification, choose, plan, score, start_noise, trial_stop


class LRFinder(report.Readout):
    """The learning-rate range test (Smith, 2017) for a PyTorch model.

    Args:
        model: the model to test. It is trained during the test and restored bit for bit afterwards.
        optimizer: its optimizer; every param group follows the sweep, keeping the groups' LR ratios. An
            accelerate ``AcceleratedOptimizer`` is unwrapped: the test steps the optimizer inside it (the
            same param groups and state) and uses the wrapper's GradScaler, if any, as ``scaler``.
        criterion: ``criterion(model(inputs), targets) -> scalar loss``; ``None`` when the model returns
            its own ``loss`` (Hugging Face style) or when ``loss_fn`` is given.
        device: where batches go; ``None`` means the model's device (the model is never moved).
        memory_cache: keep the restore snapshot in CPU memory (``True``) or on disk (``False``).
        cache_dir: folder for the disk snapshot and, in :meth:`plot`, for the CSV and ``best_lr.txt``.
        scaler: your ``torch.amp.GradScaler`` for mixed precision; one is created on CUDA when ``None``.
        loss_fn: ``loss_fn(model, batch) -> scalar loss tensor``, replacing forward + criterion for
            batches of any shape.
        clip_grad_norm, clip_grad_value: clip the gradients before each optimizer step as your training
            does (``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``, after unscaling with a
            GradScaler); the range test and :meth:`verify` both apply it.

    Example:
        >>> finder = LRFinder(model, optimizer, criterion)           # doctest: +SKIP
        >>> finder.range_test(train_loader, end_lr=1, num_iter=100)  # doctest: +SKIP
        >>> best_lr = finder.plot(save_path="plots/lr_finder_plot.png")  # doctest: +SKIP
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        criterion: Callable[..., torch.Tensor] | None,
        device: str | torch.device | None = None,
        memory_cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        scaler: Any = None,
        *,
        loss_fn: LossFn | None = None,
        clip_grad_norm: float | None = None,
        clip_grad_value: float | None = None,
    ) -> None:
        optimizer, scaler = unwrap_optimizer(optimizer, scaler)  # accelerate's AcceleratedOptimizer
        check_objects(model, optimizer, criterion, scaler)
        if loss_fn is not None and not callable(loss_fn):
            raise InputTypeError(f"loss_fn must be callable as loss_fn(model, batch) -> loss, got {loss_fn!r}")
        check_cache_dir(cache_dir)
        if clip_grad_norm is not None and clip_grad_value is not None:
            raise InputError("give clip_grad_norm or clip_grad_value, not both (training clips one way)")
        self.clip_grad = (None if clip_grad_norm is None else check_positive("clip_grad_norm", clip_grad_norm),
                          None if clip_grad_value is None else check_positive("clip_grad_value", clip_grad_value))
        self.model = model
        self.optimizer = optimizer
        self.criterion = criterion
        self.device = resolve_device(model, device)
        self.memory_cache = check_flag("memory_cache", memory_cache)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.scaler = scaler
        self.loss_fn = loss_fn
        self.history = History()
        self._snapshot: Snapshot | None = None
        self._pinned = PinnedBuffer()  # page-locked host memory for CUDA snapshots, kept across this finder's tests
        self._settings: RangeTestSettings | None = None
        self.verification: Verification | None = None  # the last verify()'s result

    # -- the test ---------------------------------------------------------------------------------
    def range_test(
        self,
        train_loader: Iterable[Any],
        start_lr: float = 1e-7,
        end_lr: float = 1,
        num_iter: int = 100,
        step_mode: str = "exp",
        smooth_f: float = 0.05,
        diverge_th: float = 5.0,
        use_amp: bool = True,
        adaptive_stop: bool = True,
        *,
        val_loader: Iterable[Any] | None = None,
        accumulation_steps: int = 1,
        non_blocking_transfer: bool = True,
        amp_dtype: torch.dtype | None = None,
        show_progress: bool = True,
    ) -> History:
        """Train with an LR rising from ``start_lr`` to ``end_lr`` over ``num_iter`` steps, recording the loss.

        Stops early when the smoothed loss exceeds ``diverge_th`` times its best (for losses <= 0, see
        :func:`lr_finder.monitor.divergence_threshold`), at once on a NaN/inf loss, and with
        ``adaptive_stop`` on a sustained spike of the raw loss. Whatever happens (exceptions and Ctrl-C
        too), the model, optimizer, scaler and RNGs are restored bit for bit before this returns or raises;
        the history recorded so far is kept in :attr:`history`.

        Args:
            train_loader: yields ``(inputs, targets)``, dicts, or anything ``loss_fn`` accepts; cycled when
                it has fewer batches than ``num_iter * accumulation_steps``.
            start_lr, end_lr: the first and last learning rates of the sweep (of the first param group
                with a positive LR; other groups keep their ratio to it).
            num_iter: the number of optimizer steps (recorded points).
            step_mode: ``"exp"`` (log-spaced, preferred) or ``"linear"``.
            smooth_f: weight of the newest loss in the EMA that gives ``history["loss"]``; 0 disables it.
            diverge_th: divergence factor for the early stop (> 1).
            use_amp: fp16 autocast + GradScaler on CUDA; on CPU fp32 unless ``amp_dtype`` asks for bf16 or fp16.
            adaptive_stop: also stop on a sudden sustained spike (3 raw losses in a row past the threshold).
            val_loader: when given, the loss recorded after each step is the exact mean over this loader.
            accumulation_steps: micro-batches per optimizer step (their mean loss is recorded).
            non_blocking_transfer: copy batches to the device with ``non_blocking=True``.
            amp_dtype: autocast dtype; ``None`` means fp16 on CUDA.
            show_progress: show the "Finding LR" progress bar.

        Returns:
            The :class:`History` (also kept as :attr:`history`).

        Raises:
            InputError: a bad argument or loader, before anything is trained (``InputTypeError``: a wrong type).
            RangeTestError: the loss was not finite from the very first step, so there is no curve.
        """
        for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
            check_not_a_loader(name, value)
        settings = RangeTestSettings(
            start_lr=start_lr, end_lr=end_lr, num_iter=num_iter, step_mode=step_mode, smooth_f=smooth_f,
            diverge_th=diverge_th, use_amp=use_amp, adaptive_stop=adaptive_stop, accumulation_steps=accumulation_steps,
            non_blocking_transfer=non_blocking_transfer, amp_dtype=amp_dtype, show_progress=show_progress,
        )
        return self.run(train_loader, settings, val_loader=val_loader)

    def run(
        self,
        train_loader: Iterable[Any],
        settings: RangeTestSettings,
        *,
        val_loader: Iterable[Any] | None = None,
        schedule: GroupSchedule | None = None,
        stop: StopRule | None = None,
    ) -> History:
        """:meth:`range_test` from a :class:`~lr_finder.settings.RangeTestSettings`.

        ``schedule(step) -> (recorded_lr, one LR per param group)`` replaces the default sweep, in which
        every group follows ``settings.lr(step)`` at its ratio to the first group with a positive LR.
        ``stop(raw_losses) -> reason or None`` replaces the divergence and spike stop rules (see
        :class:`lr_finder.monitor.Recorder`); a non-finite loss still stops the sweep at once.
        """
        check_loader(train_loader, "train_loader", settings.batches_needed)
        if val_loader is not None:
            check_val_loader(val_loader)
        ratios = group_ratios([float(g["lr"]) for g in self.optimizer.param_groups])
        steps = self._steps(settings)
        dtype = steps.trainer.amp.dtype
        recorded = {**settings.to_dict(), "amp_dtype": None if dtype is None else str(dtype).replace("torch.", ""),
                    "val_loader": val_loader is not None, "device": str(self.device), "param_group_ratios": ratios,
                    "world_size": steps.world, "clip_grad_norm": self.clip_grad[0],
                    "clip_grad_value": self.clip_grad[1]}
        self._settings = settings
        record = Recorder(stop=stop)
        start = time.perf_counter()
        shown = settings.show_progress and distributed.is_main()
        try:
            with self._restored(steps, train_loader, val_loader, settings), \
                    tqdm(total=settings.num_iter, desc="Finding LR", disable=not shown) as bar:
                sweep(steps, settings, schedule or group_schedule(settings.lr, ratios), record,
                      val_loader=val_loader, on_step=bar.update)
        finally:  # the curve so far is kept on every exit path
            recorded.update(elapsed_s=round(time.perf_counter() - start, 4), skipped_batches=steps.skipped)
            self.history = record.history(recorded)
        if steps.skipped:
            logger.warning("loss_fn returned None (skip) for %d batch(es): the next batch took each one's place",
                           steps.skipped)
        if not record.lr and record.non_finite is not None:
            lr, value = record.non_finite
            raise RangeTestError(
                f"the loss was {value} at the first step (lr={lr:.3g}), so nothing was recorded; the model and "
                "optimizer are restored. Check the data and targets for NaN/inf, the loss inputs (e.g. class "
                "indices in range, logits vs probabilities) and the model's initialisation, or lower start_lr"
            )
        if record.stop_reason:
            logger.info("Stopped early after %d steps: %s", len(record.lr), record.stop_reason)
        logger.info("LR range test complete.")
        logger.getChild("api").info("Model and optimizer state restored after LR test. Use `.plot()` to visualize.")
        return self.history

    def _steps(self, settings: RangeTestSettings) -> LocalSteps:
        trainer = Trainer.build(self.model, self.optimizer, self.criterion, self.loss_fn, self.device, self.scaler,
                                settings, self.clip_grad)
        return distributed.steps_for(trainer)

    @contextlib.contextmanager
    def _restored(self, steps: LocalSteps, train_loader: Any, val_loader: Any, settings: RangeTestSettings) -> (
        Iterator[None]
    ):
        """Snapshot, start ``steps`` on ``train_loader``; put state and loaders back on every exit path."""
        reset_sharded(self.model)  # a sharded model's own shards registered, not a gathered copy
        try:
            self._snapshot = capture(
                self.model, self.optimizer, scaler=self.scaler, criterion=self.criterion,
                generators=loader_generators(train_loader) + loader_generators(val_loader),
                memory_cache=self.memory_cache, cache_dir=self.cache_dir, pinned=self._pinned,
            )
        except Exception:
            steps.abort()  # the other ranks of a lock-step test raise too instead of waiting for this one
            raise
        val_books = LoaderBookkeeping(val_loader)
        try:
            steps.start(train_loader, settings)
            yield
        finally:
            steps.close()  # the loader's own bookkeeping (e.g. persistent workers) goes back too
            val_books.restore()
            self._end_snapshot()

    def verify(
        self,
        train_loader: Iterable[Any],
        lr: float | None = None,
        *,
        factors: Sequence[float] = DEFAULT_FACTORS,
        steps: int | None = None,
        method: str = "default",
        val_loader: Iterable[Any] | None = None,
    ) -> Verification:
        """Check the suggestion by training: short constant-LR runs at ``factors x`` it; keep the best stable.

        Each run starts from the state the model had before the range test and sees the same batches, with
        the test's settings (accumulation, precision, ``loss_fn``, gradient clipping); the state is restored
        after each, as after the range test. The lowest mean loss over a run's last quarter wins (the
        training loss, or with ``val_loader`` the validation loss after each step), and a lower LR within one
        standard error of it is preferred (see :func:`lr_finder.verify.choose`); a run whose loss explodes
        (:func:`lr_finder.verify.trial_stop`) or ends above where it started, beyond its noise, is unfit.

        Args:
            train_loader: the loader of the range test (or one like it).
            lr: the LR to check; ``None`` means the suggestion of ``method`` for the last range test.
            factors: the candidates, as multiples of ``lr``.
            steps: optimizer steps per run; ``None`` spends the range test's ``num_iter`` over all runs
                (at least 10 each).
            method: the suggestion to check when ``lr`` is ``None``.
            val_loader: score each run on the exact mean loss over this loader after each step.

        Returns:
            A :class:`~lr_finder.verify.Verification`: ``lr`` (``None`` when no run was stable), every trial,
            and ``extra_steps``, the training steps it cost.
        """
        self._require_history("verify()")
        if is_one_shot(train_loader):
            raise InputTypeError(
                "train_loader is a one-shot iterator, but verify() trains every candidate on the same batches from "
                "the start: pass a re-iterable loader such as a DataLoader"
            )
        if val_loader is not None:
            check_val_loader(val_loader)
        elif self.history.settings.get("val_loader"):
            logger.warning("verify() scores the training loss: pass val_loader= to score the validation loss, "
                           "as the range test did")
        suggested = self.get_suggested_lr(method) if lr is None else check_lr(lr)
        if suggested is None:
            self.verification = Verification(None, math.nan, (), "the range test suggested no learning rate to verify")
            return self.verification
        lrs, settings = plan(suggested, factors, steps, self._settings or RangeTestSettings())
        check_loader(train_loader, "train_loader", settings.batches_needed)
        ratios = group_ratios([float(g["lr"]) for g in self.optimizer.param_groups])
        runner = self._steps(settings)
        noise = 0.0 if val_loader is not None else start_noise(self.history.raw_loss)  # a validation loss is exact
        trials = []
        for value in lrs:
            record = Recorder(stop=trial_stop(settings.diverge_th))
            constant = group_schedule(functools.partial(_constant, value), ratios)
            with self._restored(runner, train_loader, val_loader, settings):
                sweep(runner, settings, constant, record, val_loader=val_loader)
            trials.append(score(value, record.raw_loss, settings.num_iter, record.stop_reason, noise))
            logger.info("verify: lr %.3g -> %s", value, trials[-1].problem or f"loss {trials[-1].score:.4g}")
        self.verification = choose(trials, suggested)
        return self.verification

    # -- restore ------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Restore the state from before the range test: a no-op after ``range_test``, which restores on every
        exit path (kept for the ``range_test`` / ``plot`` / ``reset`` workflow); inside a run, restores now."""
        if self._snapshot is not None:
            self._snapshot.restore()
            logger.info("Model and optimizer state restored after LR test.")

    def _end_snapshot(self) -> None:
        """Restore and free the snapshot of a test in flight, if any."""
        snapshot, self._snapshot = self._snapshot, None
        if snapshot is None:
            return
        try:
            try:
                reset_sharded(self.model)  # the restore writes into the shards the next step reads
            finally:
                snapshot.restore()
        finally:
            snapshot.close()

    def close(self) -> None:
        """Restore if a test is in flight and free its snapshot (memory and disk) and its pinned host memory."""
        try:
            self._end_snapshot()
        finally:
            self._pinned.release()

    def __enter__(self) -> LRFinder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _constant(value: float, step: int) -> float:
    return value
