"""``find_lr(trainer)``: the range test with a Hugging Face ``Trainer``'s own model, optimizer, data and loss.

>>> from lr_finder.integrations.transformers import find_lr
>>> finder = find_lr(trainer, end_lr=1e-1, num_iter=100)      # doctest: +SKIP
>>> trainer.args.learning_rate = finder.get_suggested_lr()    # doctest: +SKIP
>>> trainer.train()                                            # doctest: +SKIP

The test trains ``trainer.model`` with the optimizer ``trainer.train()`` would build (``create_optimizer``, or
the one given in ``optimizers=(...)``), the batches of ``get_train_dataloader()`` and the loss of
``compute_loss`` (under ``compute_loss_context_manager``), following ``gradient_accumulation_steps``,
``max_grad_norm``, ``fp16`` / ``bf16`` and ``disable_tqdm``; ``find_lr``'s keywords take precedence.
``compute_loss`` is called without ``num_items_in_batch``: with accumulation the recorded loss is a mean of
the micro-batch means (the curve's shape, and so the suggestion, is the same).

Left as found: the model, ``trainer.optimizer`` and ``trainer.lr_scheduler`` (``None`` stays ``None``, so
``trainer.train()`` builds fresh ones with the new LR), the state of an optimizer you gave the trainer, the
RNGs, and the accelerator's list of prepared loaders. The suggestion is a safe peak for
``TrainingArguments.learning_rate`` (the LR after the warm-up); an optimizer given in ``optimizers=(...)``
does not read it: build it again with the new LR (see the README).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..errors import InputError, InputTypeError, require
from ..finder import LRFinder
from ._common import isolated_rng, range_test, trainer_settings

_hf = require("transformers", "transformers", "lr_finder.integrations.transformers")

__all__ = ["find_lr"]


def find_lr(trainer: Any, *, verify: bool = False, **range_test_kwargs: Any) -> LRFinder:
    """Run the LR range test with ``trainer``'s model, optimizer, train loader and loss; change nothing.

    Args:
        trainer: a ``transformers.Trainer`` (or subclass) with a ``train_dataset``, not yet training.
        verify: also check the suggestion by training (:meth:`lr_finder.LRFinder.verify`) right after the
            test, on the same train loader; the result is ``finder.verification`` (its ``lr``).
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
    args = trainer.args
    dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else None
    settings = {**trainer_settings(args.gradient_accumulation_steps, not args.disable_tqdm, dtype), **range_test_kwargs}
    # get_train_dataloader registers its loader with the accelerator, which saves the sampler state of every
    # registered loader in a checkpoint: the test's loader is dropped from that list afterwards (accelerate
    # has no public way to unregister a loader)
    registered = trainer.accelerator._dataloaders
    before = list(registered)
    with isolated_rng():
        try:
            loader = trainer.get_train_dataloader()
            optimizer = _optimizer_of(trainer)
            return range_test(trainer.model, optimizer, _loss_of(trainer), loader, settings, args.max_grad_norm,
                              verify=verify)
        finally:
            registered[:] = before


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
            f"the trainer runs in {args.world_size} processes, and before trainer.train() its model has no "
            "DistributedDataParallel wrapper to run them in lock-step: run find_lr in a single process (e.g. a "
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


def _optimizer_of(trainer: Any) -> torch.optim.Optimizer:
    """The optimizer ``trainer.train()`` would use. ``create_optimizer`` stores what it builds on the trainer,
    where ``trainer.train()`` would reuse it with its old LR: ``optimizer`` and ``lr_scheduler`` are put back."""
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
            return trainer.compute_loss(model, batch)  # type: ignore[no-any-return]

    return loss

