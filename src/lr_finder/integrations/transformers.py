"""``find_lr(trainer)``: the range test with a Hugging Face ``Trainer``'s own model, optimizer, data and loss.

>>> from lr_finder.integrations.transformers import find_lr
>>> finder = find_lr(trainer, end_lr=1e-1, num_iter=100)      # doctest: +SKIP
>>> trainer.args.learning_rate = finder.get_suggested_lr()    # doctest: +SKIP
>>> trainer.train()                                            # doctest: +SKIP

What the test uses, all taken from the trainer:

* the model (``trainer.model``), trained in place and restored bit for bit;
* the optimizer ``trainer.train()`` would build (``create_optimizer``: the weight-decay grouping, the
  optimizer class and its arguments from ``TrainingArguments``, or a subclass's override), or the one
  given as ``Trainer(optimizers=(optimizer, scheduler))``; every param group follows the sweep;
* the batches of ``get_train_dataloader()`` (collator, sampler, column removal, batch size);
* the loss of ``compute_loss`` (label smoothing, ``compute_loss_func``, a subclass's override), under
  ``compute_loss_context_manager``;
* ``gradient_accumulation_steps`` (each recorded point is one optimizer step; its loss is the mean of the
  micro-batch losses), ``max_grad_norm`` (the gradients are clipped before each step, as in training),
  ``fp16`` / ``bf16`` (autocast with that dtype, a GradScaler for fp16 on CUDA) and ``disable_tqdm``.
  Keywords given to ``find_lr`` (``accumulation_steps``, ``use_amp``, ``amp_dtype``, ``show_progress``
  and every other ``range_test`` option) take precedence.

``compute_loss`` is called without ``num_items_in_batch``: each micro-batch's loss is its own mean, so with
gradient accumulation and batches of unequal token counts the recorded loss is a mean of means, where
``trainer.train()`` weighs each token equally. The curve's shape, and so the suggestion, is the same.

What is left as found: the model, ``trainer.optimizer`` and ``trainer.lr_scheduler`` (``None`` stays
``None``, so ``trainer.train()`` builds fresh ones with the new LR), the state of an optimizer you gave
the trainer, the Python / NumPy / torch RNGs, and the accelerator's list of prepared loaders. Run it
before ``trainer.train()``: the losses of that training are then those it would have had without the test.

The LR and the trainer's schedule: the test sweeps the optimizer's LR directly, without the trainer's
warm-up or scheduler. Use the suggestion as ``TrainingArguments.learning_rate``, which is the *peak* of the
trainer's schedule: the LR after ``warmup_steps`` / ``warmup_ratio``, from which the default ``"linear"``
schedule decays to 0. Warm-up only makes the first steps gentler than the test's, so the suggestion is a
safe peak. An optimizer you passed in ``optimizers=(...)`` does not read ``args.learning_rate``: build it
again with the new LR (and its scheduler with it), or use :func:`lr_finder.apply_suggested_lr` on it
before building the scheduler.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..errors import InputError, InputTypeError
from ..finder import LRFinder
from ._common import amp_settings, clipped_gradients, isolated_rng, require

_hf = require("transformers", "transformers", "lr_finder.integrations.transformers")

__all__ = ["find_lr"]


def find_lr(trainer: Any, **range_test_kwargs: Any) -> LRFinder:
    """Run the LR range test with ``trainer``'s model, optimizer, train loader and loss; change nothing.

    Args:
        trainer: a ``transformers.Trainer`` (or subclass) with a ``train_dataset``, not yet training.
        **range_test_kwargs: options of :meth:`lr_finder.LRFinder.range_test` (``start_lr``, ``end_lr``,
            ``num_iter``, ...); they override what is read from ``trainer.args``.

    Returns:
        The finished :class:`~lr_finder.LRFinder`: ``history``, ``get_suggested_lr()``, ``plot()``, ``save()``.

    Raises:
        InputTypeError: ``trainer`` is not a ``transformers.Trainer``.
        InputError: no train dataset, a multi-process or DeepSpeed/FSDP trainer, an optimizer the test
            cannot drive; all before anything is trained or changed.
    """
    _check_trainer(trainer)
    settings = {**_settings_from(trainer.args), **range_test_kwargs}
    with isolated_rng(), _accelerator_loaders_kept(trainer):
        loader = trainer.get_train_dataloader()
        optimizer = _optimizer_of(trainer)
        finder = LRFinder(trainer.model, optimizer, None, loss_fn=_loss_of(trainer))
        with clipped_gradients(optimizer, trainer.model.parameters(), trainer.args.max_grad_norm):
            finder.range_test(loader, **settings)
    return finder


def _check_trainer(trainer: Any) -> None:
    if not isinstance(trainer, _hf.Trainer):
        raise InputTypeError(
            f"trainer must be a transformers.Trainer, got {type(trainer).__name__}: for a plain model, use "
            "lr_finder.LRFinder(model, optimizer, criterion)"
        )
    own_loader = type(trainer).get_train_dataloader is not _hf.Trainer.get_train_dataloader
    if trainer.train_dataset is None and not own_loader:
        raise InputError(
            "trainer.train_dataset is None: the range test trains on the trainer's train loader; pass "
            "Trainer(..., train_dataset=...) or set trainer.train_dataset first"
        )
    args = trainer.args
    if args.world_size > 1:
        raise InputError(
            f"the trainer runs in {args.world_size} processes: run find_lr in a single process (e.g. a "
            "notebook or `python script.py`), then launch the distributed training with the LR it suggests"
        )
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        raise InputError(
            "the trainer uses DeepSpeed or FSDP, whose optimizer and model wrappers only exist inside "
            "trainer.train(): run find_lr with the same TrainingArguments without them, on one process"
        )
    optim = str(getattr(args.optim, "value", args.optim))
    if "lomo" in optim.lower():
        raise InputError(
            f"TrainingArguments(optim={optim!r}) updates the weights inside backward(), so the range test "
            "cannot set the LR per step: run find_lr with optim='adamw_torch' or 'sgd'"
        )


def _settings_from(args: Any) -> dict[str, Any]:
    """``range_test`` keywords that make the test train the way ``trainer.train()`` will."""
    dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
    return {
        "accumulation_steps": int(args.gradient_accumulation_steps),
        "show_progress": not args.disable_tqdm,
        **amp_settings(dtype),
    }


def _optimizer_of(trainer: Any) -> torch.optim.Optimizer:
    """The optimizer ``trainer.train()`` would use, leaving ``trainer.optimizer``/``lr_scheduler`` as they were.

    ``create_optimizer`` stores what it builds on the trainer; left there, ``trainer.train()`` would reuse
    it (with its LR of before the test), so the attributes are put back at once.
    """
    before = (trainer.optimizer, trainer.lr_scheduler)
    try:
        optimizer = trainer.create_optimizer() or trainer.optimizer
    finally:
        trainer.optimizer, trainer.lr_scheduler = before
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InputTypeError(
            f"trainer.create_optimizer() gave {type(optimizer).__name__}, not a torch.optim.Optimizer: the range "
            "test sets the LR of its param groups at each step"
        )
    return optimizer


def _loss_of(trainer: Any) -> Callable[[torch.nn.Module, Any], torch.Tensor]:
    def loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        with trainer.compute_loss_context_manager():
            value: torch.Tensor = trainer.compute_loss(model, batch)
        return value

    return loss


@contextlib.contextmanager
def _accelerator_loaders_kept(trainer: Any) -> Iterator[None]:
    """``get_train_dataloader`` registers its loader with the accelerator, which saves the sampler state of
    every registered loader in a checkpoint; the test's loader is dropped from that list afterwards."""
    registered = getattr(getattr(trainer, "accelerator", None), "_dataloaders", None)
    before = list(registered) if isinstance(registered, list) else None
    try:
        yield
    finally:
        if before is not None and isinstance(registered, list):
            registered[:] = before
