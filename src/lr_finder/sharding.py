"""What a model's sharding means for a range test: ``DTensor`` state, ``fully_shard`` (FSDP2) modules, the
precision a ``MixedPrecisionPolicy`` sets, and the resting state a snapshot and a restore need.

No collective is made here: these are facts about one process's model.
"""

from __future__ import annotations

import sys
from typing import Any

import torch

from .errors import InputTypeError


def fsdp2_modules(model: torch.nn.Module) -> list[Any]:
    """The modules ``fully_shard`` (FSDP2) was applied to, outermost first."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch < 2.6 or built without distributed
        return []
    return [m for m in model.modules() if isinstance(m, FSDPModule)]


def is_dtensor(t: Any) -> bool:
    """Whether ``t`` is a ``DTensor`` (a ``fully_shard`` or tensor-parallel parameter, its grad or state)."""
    module = sys.modules.get("torch.distributed.tensor")  # a DTensor exists only once this was imported
    return module is not None and isinstance(t, module.DTensor)


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether ``model`` has ``fully_shard`` modules or ``DTensor`` parameters (tensor parallelism)."""
    return bool(fsdp2_modules(model)) or any(is_dtensor(p) for p in model.parameters())


def check_supported(model: torch.nn.Module) -> None:
    """Refuse ``FullyShardedDataParallel`` (FSDP1): its flat parameters are swapped between sharded and
    unsharded views, with no public way to put them back after a step that failed half-way."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel
    except ImportError:  # pragma: no cover - torch built without distributed
        return
    for name, module in model.named_modules():
        if isinstance(module, FullyShardedDataParallel):
            where = f"module {name!r}" if name else "the model itself"
            raise InputTypeError(
                f"FullyShardedDataParallel (FSDP1) on {where} is not supported: shard with "
                "torch.distributed.fsdp.fully_shard (FSDP2) instead; supported are DistributedDataParallel, "
                "fully_shard and DTensor (tensor-parallel) models"
            )


def policy_dtype(model: torch.nn.Module) -> torch.dtype | None:
    """The compute dtype set by a ``fully_shard`` ``MixedPrecisionPolicy`` of ``model`` (its ``param_dtype``).

    Where one is set, it decides the precision of the range test, as it will of training: the finder's own
    autocast is then off (a second cast on top would change what the test measures).
    """
    for module in fsdp2_modules(model):
        policy = getattr(module._get_fsdp_state(), "_mp_policy", None)  # no public accessor in torch 2.13
        dtype = getattr(policy, "param_dtype", None)
        if dtype is not None:
            return dtype
    return None


def reset_sharded(model: torch.nn.Module) -> None:
    """Put every ``fully_shard`` module of ``model`` back in its resting state: sharded, between steps.

    After a forward pass with no backward (validation under ``no_grad``, or a step stopped by an exception
    before its backward pass), the root module keeps its *unsharded* parameters registered, and the next
    forward pass would reuse them instead of all-gathering the shards. The snapshot must see the sharded
    parameters (a rank's own shards, never the whole model), and a restore writes into the shards, so this
    runs before both. It makes no collective: FSDP only waits for its own pending work and frees memory.
    """
    fsdp = fsdp2_modules(model)
    inner = {id(m) for outer in fsdp for m in outer.modules() if m is not outer}
    for module in fsdp:
        if id(module) in inner:
            continue  # reset through its outermost fully_shard module (the root FSDP requires)
        if getattr(module._get_fsdp_state(), "_is_root", None) is None:
            continue  # never run forward: still sharded as fully_shard left it (and FSDP not yet set up)
        if hasattr(module, "reset_iter_state"):
            module.reset_iter_state()
        else:  # pragma: no cover - torch before reset_iter_state: reshard what can be resharded
            for m in fsdp:
                m.reshard()
