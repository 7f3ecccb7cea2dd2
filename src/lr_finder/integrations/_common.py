"""What both framework integrations need: the missing-extra message, RNG isolation, and the range test run
with a trainer's pieces (its settings, its gradient clipping)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from ..batches import LossFn
from ..finder import LRFinder
from ..settings import check_flag


@contextlib.contextmanager
def isolated_rng() -> Iterator[None]:
    """Put the Python, NumPy and torch (CPU and initialised CUDA) RNG states back on exit: the range test
    restores them around its own steps, this also around building a loader or a data module's ``setup``."""
    python, numpy = random.getstate(), np.random.get_state()
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()  # forking would initialise CUDA
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count())) if cuda else []):
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


def trainer_settings(accumulation_steps: int, show_progress: bool, amp_dtype: torch.dtype | None) -> dict[str, Any]:
    """``range_test`` keywords that make the test train the way a trainer will (no ``amp_dtype``: fp32)."""
    amp = {"use_amp": False} if amp_dtype is None else {"use_amp": True, "amp_dtype": amp_dtype}
    return {"accumulation_steps": int(accumulation_steps), "show_progress": show_progress, **amp}


def range_test(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: LossFn, loader: Any, settings: dict[str, Any],
    clip: float | None, clip_by: str | None = "norm", *, verify: bool = False, method: str = "default",
) -> LRFinder:
    """The finished range test of ``model`` with a trainer's optimizer, loss, loader, settings and gradient
    clipping (a positive ``clip``: by norm, or by value with ``clip_by="value"``), which the finder's
    ``verify()`` applies too. With ``verify``, ``finder.verify(loader, method=method)`` follows at once, on the
    same loader (its result is ``finder.verification``)."""
    verify = check_flag("verify", verify)
    limit = clip if clip is not None and clip > 0 else None  # None or 0: no clipping
    by_value = clip_by == "value"
    finder = LRFinder(model, optimizer, None, loss_fn=loss_fn, clip_grad_norm=None if by_value else limit,
                      clip_grad_value=limit if by_value else None)
    finder.range_test(loader, **settings)
    if verify:
        finder.verify(loader, method=method)
    return finder
