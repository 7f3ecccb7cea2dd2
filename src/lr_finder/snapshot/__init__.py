"""Snapshots of everything a range test changes: ``capture(...) -> Snapshot``, then ``Snapshot.restore()``
(bit for bit, any number of times) and ``Snapshot.close()``.

Captured: every module's parameters and buffers by name (the objects, ``None`` too) and train/eval mode,
for the model and a criterion that is a module; the values, ``requires_grad`` and ``.grad`` of those and of
every parameter the optimizer holds; the optimizer's state, param-group hyper-parameters and the counters
an LR scheduler reads; the GradScaler's state; the RNGs (Python, NumPy, torch, CUDA when initialised, and
generators such as a DataLoader's). Restore puts the very objects back in their slots (undoing
``self.steps = self.steps + 1`` in ``forward``) and copies the saved values *into* them, so the optimizer's
state stays keyed by the same parameters and the copy is never aliased.

The values live in CPU memory (:mod:`._memory`) or, with ``memory_cache=False``, in a file (:mod:`._disk`),
complete before ``capture`` returns: nothing the training does afterwards, on any stream, can race them.
"""

from __future__ import annotations

import copy
import functools
import os
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from .._logging import logger
from ..sharding import is_dtensor
from ._disk import DiskStore, OnDisk, check_writable, open_store
from ._memory import PinnedBuffer, copy_to_host, raw_bytes

__all__ = ["PinnedBuffer", "Snapshot", "capture", "local_tensor", "tracked_tensors"]

#: Optimizer attributes that LR schedulers use to check the order of ``step()`` calls.
_OPTIMIZER_COUNTERS = ("_opt_called", "_step_count")
_MISSING = object()
Saved = torch.Tensor | OnDisk
_SAVED = (torch.Tensor, OnDisk)


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """The plain tensor whose storage a snapshot saves from, and restores into, for the live tensor ``t``.

    The one place where a live tensor's storage is taken. A sharded tensor (a ``DTensor``: ``fully_shard``
    parameters, their gradients and optimizer state, tensor-parallel weights) maps to this process's local
    part, the storage FSDP all-gathers from, so each rank saves and restores its own shards and nothing is
    gathered. A sparse tensor is its own: a detached alias of it does not share its indices and values.
    """
    if is_dtensor(t):
        with torch.no_grad():
            return t.to_local().detach()  # type: ignore[attr-defined]  # a DTensor
    return t.detach() if t.layout == torch.strided else t


def _laid_out_like(fresh: torch.Tensor, like: Any) -> torch.Tensor:
    """``fresh`` (a local tensor) as a DTensor of ``like``'s mesh and placements when ``like`` is one."""
    if not is_dtensor(like):
        return fresh
    return type(like).from_local(  # no collective: run_check=False and the global shape given
        fresh, like.device_mesh, like.placements, run_check=False, shape=like.shape, stride=like.stride()
    )


def tracked_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer, extra: Iterable[Any] = ()) -> (
    list[torch.Tensor]
):
    """Every parameter and buffer a range test may change, each once, in a stable order."""
    found: dict[int, torch.Tensor] = {}
    for module in [model, *[m for m in extra if isinstance(m, torch.nn.Module)]]:
        found.update((id(t), t) for t in [*module.parameters(), *module.buffers()])
    found.update((id(p), p) for g in optimizer.param_groups for p in g["params"])
    return list(found.values())


class _Payload(NamedTuple):
    """Saved values, grads (or ``None``) of the tracked tensors, and optimizer state by parameter position."""

    values: list[Any]
    grads: list[Any]
    opt_state: dict[int, dict[str, Any]]


def _map_tensors(obj: Any, fn: Callable[[Any], Any], leaf: type | tuple[type, ...] = torch.Tensor) -> Any:
    """``obj`` (dicts, lists, tuples) with every ``leaf`` replaced by ``fn(leaf)`` and the rest deep-copied."""
    if isinstance(obj, leaf):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn, leaf) for k, v in obj.items()}
    if isinstance(obj, _Payload):
        return _Payload(*(_map_tensors(v, fn, leaf) for v in obj))
    if type(obj) in (list, tuple):
        return type(obj)(_map_tensors(v, fn, leaf) for v in obj)
    return copy.deepcopy(obj)


