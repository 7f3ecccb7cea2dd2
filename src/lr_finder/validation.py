"""Argument checks, run before any training. Each message quotes the value and names the fix."""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch

from ._logging import logger
from .errors import InputError, InputTypeError
from .schedule import STEP_MODES


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{name}={value!r} must be a number")
    return float(value)


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"{name}={value!r} must be an int")
    return int(value)


def check_range_args(
    *,
    start_lr: Any,
    end_lr: Any,
    num_iter: Any,
    step_mode: Any,
    smooth_f: Any,
    diverge_th: Any,
    accumulation_steps: Any = 1,
) -> None:
    for name, value in (("start_lr", start_lr), ("end_lr", end_lr)):
        v = _real(name, value)
        if not (math.isfinite(v) and v > 0):
            raise InputError(f"{name}={value!r} must be a positive finite learning rate, e.g. 1e-7")
    if not float(end_lr) > float(start_lr):
        raise InputError(f"{end_lr=} must be greater than {start_lr=}: the sweep goes from low to high")
    if _int("num_iter", num_iter) < 2:
        raise InputError(f"{num_iter=} must be at least 2 (100 is a good default)")
    if step_mode not in STEP_MODES:
        raise InputError(f"{step_mode=} must be one of {STEP_MODES} ('exp' is preferred)")
    sf = _real("smooth_f", smooth_f)
    if not (0.0 <= sf < 1.0):
        raise InputError(
            f"{smooth_f=} must be in [0, 1): the weight of the newest loss in the EMA (0 disables smoothing)"
        )
    dt = _real("diverge_th", diverge_th)
    if not (math.isfinite(dt) and dt > 1.0):
        raise InputError(f"{diverge_th=} must be a finite number greater than 1 (5.0 is the default)")
    if _int("accumulation_steps", accumulation_steps) < 1:
        raise InputError(f"{accumulation_steps=} must be at least 1")


def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def resolve_device(model: torch.nn.Module, device: Any) -> torch.device:
    """``device=None`` means the model's device; a device that disagrees with the model is an error."""
    actual = model_device(model)
    if device is None:
        return actual
    try:
        wanted = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"{device=} is not a device: pass 'cpu', 'cuda', 'cuda:1', ... or None") from exc
    same = wanted.type == actual.type and (wanted.index is None or wanted.index == actual.index)
    if wanted.type == "cuda" and actual.type == "cuda" and wanted.index is None:
        same = True
    if not same:
        raise InputError(
            f"{device=} but the model's parameters are on {actual}: move the model first "
            f"(model.to({str(wanted)!r})) and build the optimizer after, or pass device=None"
        )
    return actual


def unwrap_optimizer(optimizer: Any, scaler: Any) -> tuple[Any, Any]:
    """The torch optimizer inside a thin wrapper (accelerate's ``AcceleratedOptimizer``), and its scaler.

    Such a wrapper shares ``param_groups`` and ``state`` with the optimizer it wraps (``wrapper.optimizer``),
    but its ``step()`` may do more than step: with fp16 it runs its own GradScaler (unscale, step, update),
    and during gradient accumulation it may skip the step. The range test does its own scaling and
    accumulation, so it steps the inner optimizer and adopts the wrapper's scaler when none was given.
    Anything that is not such a wrapper is returned unchanged.
    """
    inner = getattr(optimizer, "optimizer", None)
    if not (
        isinstance(optimizer, torch.optim.Optimizer)
        and isinstance(inner, torch.optim.Optimizer)
        and inner is not optimizer
        and optimizer.param_groups is inner.param_groups
    ):
        return optimizer, scaler
    wrapped_scaler = getattr(optimizer, "scaler", None)
    if wrapped_scaler is not None:
        if scaler is None:
            scaler = wrapped_scaler
        elif scaler is not wrapped_scaler:
            raise InputError(
                f"scaler={scaler!r} differs from the GradScaler of the wrapped optimizer "
                f"({type(optimizer).__name__}.scaler): pass scaler=None (the wrapper's is used) or that one"
            )
    logger.debug(
        "optimizer is a %s wrapping %s: the range test steps the wrapped optimizer%s",
        type(optimizer).__name__,
        type(inner).__name__,
        " and uses the wrapper's GradScaler" if wrapped_scaler is not None else "",
    )
    return unwrap_optimizer(inner, scaler)


def check_objects(model: Any, optimizer: Any, criterion: Any, scaler: Any) -> None:
    if not isinstance(model, torch.nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InputTypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if isinstance(optimizer, torch.optim.LBFGS):
        raise InputTypeError(
            "optimizer is LBFGS, which needs a closure and several loss evaluations per step: the range test "
            "does not support it; run it with SGD or Adam on the same model instead"
        )
    if criterion is not None and not callable(criterion):
        raise InputTypeError(
            f"criterion must be callable (e.g. torch.nn.CrossEntropyLoss()) or None, got {criterion!r}"
        )
    for i, group in enumerate(optimizer.param_groups):
        if "lr" not in group:
            raise InputError(
                f"optimizer.param_groups[{i}] has no 'lr': the range test sweeps the learning rate, so the "
                "optimizer must have one"
            )
    params = [p for g in optimizer.param_groups for p in g["params"]]
    if not any(p.requires_grad for p in params):
        raise InputError(
            "the optimizer holds no parameter with requires_grad=True: there is nothing to train"
        )
    uninit = torch.nn.parameter.UninitializedParameter
    if any(isinstance(p, uninit) for p in model.parameters()):
        raise InputError(
            "the model has lazy (uninitialized) parameters: run one forward pass on a batch before creating "
            "the optimizer and LRFinder"
        )
    if scaler is not None and not (hasattr(scaler, "state_dict") and hasattr(scaler, "scale")):
        raise InputTypeError(f"scaler must be a torch.amp.GradScaler or None, got {type(scaler).__name__}")
