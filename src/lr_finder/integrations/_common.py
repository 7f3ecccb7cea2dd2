"""What both framework integrations need: the missing-extra message, RNG isolation, gradient clipping."""

from __future__ import annotations

import contextlib
import importlib
import random
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

import numpy as np
import torch


def require(module: str, extra: str, what: str) -> ModuleType:
    """``import module``, or an ``ImportError`` of one line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{what} needs {module}: pip install 'lr-finder[{extra}]'") from None


@contextlib.contextmanager
def isolated_rng() -> Iterator[None]:
    """Put the Python, NumPy and torch (CPU and initialised CUDA) RNG states back on exit.

    The range test restores the RNGs around its own steps; this also covers what an integration does
    before and after them (building a loader, calling a data module's ``setup``), so that the user's
    training afterwards draws the same random numbers as it would have without the finder.
    """
    python, numpy = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=_cuda_devices()):
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


def _cuda_devices() -> list[int]:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return list(range(torch.cuda.device_count()))
    return []


@contextlib.contextmanager
def clipped_gradients(
    optimizer: torch.optim.Optimizer, params: Iterable[torch.nn.Parameter], value: float | None, by: str = "norm"
) -> Iterator[None]:
    """Clip the gradients of ``params`` before every step of ``optimizer`` while the block runs.

    A step pre-hook runs inside ``optimizer.step()``, which a GradScaler calls after unscaling and only
    for finite gradients: the clipping sees the true gradients, as a trainer's own clipping does. The
    hook is removed on exit; nothing is clipped when ``value`` is ``None`` or not positive.
    """
    if value is None or value <= 0:
        yield
        return
    params = [p for p in params if p.requires_grad]
    clip = torch.nn.utils.clip_grad_value_ if by == "value" else torch.nn.utils.clip_grad_norm_

    def hook(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        clip(params, value)

    handle = optimizer.register_step_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def amp_settings(dtype: torch.dtype | None) -> dict[str, Any]:
    """``range_test`` keywords for a trainer's mixed precision: ``None`` means full precision."""
    if dtype is None:
        return {"use_amp": False}
    return {"use_amp": True, "amp_dtype": dtype}
