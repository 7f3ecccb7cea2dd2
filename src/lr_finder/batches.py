"""From a batch to a scalar loss: device transfer, the supported batch styles, and the loss checks.

Supported without any adapter:

* ``(inputs, targets)`` tuples or lists: ``criterion(model(inputs), targets)``; when ``inputs`` is itself a
  tuple or list the model gets several arguments, ``model(*inputs)``.
* dicts: ``model(**batch)``, the loss read from the output's ``loss`` (the Hugging Face convention), with
  ``criterion=None``.
* models that compute their own loss (an output object or dict with ``loss``) with ``criterion=None``.

Anything else: ``loss_fn(model, batch) -> scalar loss tensor``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]

_ADAPT = (
    "give LRFinder(..., loss_fn=lambda model, batch: ...) that returns the scalar loss for one batch, "
    "or make the loader yield (inputs, targets)"
)


def move_to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor in a nested batch (tuples, lists, dicts, objects with ``.to``) to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, Mapping):
        moved = {k: move_to_device(v, device, non_blocking) for k, v in obj.items()}
        try:
            return type(obj)(moved)  # type: ignore[call-arg]
        except TypeError:
            return moved
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(move_to_device(v, device, non_blocking) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to_device(v, device, non_blocking) for v in obj)
    to = getattr(obj, "to", None)
    if callable(to):
        try:
            return to(device)
        except TypeError:
            return obj
    return obj


def _output_loss(output: Any) -> torch.Tensor | None:
    if isinstance(output, Mapping):
        loss = output.get("loss")
    else:
        loss = getattr(output, "loss", None)
    return loss if isinstance(loss, torch.Tensor) else None


def batch_size(batch: Any) -> int:
    """Number of samples in a batch: the first dimension of its first tensor (1 when there is none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, Mapping):
        items = list(batch.values())
    elif isinstance(batch, (list, tuple)):
        items = list(batch)
    else:
        return 1
    for item in items:
        if isinstance(item, (torch.Tensor, Mapping, list, tuple)):
            return batch_size(item)
    return 1


def compute_loss(
    model: torch.nn.Module,
    criterion: Callable[..., torch.Tensor] | None,
    batch: Any,
    loss_fn: LossFn | None,
    need_grad: bool = True,
) -> torch.Tensor:
    """The loss of one batch, checked to be a scalar tensor (that can be back-propagated, with ``need_grad``)."""
    if loss_fn is not None:
        loss = loss_fn(model, batch)
        source = "loss_fn"
    elif isinstance(batch, Mapping):
        if criterion is not None:
            raise TypeError(
                "the loader yields dict batches, which are passed as model(**batch) with the loss read from the "
                "output's `loss`; pass criterion=None for such a model, or " + _ADAPT
            )
        output = model(**batch)
        loss = _output_loss(output)
        if loss is None:
            raise TypeError(f"model(**batch) returned {type(output).__name__} without a `loss`; " + _ADAPT)
        source = "the model's output `loss`"
    elif isinstance(batch, (list, tuple)) and len(batch) == 2:
        inputs, targets = batch
        output = model(*inputs) if isinstance(inputs, (list, tuple)) else model(inputs)
        if criterion is None:
            loss = _output_loss(output)
            if loss is None:
                raise TypeError(
                    f"criterion is None and the model returned {type(output).__name__} without a `loss`: "
                    "pass a criterion such as torch.nn.CrossEntropyLoss(), or " + _ADAPT
                )
            source = "the model's output `loss`"
        else:
            loss = criterion(output, targets)
            source = "criterion"
    else:
        kind = f"a {type(batch).__name__} of length {len(batch)}" if isinstance(batch, (list, tuple)) else (
            f"a {type(batch).__name__}"
        )
        raise TypeError(f"each batch must be (inputs, targets) or a dict, got {kind}; " + _ADAPT)
    check_loss(loss, source, need_grad)
    return loss.reshape(())


def check_loss(loss: Any, source: str, need_grad: bool = True) -> None:
    """Raise a clear error when ``loss`` is not a scalar tensor with a gradient path."""
    if not isinstance(loss, torch.Tensor):
        raise TypeError(f"{source} returned {type(loss).__name__}, expected a scalar torch.Tensor")
    if loss.numel() != 1:
        raise ValueError(
            f"{source} returned a tensor of shape {tuple(loss.shape)}, expected a scalar: "
            "use reduction='mean' (or 'sum') in the loss"
        )
    if need_grad and not loss.requires_grad:
        raise ValueError(
            f"{source} returned a loss without a gradient (requires_grad=False): check that some model "
            "parameters require grad and that the loss is not computed under torch.no_grad() or detached"
        )
