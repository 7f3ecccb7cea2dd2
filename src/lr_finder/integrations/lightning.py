"""The range test for a ``LightningModule``: ``find_lr(module, ...)`` before ``fit``, or a callback inside it.

>>> from lr_finder.integrations.lightning import LRFinderCallback, find_lr
>>> finder = find_lr(module, datamodule=dm, end_lr=1, num_iter=100)    # doctest: +SKIP
>>> module.lr = finder.get_suggested_lr()                              # doctest: +SKIP
>>> Trainer(callbacks=[LRFinderCallback()]).fit(module, datamodule=dm)  # doctest: +SKIP

The test trains with the one optimizer of ``configure_optimizers()`` (in any of Lightning's forms; a fresh
one, its groups at their LRs before a scheduler's constructor changed them; the schedulers are not stepped),
the loss of ``training_step`` after the batch-transfer hooks (``self.log`` calls dropped), and the batches of
``train_dataloaders``, ``datamodule`` or the module's ``train_dataloader()``; a batch for which ``training_step``
returns ``None`` is skipped as Lightning skips it (the next batch takes its place; a warning and
``history.settings["skipped_batches"]`` count them). Overrides of ``backward``,
``optimizer_step``, ``optimizer_zero_grad`` or ``configure_gradient_clipping`` are not called (a warning names
them). Inside ``fit`` the trainer's ``accumulate_grad_batches``, ``precision`` (``"16-mixed"`` /
``"bf16-mixed"`` as autocast), ``gradient_clip_val`` / ``gradient_clip_algorithm`` and progress bar apply too.
The module's parameters, buffers, gradients, modes and the RNG states come back bit for bit: ``Trainer.fit``
after ``find_lr`` gives the losses it would have given without it (see the README).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping
from typing import Any

import torch

from .._logging import logger
from ..batches import LossFn
from ..distributed import find_ddp
from ..errors import InputError, InputTypeError, require
from ..finder import LRFinder
from ..settings import check_flag
from ._common import isolated_rng, range_test, trainer_settings

require("lightning.pytorch", "lightning", "lr_finder.integrations.lightning")

from lightning.pytorch import Callback, LightningDataModule, LightningModule  # noqa: E402
from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy  # noqa: E402
from lightning.pytorch.trainer.connectors.data_connector import _process_dataloader  # noqa: E402
from lightning.pytorch.trainer.states import RunningStage, TrainerFn  # noqa: E402
from lightning.pytorch.utilities import CombinedLoader  # noqa: E402
from lightning.pytorch.utilities.parsing import lightning_getattr, lightning_hasattr, lightning_setattr  # noqa: E402

__all__ = ["LRFinderCallback", "find_lr", "optimizer_of"]

_NOT_CALLED = ("backward", "optimizer_step", "optimizer_zero_grad", "configure_gradient_clipping")
_LOG_METHODS = ("log", "log_dict")


def find_lr(
    module: Any, train_dataloaders: Any = None, datamodule: Any = None, *, verify: bool = False,
    **range_test_kwargs: Any
) -> LRFinder:
    """Run the LR range test on ``module`` with its own optimizer and ``training_step``; change nothing.

    Args:
        module: a ``LightningModule`` with ``training_step`` and ``configure_optimizers``.
        train_dataloaders: the training loader (as for ``Trainer.fit``); or a ``LightningDataModule``.
        datamodule: a ``LightningDataModule`` whose ``train_dataloader()`` is used.
            With neither, the module's own ``train_dataloader()``.
        verify: also check the suggestion by training (:meth:`lr_finder.LRFinder.verify`) right after the
            test, on the same loader; the result is ``finder.verification`` (its ``lr``).
        **range_test_kwargs: options of :meth:`lr_finder.LRFinder.range_test`.

    Returns:
        The finished :class:`~lr_finder.LRFinder` (``history``, ``get_suggested_lr()``, ``plot()``).

    Raises:
        InputTypeError / InputError: not a LightningModule, no ``training_step`` or
            ``configure_optimizers``, manual optimization, several optimizers or loaders, no data;
            before anything is trained.
    """
    _check_module(module)
    verify = check_flag("verify", verify)
    if train_dataloaders is not None and datamodule is not None:
        raise InputError("give train_dataloaders or datamodule, not both (as for Trainer.fit)")
    with isolated_rng():
        loader = _single_loader(_standalone_loader(module, train_dataloaders, datamodule))
        return _run(module, loader, range_test_kwargs, verify=verify)


class LRFinderCallback(Callback):
    """Run the range test when ``fit`` starts and train with the suggested LR.

    The suggestion is written to the module's LR attribute or hyper-parameter (``attr_name``, else ``lr``
    or ``learning_rate``; the datamodule's too when it has one), and the trainer's optimizers and LR
    schedulers are built again from ``configure_optimizers``, so that they start from it. When no LR is
    suggested, a warning gives the reason and nothing is changed. The finder is kept as :attr:`finder`
    (plot it, save it), the LR as :attr:`lr`.

    Under ``strategy="ddp"`` every process runs the test on the strategy's DDP model in lock-step, on its
    share of the batches (the distributed sampler ``fit`` uses): every rank records the same curve and applies
    the same LR. A fit resumed from a checkpoint (``fit(..., ckpt_path=...)``) skips the test with a warning:
    the checkpoint's optimizer and scheduler state, restored after ``on_fit_start``, set the LR it continues
    with.

    Args:
        attr_name: the attribute ``configure_optimizers`` reads the LR from; ``""`` looks for ``lr``,
            then ``learning_rate``.
        update_attr: write the suggestion to the module (``False``: only run the test).
        method: the suggestion method (see :func:`lr_finder.available_methods`).
        verify: check the suggestion by training (:meth:`lr_finder.LRFinder.verify`) right after the test,
            on the same loader, and apply ``finder.verification.lr`` instead when it finds one.
        **range_test_kwargs: options of :meth:`lr_finder.LRFinder.range_test`; they override the ones
            read from the trainer.
    """

    def __init__(
        self, attr_name: str = "", update_attr: bool = True, method: str = "default", verify: bool = False,
        **range_test_kwargs: Any
    ) -> None:
        self.attr_name = attr_name
        self.update_attr = update_attr
        self.method = method
        self.verify = check_flag("verify", verify)
        self.range_test_kwargs = range_test_kwargs
        self.finder: LRFinder | None = None
        self.lr: float | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.find(trainer, pl_module)

    def find(self, trainer: Any, pl_module: Any) -> None:
        """Run the test with ``trainer``'s data and settings and, when it suggests an LR, apply it."""
        if trainer.fast_dev_run:
            logger.info("fast_dev_run is on: the LR range test is skipped")
            return
        if isinstance(trainer.strategy, (DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy)):
            raise InputError(
                f"the trainer's strategy is {type(trainer.strategy).__name__}, whose model and optimizer wrappers "
                "exist only inside fit: run find_lr(module, ...) on one device without it, then fit with the "
                "LR it suggests"
            )
        model = trainer.strategy.model
        if trainer.world_size > 1 and find_ddp(model) is None:
            raise InputError(
                f"the trainer runs in {trainer.world_size} processes with {type(trainer.strategy).__name__}, "
                "which gives no DistributedDataParallel model to run the ranks in lock-step: use strategy='ddp', "
                "or run find_lr in a single process and launch the distributed fit with the LR it suggests"
            )
        if trainer.ckpt_path is not None:
            # the checkpoint's optimizer and scheduler states are loaded after on_fit_start: an LR set here
            # would be overwritten, and rebuilding them to apply it would drop the resumed momentum and schedule
            warnings.warn(
                f"the fit resumes from {trainer.ckpt_path}, whose optimizer state sets the learning rate: the LR "
                "range test is skipped (run it on a fresh fit, or find_lr(module, ...) before one)",
                stacklevel=2,
            )
            return
        _check_module(pl_module)
        attr = _lr_attribute(pl_module, self.attr_name) if self.update_attr else None
        dtype = {"16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(str(trainer.precision))
        settings = trainer_settings(trainer.accumulate_grad_batches, trainer.progress_bar_callback is not None, dtype)
        with isolated_rng():
            loader = _single_loader(_fit_loader(trainer, pl_module))
            if trainer.world_size > 1:  # each rank's share, as fit draws it (a DistributedSampler)
                loader = _process_dataloader(trainer, TrainerFn.FITTING, RunningStage.TRAINING, loader)
            self.finder = _run(pl_module, loader, {**settings, **self.range_test_kwargs}, trainer.gradient_clip_val,
                               trainer.gradient_clip_algorithm, verify=self.verify, method=self.method,
                               model=model, strategy=trainer.strategy if model is not pl_module else None)
        self.lr = self.finder.get_suggested_lr(self.method)
        checked = self.finder.verification
        if checked is not None:
            if checked.lr is not None:
                self.lr = checked.lr
            elif self.lr is not None:
                logger.info("verify: no candidate LR trained stably (%s); the suggestion is kept", checked.reason)
        if attr is not None and self.lr is not None:
            _apply(trainer, pl_module, attr, self.lr)


def _apply(trainer: Any, module: Any, attr: str, lr: float) -> None:
    """Write ``lr`` to the module and build the trainer's optimizers and schedulers again with it."""
    old = lightning_getattr(module, attr)
    before = _base_lrs(trainer.optimizers)
    lightning_setattr(module, attr, lr)
    trainer.strategy.setup_optimizers(trainer)
    logger.info("Learning rate set to %.3g (%s)", lr, attr)
    if before == _base_lrs(trainer.optimizers) and old != lr:
        warnings.warn(
            f"the suggested LR {lr:.3g} was written to {attr!r}, but the optimizer configure_optimizers() builds "
            f"did not change: make configure_optimizers read self.{attr}",
            stacklevel=3,
        )


def _base_lrs(optimizers: list[torch.optim.Optimizer]) -> list[float]:
    return [float(g.get("initial_lr", g["lr"])) for opt in optimizers for g in opt.param_groups]


def _run(
    module: Any, loader: Any, settings: dict[str, Any], clip: float | None = None, clip_by: str | None = None, *,
    verify: bool = False, method: str = "default", model: torch.nn.Module | None = None, strategy: Any = None,
) -> LRFinder:
    """The range test (and, with ``verify``, the verification) of ``module`` on ``loader``. ``model``: what the
    core trains, the strategy's DDP wrapper of ``module`` inside a distributed fit (``training_step`` then
    runs through it, via ``strategy``, as in fit)."""
    optimizer = optimizer_of(module)
    for name in _NOT_CALLED:
        if _overrides(module, name):
            warnings.warn(
                f"{type(module).__name__} overrides {name}(), which the range test does not call: it does its own "
                "backward pass and optimizer step with the optimizer of configure_optimizers()",
                stacklevel=3,
            )
    # self.log / self.log_dict do nothing during the test: outside fit they would warn or raise, inside it
    # they would write the test's values into the trainer's metrics
    saved = {name: module.__dict__[name] for name in _LOG_METHODS if name in module.__dict__}
    module.__dict__.update(dict.fromkeys(_LOG_METHODS, lambda *args, **kwargs: None))
    try:
        finder = range_test(module if model is None else model, optimizer, _step_loss(module, strategy), loader,
                            settings, clip, clip_by)
        if verify:
            finder.verify(loader, method=method)
        return finder
    finally:
        for name in _LOG_METHODS:
            module.__dict__.pop(name, None)
        module.__dict__.update(saved)


def _overrides(module: Any, name: str) -> bool:
    return getattr(type(module), name, None) is not getattr(LightningModule, name, None)


def _check_module(module: Any) -> None:
    if not isinstance(module, LightningModule):
        raise InputTypeError(
            f"module must be a lightning.pytorch.LightningModule, got {type(module).__name__}: for a plain "
            "torch.nn.Module, use lr_finder.LRFinder(model, optimizer, criterion)"
        )
    for hook in ("training_step", "configure_optimizers"):
        if not _overrides(module, hook):
            raise InputError(
                f"{type(module).__name__} does not define {hook}(): the range test trains with the loss of "
                "training_step and the optimizer of configure_optimizers; define both"
            )
    if not module.automatic_optimization:
        raise InputError(
            f"{type(module).__name__} uses manual optimization (automatic_optimization=False): its training_step "
            "steps the optimizers itself, so the range test cannot set the LR per step; run it on a module "
            "with automatic optimization"
        )


def optimizer_of(module: Any) -> torch.optim.Optimizer:
    """The one optimizer of ``module.configure_optimizers()``, its groups at their LRs before any scheduler;
    an :class:`~lr_finder.errors.InputError` for none or several, or when it needs a ``Trainer``."""
    try:
        config = module.configure_optimizers()
    except RuntimeError as exc:
        if "not attached to a `Trainer`" not in str(exc):
            raise
        raise InputError(
            f"configure_optimizers() needs a Trainer ({exc}): use LRFinderCallback() in Trainer(callbacks=[...]), "
            "which runs the range test when fit starts"
        ) from exc
    optimizers = _optimizers_in(config)
    if len(optimizers) != 1:
        raise InputError(
            f"configure_optimizers() returned {len(optimizers)} optimizers: the range test sweeps the LR of one; "
            "return only the optimizer to test (e.g. behind a flag), or test each in its own run"
        )
    optimizer = optimizers[0]
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InputTypeError(f"configure_optimizers() gave {type(optimizer).__name__}, not a torch.optim.Optimizer")
    for group in optimizer.param_groups:  # a scheduler's constructor already applied its first factor
        if "initial_lr" in group:
            group["lr"] = group["initial_lr"]
    return optimizer


def _optimizers_in(config: Any) -> list[Any]:
    """The optimizers in each form ``configure_optimizers`` may return."""
    if config is None:
        return []
    if isinstance(config, Mapping):
        if "optimizer" not in config:
            raise InputError(f"configure_optimizers() returned a dict without 'optimizer': keys {sorted(config)}")
        return [config["optimizer"]]
    if isinstance(config, (list, tuple)):
        if len(config) == 2 and isinstance(config[0], (list, tuple)):  # ([optimizers], [schedulers])
            return list(config[0])
        return [item for entry in config for item in _optimizers_in(entry)]
    return [config]


def _step_loss(module: Any, strategy: Any = None) -> LossFn:
    """``loss_fn(model, batch)``: the batch hooks, then the loss of ``training_step(batch, batch_idx)`` (through
    ``strategy``'s model wrapper when given); ``None`` when ``training_step`` skips the batch, which the range
    test then skips too, as Lightning does."""
    batch_indices = itertools.count()

    def loss(model: torch.nn.Module, batch: Any) -> torch.Tensor | None:
        batch = module.on_before_batch_transfer(batch, 0)
        batch = module.transfer_batch_to_device(batch, module.device, 0)
        batch = module.on_after_batch_transfer(batch, 0)
        batch_idx = next(batch_indices)
        out = module.training_step(batch, batch_idx) if strategy is None else strategy.training_step(batch, batch_idx)
        if isinstance(out, Mapping):
            if "loss" not in out:
                raise InputError(f"training_step returned a dict without 'loss' (keys {sorted(out)}): add it")
            out = out["loss"]
        return out  # type: ignore[no-any-return]

    return loss


def _lr_attribute(module: Any, name: str) -> str:
    names = (name,) if name else ("lr", "learning_rate")
    for candidate in names:
        if lightning_hasattr(module, candidate):
            return candidate
    raise InputError(
        f"{type(module).__name__} has no {' or '.join(map(repr, names))} attribute or hyper-parameter to write the "
        "suggestion to: add one that configure_optimizers reads (self.lr = ...), pass attr_name='...', or "
        "update_attr=False"
    )


def _standalone_loader(module: Any, train_dataloaders: Any, datamodule: Any) -> Any:
    if isinstance(train_dataloaders, LightningDataModule):  # Trainer.fit accepts it there too
        train_dataloaders, datamodule = None, train_dataloaders
    if datamodule is not None:
        if not isinstance(datamodule, LightningDataModule):
            raise InputTypeError(f"datamodule must be a LightningDataModule, got {type(datamodule).__name__}")
        datamodule.prepare_data()
        datamodule.setup("fit")
        return datamodule.train_dataloader()
    if train_dataloaders is not None:
        return train_dataloaders
    if _overrides(module, "train_dataloader"):
        return module.train_dataloader()
    raise InputError(
        f"no training data: pass find_lr(module, train_dataloaders=...) or datamodule=..., or define "
        f"{type(module).__name__}.train_dataloader()"
    )


def _fit_loader(trainer: Any, module: Any) -> Any:
    """The train loader(s) ``fit`` was given: its data source, else the datamodule or the module."""
    source = trainer.fit_loop._data_source  # no public handle on what fit() was given
    if source.is_defined():
        return source.dataloader()
    if trainer.datamodule is not None:
        return trainer.datamodule.train_dataloader()
    return _standalone_loader(module, None, None)


def _single_loader(loaders: Any) -> Any:
    """One loader from what Lightning accepts as train loaders; a collection of several is refused."""
    if isinstance(loaders, CombinedLoader):
        loaders = loaders.iterables
    if isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        if len(loaders) != 1:
            raise InputError(
                f"{len(loaders)} train loaders were given: the range test draws its batches from one; pass that one"
            )
        return loaders[0]
    if loaders is None:
        raise InputError("the train loader is None: return a DataLoader from train_dataloader()")
    return loaders
