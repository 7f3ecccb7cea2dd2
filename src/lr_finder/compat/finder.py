"""``lr_finder.compat.LRFinder``: torch-lr-finder 0.2.2's ``LRFinder`` API on lr_finder's machinery."""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .. import finder as core
from .. import report
from .._logging import logger
from ..errors import InputError, InputTypeError, RangeTestError
from ..history import History
from ..settings import RangeTestSettings, check_flag
from ..suggestion import analyze, analyze_history, available_methods
from ..validation import check_cache_dir, check_objects, model_device, parse_device
from . import inputs
from .rules import EmaDivergence, group_sweep


class LRFinder:
    """The learning-rate range test with torch-lr-finder 0.2.2's API: change only the import.

    It runs torch-lr-finder's sweep (the same LRs, the same raw losses on the same seed, the same stop step)
    with its arguments, attributes and return values. Where torch-lr-finder behaves badly, it differs:

    * **Exact restore on every exit path.** The model (parameters, buffers, gradients, train/eval modes,
      device), optimizer (state and param groups, LRs included), GradScaler, the RNGs and the loaders'
      shuffling generators are put back bit for bit when :meth:`range_test` returns *or raises* (Ctrl-C
      too). torch-lr-finder restores only when :meth:`reset` is called, and leaves ``start_lr`` set.
    * **No GPU copy of the state.** The restore snapshot is taken when the test starts, in CPU memory
      (``memory_cache=True``) or on disk in ``cache_dir``; torch-lr-finder deep-copies the model and
      optimizer on their device when the finder is built and keeps that copy for the finder's life.
    * **Clear errors before training**: bad types, a start LR above ``end_lr``, a zero LR in an exponential
      sweep, an AMP config for another device, a loss of NaN at the first step.
    * A NaN/inf loss stops the sweep at once (not recorded); torch-lr-finder records NaNs to the end. For
      losses <= 0 the stop threshold is :func:`lr_finder.monitor.divergence_threshold`.
    * The validation loss is the mean over the samples ``val_loader`` yields; torch-lr-finder divides the
      sum by ``len(val_loader.dataset)``, which differs when the loader does not yield the whole dataset
      once (``drop_last=True``, a sampler, a ``Subset``).
    * ``amp_config`` keys other than ``device_type``, ``dtype`` and ``enabled`` (e.g. ``cache_enabled``)
      are ignored.

    :meth:`plot` suggests torch-lr-finder's steepest-gradient point (scripts depend on it); lr_finder's own
    suggestion, better on ``benchmarks/suggestion_quality.py``, is ``plot(suggest_lr="default")`` or
    :meth:`get_suggested_lr`.

    Args:
        model: the model to test.
        optimizer: its optimizer. With ``start_lr=None`` each param group's current LR is where it starts.
        criterion: ``criterion(model(inputs), labels) -> scalar loss``.
        device: where to train: the model is moved there for the test and moved back after; ``None``
            trains where the model is.
        memory_cache: keep the restore snapshot in CPU memory (``True``) or on disk in ``cache_dir``.
        cache_dir: an existing folder for the disk snapshot (the system's temp folder when ``None``).
        amp_backend: ``"torch"`` for ``torch.autocast`` mixed precision, ``None`` for fp32; ``"apex"`` is
            refused (use ``"torch"``).
        amp_config: ``torch.autocast`` arguments: ``device_type`` (must match the device), ``dtype``
            (float16 on CUDA by default, bfloat16 on CPU; float16 on CPU too, as torch's CPU autocast runs it),
            ``enabled``, ``cache_enabled``.
        grad_scaler: the ``torch.amp.GradScaler`` to use; with ``None`` one is made for fp16 on CUDA. With
            float16 on CPU it scales the losses as torch-lr-finder does (none is made there).

    Attributes:
        history: a plain dict ``{"lr": [...], "loss": [...]}`` of the last test (smoothed losses, as in
            torch-lr-finder); read, assign and append to it freely, :meth:`plot` draws what it holds.
        best_loss: the lowest smoothed loss of the last test.
        result: the full :class:`lr_finder.History` of the last test (raw losses, stop reason, settings).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        criterion: Callable[..., torch.Tensor],
        device: str | torch.device | None = None,
        memory_cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
        amp_backend: str | None = None,
        amp_config: dict[str, Any] | None = None,
        grad_scaler: Any = None,
    ) -> None:
        check_objects(model, optimizer, criterion, grad_scaler)
        if criterion is None:
            raise InputTypeError("criterion must be a loss such as torch.nn.CrossEntropyLoss(), got None")
        self.model = model
        self.optimizer = optimizer
        self.criterion = criterion
        self.model_device = model_device(model)
        self.device = self.model_device if device is None else device
        self._target = parse_device(self.device)
        if self._target.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"{device=} but CUDA is not available here: pass device=None to train where the model is")
        self.memory_cache = check_flag("memory_cache", memory_cache)
        check_cache_dir(cache_dir, exists=True)
        self.cache_dir = cache_dir
        self._amp = inputs.amp_options(amp_backend, amp_config, grad_scaler, self._target)
        self.amp_backend = amp_backend
        self.amp_config = amp_config
        self.grad_scaler = grad_scaler
        self.history: dict[str, Any] = {"lr": [], "loss": []}
        self.best_loss: float | None = None
        self.result: History | None = None

    def range_test(
        self,
        train_loader: Any,
        val_loader: Any = None,
        start_lr: float | list[float] | None = None,
        end_lr: float = 10,
        num_iter: int = 100,
        step_mode: str = "exp",
        smooth_f: float = 0.05,
        diverge_th: float = 5,
        accumulation_steps: int = 1,
        non_blocking_transfer: bool = True,
    ) -> None:
        """Sweep every param group's LR from its start to ``end_lr`` over ``num_iter`` steps; fill ``history``.

        Stops after the first step whose smoothed loss exceeds ``diverge_th`` times the best smoothed loss
        (that step is recorded), or at once on a NaN/inf loss.

        Args:
            train_loader: a ``DataLoader`` of ``(inputs, labels, ...)`` batches, or a
                :class:`~lr_finder.compat.TrainDataLoaderIter` (subclass it for other batches).
            val_loader: ``None``, or a ``DataLoader`` / :class:`~lr_finder.compat.ValDataLoaderIter` whose
                mean loss (over samples) is recorded after each step instead of the training loss.
            start_lr: the first LR of every group (one number, or a list with one per group); ``None``
                starts each group at its current LR.
            end_lr: the last LR of every group.
            num_iter: optimizer steps (at least 2).
            step_mode: ``"exp"`` or ``"linear"``.
            smooth_f: weight of the newest loss in the smoothed loss, in [0, 1); 0 disables smoothing.
            diverge_th: the stop factor (> 1).
            accumulation_steps: micro-batches per optimizer step; the recorded loss is their mean.
            non_blocking_transfer: copy batches to the device with ``non_blocking=True``.
        """
        sources = inputs.Sources(train_loader, val_loader)
        mode = step_mode.lower() if isinstance(step_mode, str) else step_mode
        starts = inputs.base_lrs(self.optimizer, start_lr, end_lr, mode)
        settings = RangeTestSettings(
            start_lr=starts[0], end_lr=end_lr, num_iter=num_iter, step_mode=mode, smooth_f=smooth_f,
            diverge_th=diverge_th, adaptive_stop=False, accumulation_steps=accumulation_steps,
            non_blocking_transfer=non_blocking_transfer, **self._amp,
        )
        rule = EmaDivergence(settings.smooth_f, settings.diverge_th)
        with inputs.placed(self.model, self.optimizer, self._target), inputs.loaders_restored(train_loader, val_loader):
            self.history, self.best_loss, self.result = {"lr": [], "loss": []}, None, None
            finder = core.LRFinder(self.model, self.optimizer, self.criterion, None, self.memory_cache,
                                   self.cache_dir, self.grad_scaler, loss_fn=self._loss)
            try:
                finder.run(sources.train, settings, val_loader=sources.val, stop=rule,
                           schedule=group_sweep(starts, settings.end_lr, settings.num_iter, settings.step_mode))
            finally:  # what was recorded is kept on every exit path, as the core keeps it
                self.result = finder.history
                self.history = {"lr": list(finder.history.lr), "loss": rule.smoothed[: finder.history.num_steps]}
                self.best_loss = rule.best if rule.smoothed else None

    def _loss(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        # self.criterion is read on each call, so a criterion replaced after construction is the one used
        inputs_, labels = batch
        return self.criterion(model(inputs_), labels)

    def reset(self) -> None:
        """Nothing left to do: :meth:`range_test` has already restored the model and optimizer. Unlike
        torch-lr-finder's, it does not go back to the state the finder was *built* with (later training is kept).
        """
        logger.debug("reset(): nothing to do, the state was restored when range_test ended")

    def get_suggested_lr(self, method: str = "default") -> float | None:
        """lr_finder's suggested LR (``method``: one of :func:`lr_finder.available_methods`) from the raw
        losses of the last :meth:`range_test`, or ``None`` (the reason is logged). A ``history`` whose LRs
        were changed since (or filled by hand) is analysed as it is.
        """
        lrs = [float(v) for v in self.history["lr"]]
        if not lrs:
            raise RuntimeError("get_suggested_lr() needs a curve: call range_test(train_loader) first")
        if self.result is not None and lrs == list(self.result.lr):
            result = analyze_history(self.result, method)
        else:
            result = analyze(lrs, [float(v) for v in self.history["loss"]], method)
        if result.lr is None:
            logger.warning("No learning rate suggested: %s", result.reason)
        return result.lr

    def plot(
        self,
        skip_start: int = 10,
        skip_end: int = 5,
        log_lr: bool = True,
        show_lr: float | None = None,
        ax: Any = None,
        suggest_lr: bool | str = True,
    ) -> Any:
        """Plot ``history`` without its first ``skip_start`` and last ``skip_end`` points.

        Args:
            skip_start, skip_end: points left out at each end (0 keeps them all).
            log_lr: a logarithmic LR axis.
            show_lr: draw a vertical line at this LR.
            ax: matplotlib axes to draw on; ``None`` makes a figure (shown where there is a display).
            suggest_lr: ``True`` (or ``"steepest"``, as torch-lr-finder spells it): mark torch-lr-finder's
                suggestion, the steepest gradient of the plotted smoothed loss; another method name such as
                ``"default"``: mark lr_finder's suggestion of that method (see :meth:`get_suggested_lr`, which
                gives lr_finder's own ``"steepest"``); ``False``: no suggestion.

        Returns:
            The axes, or ``(axes, suggested_lr)`` when ``suggest_lr`` is set (the LR is ``None`` when a
            method of lr_finder finds none).

        Raises:
            RuntimeError: ``suggest_lr=True`` with fewer than ``skip_start + skip_end + 2`` points.
        """
        for name, value in (("skip_start", skip_start), ("skip_end", skip_end)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise InputError(f"{name}={value!r} cannot be negative: pass a count of points, 0 or more")
        if show_lr is not None and (isinstance(show_lr, bool) or not isinstance(show_lr, numbers.Real)):
            raise InputTypeError(f"show_lr={show_lr!r} must be a learning rate (a float) or None")
        if isinstance(suggest_lr, (bool, np.bool_)):
            suggest_lr = bool(suggest_lr)
        elif suggest_lr not in available_methods():
            raise InputError(f"suggest_lr={suggest_lr!r} must be True, False or one of {available_methods()}")
        lrs, losses = list(self.history["lr"]), list(self.history["loss"])
        if len(lrs) != len(losses):
            raise InputError(f"history has {len(lrs)} LRs but {len(losses)} losses: they must pair up")
        # torch-lr-finder reads True (and "steepest", as its docstring spells it) as its steepest-gradient point
        theirs = suggest_lr in (True, "steepest")
        if theirs and len(lrs) < skip_start + skip_end + 2:
            raise RangeTestError(
                f"Need at least {skip_start + skip_end + 2} iterations to suggest a learning rate. Got {len(lrs)}: "
                "lower skip_start / skip_end, run more iterations, or pass suggest_lr=False"
            )
        end = max(len(lrs) - skip_end, 0)
        lrs, losses = lrs[skip_start:end], losses[skip_start:end]
        suggested, mark = None, None
        if theirs:
            i = int(np.gradient(np.asarray(losses, dtype=float)).argmin())
            suggested, mark = lrs[i], (i, "steepest gradient")
            logger.info("Suggested LR (steepest gradient): %.2E", suggested)
        elif suggest_lr:
            suggested = self.get_suggested_lr(str(suggest_lr))
            if suggested is not None and lrs:
                i = int(np.argmin(np.abs(np.log(np.asarray(lrs, dtype=float)) - np.log(suggested))))
                mark = (i, f"suggested ({suggest_lr})")
                logger.info("Suggested LR (%s): %.2E", suggest_lr, suggested)
        import matplotlib.pyplot as plt

        # torch-lr-finder's figure: exactly one line and at most one scatter point, for code that reads
        # ax.lines / ax.collections; a figure made here is shown where there is a display, else left open
        shown = ax is None
        if shown:
            _, ax = plt.subplots()
        ax.plot(lrs, losses)
        if mark is not None:
            i, label = mark
            ax.scatter(lrs[i], losses[i], s=75, marker="o", color="red", zorder=3, label=label)
            ax.legend()
        if log_lr:
            ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss")
        if show_lr is not None:
            ax.axvline(x=show_lr, color="red")
        if shown:
            report.show()
        return (ax, suggested) if suggest_lr else ax

