"""torch-lr-finder's arguments turned into the core's (AMP options, loaders, start LRs, the device), checked
before anything is trained."""

from __future__ import annotations

import contextlib
import math
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..errors import InputError, InputTypeError
from ..loaders import LoaderBookkeeping, loader_generators
from ..settings import check_lr
from ..validation import same_device
from .iterators import TrainDataLoaderIter, ValDataLoaderIter

_AMP_CONFIG_KEYS = ("device_type", "dtype", "enabled", "cache_enabled")


def amp_options(backend: Any, config: Any, grad_scaler: Any, device: torch.device) -> dict[str, Any]:
    """``use_amp`` (and ``amp_dtype``) for the core from torch-lr-finder's ``amp_backend`` and ``amp_config``."""
    if backend is None:
        if config is not None or grad_scaler is not None:
            warnings.warn(
                "amp_config / grad_scaler are ignored without amp_backend='torch': the test runs in fp32",
                stacklevel=3,
            )
        return {"use_amp": False}
    if backend == "apex":
        raise InputError(
            "amp_backend='apex' is not supported (NVIDIA apex.amp is deprecated): use amp_backend='torch', "
            "amp_config={'device_type': 'cuda', 'dtype': torch.float16}, grad_scaler=torch.amp.GradScaler('cuda')"
        )
    if backend != "torch":
        raise InputError(f"amp_backend={backend!r} is not a mixed-precision backend: pass 'torch' or None")
    config = {} if config is None else config
    if not isinstance(config, dict):
        raise InputTypeError(f"amp_config={config!r} must be a dict of torch.autocast arguments or None")
    unknown = sorted(set(config) - set(_AMP_CONFIG_KEYS))
    if unknown:
        raise InputError(f"amp_config keys {unknown} are not supported: use only {list(_AMP_CONFIG_KEYS)}")
    wanted = config.get("device_type", device.type)
    if wanted != device.type:
        raise InputError(
            f"amp_config device_type={wanted!r} but the model trains on {device}: pass "
            f"device_type={device.type!r} or move the model"
        )
    if not config.get("enabled", True):
        return {"use_amp": False}
    if device.type not in ("cuda", "cpu"):
        raise InputError(f"mixed precision on {device.type} is not supported: pass amp_backend=None")
    dtype = config.get("dtype", torch.float16 if device.type == "cuda" else torch.bfloat16)
    if dtype not in (torch.float16, torch.bfloat16):
        raise InputError(f"amp_config dtype={dtype!r} must be torch.float16 or torch.bfloat16")
    return {"use_amp": True, "amp_dtype": dtype}


def _accepted(loader: Any, ours: type) -> bool:
    """A DataLoader, an instance of ``ours``, or of torch-lr-finder's class of the same name when that package
    is loaded (its subclasses work here too)."""
    theirs = getattr(sys.modules.get("torch_lr_finder.lr_finder"), ours.__name__, None)
    return isinstance(loader, (DataLoader, ours)) or (isinstance(theirs, type) and isinstance(loader, theirs))


class _Passes:
    """A re-iterable whose every ``iter()`` is ``start()``: the core cycles it and reads it in full."""

    def __init__(self, start: Callable[[], Iterator[Any]], size: int | None = None) -> None:
        self._start, self._size = start, size

    def __iter__(self) -> Iterator[Any]:
        return self._start()

    def __len__(self) -> int:
        if self._size is None:
            raise TypeError("no length")
        return self._size


