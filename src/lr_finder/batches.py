"""From a batch to a scalar loss: device transfer, the supported batch styles (see :func:`compute_loss`;
anything else takes ``loss_fn(model, batch) -> scalar loss tensor``), and the loss checks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import torch

from .errors import InputError, InputTypeError

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor | None]

_ADAPT = (
    "give LRFinder(..., loss_fn=lambda model, batch: ...) that returns the scalar loss for one batch, "
    "or make the loader yield (inputs, targets)"
)


def move_to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor in a nested batch to ``device``, keeping the batch's structure and types.

    Handles tensors, mappings (dicts, ``OrderedDict``, Hugging Face ``BatchEncoding``), namedtuples, tuples,
    lists, dataclass instances, and any other object with a ``.to(device)`` method (called with
    ``non_blocking`` when it accepts it). Anything else (strings, numbers, NumPy arrays) is returned as is.

    >>> batch = {"x": torch.zeros(2), "meta": ("id", [torch.ones(1)])}
    >>> move_to_device(batch, torch.device("cpu"))["meta"][1][0].device.type
    'cpu'
    """
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, Mapping):
        moved = {k: move_to_device(v, device, non_blocking) for k, v in obj.items()}
        try:
            return type(obj)(moved)  # type: ignore[call-arg]
        except TypeError:  # a mapping type that cannot be built from a dict (e.g. defaultdict)
            return moved
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(move_to_device(v, device, non_blocking) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to_device(v, device, non_blocking) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {
            f.name: move_to_device(getattr(obj, f.name), device, non_blocking)
            for f in dataclasses.fields(obj)
            if f.init and hasattr(obj, f.name)
        }
        try:
            return dataclasses.replace(obj, **changes)
        except (TypeError, ValueError):
            return obj
    to = getattr(obj, "to", None)
    if callable(to) and not isinstance(obj, (str, bytes, type)):
        try:
            moved = to(device, non_blocking=non_blocking)
        except TypeError:  # a .to() without non_blocking
            try:
                moved = to(device)
            except TypeError:
                return obj
        return obj if moved is None else moved  # a .to() that moves in place returns None
    return obj


_SIGNATURE_WORDS = ("positional argument", "keyword argument", "takes ", "required argument")


def _call_model(model: torch.nn.Module, inputs: Any) -> Any:
    """``model(*inputs)`` for a list or tuple of inputs (several model inputs), else ``model(inputs)``."""
    if not isinstance(inputs, (list, tuple)):
        return model(inputs)
    try:
        return model(*inputs)
    except TypeError as exc:
        if not any(word in str(exc) for word in _SIGNATURE_WORDS):
            raise
        raise InputTypeError(
            f"model(*inputs) with {len(inputs)} inputs failed: {exc}. In an (inputs, targets) batch, inputs "
            "that are a list or tuple are passed as separate arguments (several model inputs). If the model "
            "takes the list itself, give LRFinder(..., loss_fn=lambda model, batch: criterion(model(batch[0]), "
            "batch[1])), or make the loader yield a tensor as inputs"
        ) from exc


def _output_loss(output: Any) -> torch.Tensor | None:
    """The ``loss`` tensor of a model's output (a dict or an object, the Hugging Face convention), if any."""
    loss = output.get("loss") if isinstance(output, Mapping) else getattr(output, "loss", None)
    return loss if isinstance(loss, torch.Tensor) else None


def _first_batched_tensor(obj: Any) -> torch.Tensor | None:
    """The first tensor with at least one dimension, depth first, in a nested batch."""
    if isinstance(obj, torch.Tensor):
        return obj if obj.ndim else None
    if isinstance(obj, Mapping):
        items: list[Any] = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        items = list(obj)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        items = [getattr(obj, f.name, None) for f in dataclasses.fields(obj)]
    else:
        return None
    return next((found for found in map(_first_batched_tensor, items) if found is not None), None)


def batch_size(batch: Any) -> int:
    """Number of samples in a batch: the first dimension of its first tensor that has one (1 when none does).

    Used to weight each validation batch's mean loss, so that the mean over a loader is exact when the batch
    sizes differ (a last partial batch). Scalars and non-tensor entries (strings, ids) are skipped.

    >>> batch_size({"ids": ["a", "b", "c"], "x": torch.zeros(3, 5), "y": torch.zeros(3)})
    3
    """
    found = _first_batched_tensor(batch)
    return 1 if found is None else int(found.shape[0])


def compute_loss(
    model: torch.nn.Module,
    criterion: Callable[..., torch.Tensor] | None,
    batch: Any,
    loss_fn: LossFn | None,
    need_grad: bool = True,
) -> torch.Tensor | None:
    """The loss of one batch, checked to be a scalar tensor (with a gradient path when ``need_grad``).

    ``loss_fn(model, batch)`` when given (``None`` from it: skip this batch); else a dict batch is
    ``model(**batch).loss`` (``criterion=None``);
    else ``(inputs, targets)`` is ``criterion(model(inputs), targets)`` (``model(*inputs)`` when ``inputs``
    is a tuple or list: several model inputs), or ``model(inputs).loss`` with ``criterion=None``. Errors
    name the fix.
    """
    loss: Any
    if loss_fn is not None:
        loss, source = loss_fn(model, batch), "loss_fn"
        if loss is None:  # the batch is skipped, as Lightning skips one whose training_step returns None
            return None
    elif isinstance(batch, Mapping):
        if criterion is not None:
            raise InputTypeError(
                "the loader yields dict batches, which are passed as model(**batch) with the loss read from "
                "the output's `loss`; pass criterion=None for such a model, or " + _ADAPT
            )
        try:
            output = model(**batch)
        except TypeError as exc:
            if "keyword argument" not in str(exc) and "required positional argument" not in str(exc):
                raise
            raise InputTypeError(
                f"model(**batch) with keys {sorted(map(str, batch))} failed: {exc}. A dict batch is passed "
                "as keyword arguments, so its keys must be the names of the model's forward() arguments; "
                "rename or drop keys in the collate_fn, or " + _ADAPT
            ) from exc
        loss = _output_loss(output)
        if loss is None:
            raise InputTypeError(f"model(**batch) returned {type(output).__name__} without a `loss`; " + _ADAPT)
        source = "the model's output `loss`"
    elif isinstance(batch, (list, tuple)) and len(batch) == 2:
        inputs, targets = batch
        output = _call_model(model, inputs)
        if criterion is None:
            loss = _output_loss(output)
            if loss is None:
                raise InputTypeError(
                    f"criterion is None and the model returned {type(output).__name__} without a `loss`: "
                    "pass a criterion such as torch.nn.CrossEntropyLoss(), or " + _ADAPT
                )
            source = "the model's output `loss`"
        else:
            loss, source = criterion(output, targets), "criterion"
    else:
        kind = f"a {type(batch).__name__}" + (f" of length {len(batch)}" if isinstance(batch, (list, tuple)) else "")
        raise InputTypeError(f"each batch must be (inputs, targets) or a dict, got {kind}; " + _ADAPT)
    check_loss(loss, source, need_grad)
    return loss.reshape(())


def check_loss(loss: Any, source: str, need_grad: bool = True) -> None:
    """Raise a clear error when ``loss`` is not a scalar tensor with a gradient path."""
    if not isinstance(loss, torch.Tensor):
        raise InputTypeError(
            f"{source} returned {type(loss).__name__}, expected a scalar torch.Tensor: return the loss "
            "tensor itself (not loss.item(), a number or a tuple)"
        )
    if loss.numel() != 1:
        raise InputError(
            f"{source} returned a tensor of shape {tuple(loss.shape)}, expected a scalar: "
            "use reduction='mean' (or 'sum') in the loss"
        )
    if need_grad and not loss.requires_grad:
        raise InputError(
            f"{source} returned a loss without a gradient (requires_grad=False): check that some model "
            "parameters require grad and that the loss is not computed under torch.no_grad() or detached"
        )