def _tensors_in(obj: Any, found: list[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        found.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _tensors_in(v, found)
    elif type(obj) in (list, tuple, _Payload):
        for v in obj:
            _tensors_in(v, found)
    return found


def _to_disk(live: _Payload, cache_dir: str | os.PathLike[str] | None) -> tuple[_Payload, DiskStore]:
    """Raw bytes to the file; the few tensors whose bytes are not their values (sparse, quantized) in memory."""
    total = sum(t.numel() * t.element_size() for t in _tensors_in(live, []))
    store = open_store(cache_dir, total)
    try:
        saved = _map_tensors(live, lambda t: store.add(t) if raw_bytes(t) else t.to("cpu", copy=True))
        store.finish()
    except BaseException:
        store.delete()
        raise
    logger.debug("snapshot of %.1f MB written to %s", total / 1e6, store.path)
    return saved, store


def _put(
    live: torch.Tensor | None, saved: Saved, *, device: torch.device, like: torch.Tensor | None = None
) -> torch.Tensor:
    """``live`` holding the saved values (copied in place), or a new tensor on ``device`` when it cannot.

    A new tensor takes the layout of ``like`` (a sharded parameter, for its gradient or optimizer state).
    """
    if live is not None:
        dst = local_tensor(live)
        if dst.device == device and dst.shape == saved.shape and dst.dtype == saved.dtype:
            with torch.no_grad():
                if isinstance(saved, OnDisk):
                    saved.fill(dst)
                else:
                    dst.copy_(saved, non_blocking=dst.device.type == "cuda")  # one sync at the end
            return live
    fresh = saved.fresh(device) if isinstance(saved, OnDisk) else saved.to(device=device, copy=True)
    return _laid_out_like(fresh, like)


@dataclass(frozen=True)
class _Slots:
    """One module's parameters and buffers by name (the objects, ``None`` too) and its train/eval mode."""

    module: torch.nn.Module
    training: bool
    parameters: dict[str, torch.nn.Parameter | None]
    buffers: dict[str, torch.Tensor | None]
    non_persistent: frozenset[str]

    @classmethod
    def capture(cls, m: torch.nn.Module) -> _Slots:
        return cls(m, m.training, dict(m._parameters), dict(m._buffers), frozenset(m._non_persistent_buffers_set))

    def restore(self) -> None:
        """The captured objects back in their slots (names added since are dropped)."""
        # private dicts: register_parameter/register_buffer refuse a name already taken by another kind
        # and cannot drop a name, and setattr re-registers; nothing public puts the very objects back
        m = self.module
        m.training = self.training
        m._parameters.clear()
        m._parameters.update(self.parameters)
        m._buffers.clear()
        m._buffers.update(self.buffers)
        m._non_persistent_buffers_set.clear()
        m._non_persistent_buffers_set.update(self.non_persistent)


@dataclass(frozen=True)
class _Rng:
    python: Any
    numpy: Any
    torch_cpu: torch.Tensor
    cuda: list[torch.Tensor] | None
    generators: list[tuple[torch.Generator, torch.Tensor]]

    @classmethod
    def capture(cls, generators: Iterable[torch.Generator]) -> _Rng:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        states = [(g, g.get_state()) for g in dict.fromkeys(generators)]
        return cls(random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda, states)

    def restore(self) -> None:
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        torch.set_rng_state(self.torch_cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        for g, s in self.generators:
            g.set_state(s)


@dataclass
class Snapshot:
    """The saved state of one model/optimizer/scaler set; see the module docstring."""

    optimizer: torch.optim.Optimizer
    tensors: list[torch.Tensor]  # the live tensors, in the order of ``saved.values`` and ``saved.grads``
    requires_grad: list[bool]
    modules: list[_Slots]
    groups: list[dict[str, Any]]  # param-group hyper-parameters
    counters: dict[str, Any]  # optimizer attributes read by LR schedulers (``_MISSING`` when absent)
    state_devices: dict[tuple[int, str], torch.device]  # where each optimizer-state tensor lived
    sharded_state: frozenset[tuple[int, str]]  # the optimizer-state tensors that were DTensors
    scaler: tuple[Any, dict[str, Any]] | None  # the GradScaler and its state
    rng: _Rng
    saved: _Payload | None  # ``None`` once closed
    store: DiskStore | None  # the file of a disk snapshot

    def restore(self) -> None:
        """Put everything back bit for bit. Safe to call any number of times."""
        if self.saved is None:
            raise RuntimeError("the snapshot was closed; run range_test() again")
        try:
            self._restore_tensors(self.saved)
            self._restore_optimizer(self.saved.opt_state)
        finally:
            if self.store is not None:
                self.store.release()
        for slots in self.modules:
            slots.restore()
        if self.scaler is not None:
            self.scaler[0].load_state_dict(copy.deepcopy(self.scaler[1]))
        self.rng.restore()
        for device in {t.device for t in self.tensors if t.device.type == "cuda"}:
            torch.cuda.synchronize(device)  # the non-blocking copies back have landed

    def _restore_tensors(self, saved: _Payload) -> None:
        for t, grad in zip(self.tensors, saved.grads, strict=True):
            if grad is None:  # the sweep's gradients go first: a lower peak while values are copied
                t.grad = None
        for t, value, req in zip(self.tensors, saved.values, self.requires_grad, strict=True):
            restored = _put(t, value, device=t.device)
            if restored is not t:  # shape or dtype changed: only ``.data`` swaps it and keeps the object
                t.data = restored  # (the optimizer's state is keyed by it)
            if t.is_leaf and t.requires_grad != req:
                t.requires_grad_(req)
        for t, grad in zip(self.tensors, saved.grads, strict=True):  # after the values: the order written
            if grad is not None:
                t.grad = _put(t.grad, grad, device=t.device, like=t)

    def _restore_optimizer(self, opt_state: dict[int, dict[str, Any]]) -> None:
        state = self.optimizer.state
        for pos, p in enumerate(p for g in self.optimizer.param_groups for p in g["params"]):
            if pos not in opt_state:
                state.pop(p, None)
                continue
            live, saved = state[p], opt_state[pos]
            for key in [k for k in live if k not in saved]:
                del live[key]
            for key, value in saved.items():
                device = self.state_devices.get((pos, key))
                current = live.get(key)
                if device is not None:  # a tensor: in place where it still fits
                    tensor = current if isinstance(current, torch.Tensor) else None
                    like = p if (pos, key) in self.sharded_state else None
                    live[key] = _put(tensor, value, device=device, like=like)
                else:  # anything else, tensors inside it new on the parameter's device
                    live[key] = _map_tensors(value, functools.partial(_put, None, device=p.device), _SAVED)
        for group, saved_group in zip(self.optimizer.param_groups, self.groups, strict=True):
            for key in [k for k in group if k != "params" and k not in saved_group]:
                del group[key]
            for key, value in saved_group.items():  # a tensor hyper-parameter (a tensor LR) in place
                current = group.get(key)
                if isinstance(current, torch.Tensor) and isinstance(value, torch.Tensor):
                    group[key] = _put(current, value, device=current.device)
                else:
                    group[key] = copy.deepcopy(value)
        for name, value in self.counters.items():  # private counters, no public API: what schedulers read
            if value is not _MISSING:
                setattr(self.optimizer, name, value)
            elif hasattr(self.optimizer, name):
                delattr(self.optimizer, name)

    def close(self) -> None:
        """Free the copy: drop it from memory, delete the snapshot's file and its private folder."""
        self.saved = None
        if self.store is not None:
            self.store.delete()
            self.store = None


def capture(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    scaler: Any = None,
    criterion: Any = None,
    generators: Iterable[torch.Generator] = (),
    memory_cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    pinned: PinnedBuffer | None = None,
) -> Snapshot:
    """Capture the state of ``model``, ``optimizer``, ``scaler`` and the RNGs (see the module docstring).

    ``cache_dir``, when given, must be a usable folder in both modes (the finder writes its outputs there
    after the sweep): a :class:`~lr_finder.errors.StorageError` is raised here, before any training, if not.
    ``pinned``: the page-locked host buffer to reuse for CUDA tensors (a new one otherwise).
    """
    roots = [model, *([criterion] if isinstance(criterion, torch.nn.Module) else [])]
    tensors = tracked_tensors(model, optimizer, roots[1:])
    position = {id(p): i for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])}
    live_state = {position[id(p)]: dict(st) for p, st in optimizer.state.items() if id(p) in position}
    live = _Payload(
        [local_tensor(t) for t in tensors],
        [None if t.grad is None else local_tensor(t.grad) for t in tensors],
        {pos: {k: local_tensor(v) if isinstance(v, torch.Tensor) else v for k, v in st.items()}
         for pos, st in sorted(live_state.items())},
    )
    parts = dict(
        optimizer=optimizer,
        tensors=tensors,
        requires_grad=[t.requires_grad for t in tensors],
        modules=[_Slots.capture(m) for root in roots for m in root.modules()],
        groups=[copy.deepcopy({k: v for k, v in g.items() if k != "params"}) for g in optimizer.param_groups],
        counters={name: getattr(optimizer, name, _MISSING) for name in _OPTIMIZER_COUNTERS},
        state_devices={(pos, k): v.device for pos, st in live_state.items() for k, v in st.items()
                       if isinstance(v, torch.Tensor)},
        sharded_state=frozenset((pos, k) for pos, st in live_state.items() for k, v in st.items() if is_dtensor(v)),
        scaler=None if scaler is None else (scaler, copy.deepcopy(scaler.state_dict())),
        rng=_Rng.capture(generators),
    )
    with torch.no_grad():  # copies, not graph nodes (a sparse tensor is not detached)
        if memory_cache:
            if cache_dir is not None:
                check_writable(cache_dir)
            copies = copy_to_host(_tensors_in(live, []), pinned or PinnedBuffer())
            saved, store = _map_tensors(live, lambda t: copies[id(t)]), None
        else:
            saved, store = _to_disk(live, cache_dir)
    return Snapshot(**parts, saved=saved, store=store)  # type: ignore[arg-type]