class Sources:
    """The core's train and val loaders from torch-lr-finder's kinds: a ``DataLoader`` or a
    :class:`TrainDataLoaderIter` / :class:`ValDataLoaderIter`; anything else is refused, as torch-lr-finder does.

    The iterators over DataLoaders are made when the sweep starts, train then val, as torch-lr-finder makes
    them: ``iter(loader)`` draws from the global RNG, so the same draws in the same order give the same
    dropout masks and the same losses; made after the snapshot, those draws are also undone with the rest.
    """

    def __init__(self, train_loader: Any, val_loader: Any) -> None:
        if not _accepted(train_loader, TrainDataLoaderIter):
            raise InputError(
                f"`train_loader` has unsupported type: {type(train_loader).__name__}. Pass a "
                "torch.utils.data.DataLoader or a subclass of lr_finder.compat.TrainDataLoaderIter (override "
                "inputs_labels_from_batch for other batches); lr_finder.LRFinder takes any iterable of batches"
            )
        if val_loader is not None and not _accepted(val_loader, ValDataLoaderIter):
            raise InputError(
                f"`val_loader` has unsupported type: {type(val_loader).__name__}. Pass a torch.utils.data."
                "DataLoader or a subclass of lr_finder.compat.ValDataLoaderIter (override "
                "inputs_labels_from_batch for other batches), or None"
            )
        self._loaders = train_loader, val_loader
        self._val_iter: Any = None
        sized = isinstance(train_loader, DataLoader) and hasattr(train_loader.sampler, "__len__")
        self.train = _Passes(self._start_train, len(train_loader) if sized else None)
        self.val = None if val_loader is None else _Passes(lambda: iter(self._val_iter))

    def _start_train(self) -> Iterator[Any]:
        train, val = self._loaders
        it = TrainDataLoaderIter(train) if isinstance(train, DataLoader) else train
        if val is not None and self._val_iter is None:  # the core starts the train loader first
            self._val_iter = ValDataLoaderIter(val) if isinstance(val, DataLoader) else val
        return iter(it)


@contextlib.contextmanager
def loaders_restored(*loaders: Any) -> Iterator[None]:
    """Put back what iterating the users' DataLoaders changes: their shuffling generators' states and a
    persistent-workers iterator the test created (the core does this for loaders it is given directly)."""
    data_loaders = [getattr(loader, "data_loader", loader) for loader in loaders if loader is not None]
    states = [(g, g.get_state()) for loader in data_loaders for g in loader_generators(loader)]
    books = [LoaderBookkeeping(loader) for loader in data_loaders]
    try:
        yield
    finally:
        for g, state in states:
            g.set_state(state)
        for book in books:
            book.restore()


def base_lrs(optimizer: torch.optim.Optimizer, start_lr: Any, end_lr: Any, step_mode: str) -> list[float]:
    """Each param group's first LR: ``start_lr`` (one number, or a list with one per group), or with
    ``start_lr=None`` the LR the group has now. Checked against ``end_lr`` before anything is trained."""
    groups = optimizer.param_groups
    source = "start_lr"
    if start_lr is None:
        values, source = [float(g["lr"]) for g in groups], "the optimizer's LR (start_lr=None)"
    elif isinstance(start_lr, (list, tuple)):
        if len(start_lr) != len(groups):
            raise InputError(
                f"start_lr has {len(start_lr)} values but the optimizer has {len(groups)} param groups: "
                "pass one number, or one per group"
            )
        values = [check_lr(v, f"start_lr[{i}]") for i, v in enumerate(start_lr)]
    else:
        values = [check_lr(start_lr, "start_lr")] * len(groups)
    end = check_lr(end_lr, "end_lr")
    for i, value in enumerate(values):
        if not (math.isfinite(value) and (value > 0 or (step_mode == "linear" and i > 0 and value == 0))):
            raise InputError(
                f"param group {i} starts at lr={value!r} ({source}): the sweep needs a positive start; "
                "pass start_lr=1e-7 (or one per group)"
            )
        if value >= end:
            raise InputError(
                f"end_lr={end_lr!r} must be greater than param group {i}'s start lr={value!r} ({source}): "
                "raise end_lr or pass a lower start_lr"
            )
    return values


@contextlib.contextmanager
def placed(model: torch.nn.Module, optimizer: torch.optim.Optimizer, target: torch.device) -> Iterator[None]:
    """The model on ``target`` for the test and back where it was afterwards, on every exit path; a model
    that cannot move there and come back is refused first."""
    devices = {t.device for t in [*model.parameters(), *model.buffers()]}
    if not devices or all(same_device(d, target) for d in devices):
        yield
        return
    if len(devices) > 1:
        raise InputError(
            f"device={str(target)!r} but the model spans {sorted(map(str, devices))}: pass device=None to train it "
            "where it is"
        )
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and not same_device(value.device, target):
                raise InputError(
                    f"device={str(target)!r} but the optimizer's state ({key!r}) is on {value.device}: move the "
                    "model first and build the optimizer after, or pass device=None"
                )
    (home,) = devices
    try:
        model.to(target)
        yield
    finally:
        model.to(home)
