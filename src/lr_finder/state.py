"""Snapshots of everything a range test changes, and their exact, in-place restore.

What is captured: every parameter and buffer of the model (and of the criterion when it is a module),
every parameter the optimizer holds, ``requires_grad`` flags, ``.grad`` tensors, the train/eval mode of
every submodule, the optimizer's per-parameter state and param-group hyper-parameters (and the counters
an attached LR scheduler reads), the GradScaler's state, and the RNG states (Python, NumPy, torch CPU,
torch CUDA when initialised, and any extra generators such as a DataLoader's).

The copy lives in CPU memory (pinned when it comes from CUDA), never as a second copy on the
accelerator; or, with ``memory_cache=False``, on disk in a private folder, written atomically and
read back with ``weights_only=True``. Restore copies values *into* the live tensors, so the optimizer
keeps referring to the same parameter objects and the snapshot is never aliased: it can be restored
any number of times.
"""

from __future__ import annotations

import copy
import os
import random
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ._logging import logger

#: Optimizer attributes that LR schedulers use to check the order of ``step()`` calls.
_OPTIMIZER_COUNTERS = ("_opt_called", "_step_count")
_MISSING = object()


def _unique(tensors: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    seen: set[int] = set()
    out = []
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
    return out


def tracked_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer, extra: Iterable[Any] = ()) -> (
    list[torch.Tensor]
):
    """Every parameter and buffer a range test may change, each once, in a stable order."""
    found: list[torch.Tensor] = []
    for module in [model, *[m for m in extra if isinstance(m, torch.nn.Module)]]:
        found.extend(module.parameters())
        found.extend(module.buffers())
    for group in optimizer.param_groups:
        found.extend(group["params"])
    return _unique(found)


def _to_cpu(t: torch.Tensor, pin: bool) -> torch.Tensor:
    if t.device.type == "cpu":
        return t.detach().clone()
    out = torch.empty(t.shape, dtype=t.dtype, device="cpu", pin_memory=pin)
    out.copy_(t.detach(), non_blocking=False)
    return out


def _copy_into(dst: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """Copy ``src`` into ``dst`` in place when they match, else a fresh copy on ``dst``'s device."""
    if dst.shape == src.shape and dst.dtype == src.dtype:
        with torch.no_grad():
            dst.copy_(src)
        return dst
    return src.detach().to(device=dst.device, copy=True)


@dataclass
class _Rng:
    python: Any
    numpy: Any
    torch_cpu: torch.Tensor
    cuda: list[torch.Tensor] | None
    generators: list[tuple[torch.Generator, torch.Tensor]]

    @classmethod
    def capture(cls, generators: Iterable[torch.Generator]) -> _Rng:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        return cls(
            random.getstate(),
            np.random.get_state(),
            torch.get_rng_state(),
            cuda,
            [(g, g.get_state()) for g in _unique(generators)],  # type: ignore[arg-type]
        )

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

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Any
    modules: list[tuple[torch.nn.Module, bool]]
    tensors: list[torch.Tensor]  # live tensors, in the order of the saved values
    requires_grad: list[bool]
    groups: list[dict[str, Any]]
    counters: dict[str, Any]
    scaler_state: dict[str, Any] | None
    rng: _Rng
    # payload: {"values": [...], "grads": [...], "opt_state": {position: {key: value}}}
    payload: dict[str, Any] | None = None
    path: str | None = None
    own_dir: str | None = None
    state_devices: dict[tuple[int, str], torch.device] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data the snapshot holds (or holds on disk)."""
        return _payload_nbytes(self._load()) if self.payload is None and self.path else _payload_nbytes(
            self.payload or {}
        )

    def _load(self) -> dict[str, Any]:
        if self.payload is not None:
            return self.payload
        if self.path is None:
            raise RuntimeError("the snapshot was discarded; run range_test() again")
        return torch.load(self.path, map_location="cpu", weights_only=True, mmap=True)

    def restore(self) -> None:
        """Put everything back bit for bit, in place. Safe to call any number of times."""
        payload = self._load()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for t, value, grad, req in zip(
            self.tensors, payload["values"], payload["grads"], self.requires_grad, strict=True
        ):
            restored = _copy_into(t, value)
            if restored is not t:
                t.data = restored
            if t.is_leaf and t.requires_grad != req:
                t.requires_grad_(req)
            if grad is None:
                t.grad = None
            elif t.grad is not None:
                t.grad = _copy_into(t.grad, grad)
            else:
                t.grad = grad.detach().to(device=t.device, copy=True)
        # optimizer state, in place where the structure still matches
        state = self.optimizer.state
        saved_state: dict[int, dict[str, Any]] = payload["opt_state"]
        for pos, p in enumerate(params):
            saved = saved_state.get(pos)
            if saved is None:
                state.pop(p, None)
                continue
            live = state[p]
            for key in [k for k in live if k not in saved]:
                del live[key]
            for key, value in saved.items():
                if isinstance(value, torch.Tensor):
                    device = self.state_devices.get((pos, key), p.device)
                    current = live.get(key)
                    if isinstance(current, torch.Tensor) and current.device == device:
                        live[key] = _copy_into(current, value)
                    else:
                        live[key] = value.detach().to(device=device, copy=True)
                else:
                    live[key] = copy.deepcopy(value)
        for group, saved_group in zip(self.optimizer.param_groups, self.groups, strict=True):
            for key in [k for k in group if k != "params" and k not in saved_group]:
                del group[key]
            for key, value in saved_group.items():
                current = group.get(key)
                if isinstance(current, torch.Tensor) and isinstance(value, torch.Tensor):
                    group[key] = _copy_into(current, value)
                else:
                    group[key] = copy.deepcopy(value)
        for name, value in self.counters.items():
            if value is _MISSING:
                if hasattr(self.optimizer, name):
                    delattr(self.optimizer, name)
            else:
                setattr(self.optimizer, name, value)
        for module, training in self.modules:
            module.training = training
        if self.scaler is not None and self.scaler_state is not None:
            self.scaler.load_state_dict(copy.deepcopy(self.scaler_state))
        self.rng.restore()

    def discard(self) -> None:
        """Free the copy: drop it from memory, delete the disk file and the private folder."""
        self.payload = None
        if self.path is not None and os.path.exists(self.path):
            os.remove(self.path)
        self.path = None
        if self.own_dir is not None:
            shutil.rmtree(self.own_dir, ignore_errors=True)
            self.own_dir = None


def _payload_nbytes(payload: dict[str, Any]) -> int:
    def walk(obj: Any) -> Iterator[torch.Tensor]:
        if isinstance(obj, torch.Tensor):
            yield obj
        elif isinstance(obj, dict):
            for v in obj.values():
                yield from walk(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                yield from walk(v)

    return sum(t.numel() * t.element_size() for t in walk(payload))


def check_cache_dir(cache_dir: str | os.PathLike[str], needed: int) -> None:
    """Raise a clear error now, before any training, when ``cache_dir`` cannot hold the snapshot."""
    path = os.fspath(cache_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{cache_dir=} is a file, not a folder: pass a folder path")
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".lr_finder_probe_", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise PermissionError(
            f"{cache_dir=} is not writable ({exc.strerror}): pass a writable cache_dir, or memory_cache=True"
        ) from exc
    free = shutil.disk_usage(path).free
    if free < needed * 1.05 + (1 << 20):
        raise OSError(
            f"not enough free disk space in {cache_dir=}: the snapshot needs about {needed / 2**20:.1f} MiB, "
            f"{free / 2**20:.1f} MiB are free; free some space, pass another cache_dir, or use memory_cache=True"
        )


def capture(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    scaler: Any = None,
    criterion: Any = None,
    generators: Iterable[torch.Generator] = (),
    memory_cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Snapshot:
    """Capture the state of ``model``, ``optimizer``, ``scaler`` and the RNGs (see the module docstring)."""
    extra = [criterion] if isinstance(criterion, torch.nn.Module) else []
    tensors = tracked_tensors(model, optimizer, extra)
    position = {id(p): i for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"])}
    modules = [(m, m.training) for root in [model, *extra] for m in root.modules()]
    groups = [copy.deepcopy({k: v for k, v in g.items() if k != "params"}) for g in optimizer.param_groups]
    counters = {name: getattr(optimizer, name, _MISSING) for name in _OPTIMIZER_COUNTERS}
    scaler_state = copy.deepcopy(scaler.state_dict()) if scaler is not None else None
    state_devices: dict[tuple[int, str], torch.device] = {}
    live_state: dict[int, dict[str, Any]] = {}
    for p, st in optimizer.state.items():
        pos = position.get(id(p))
        if pos is None:
            continue
        live_state[pos] = dict(st)
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                state_devices[(pos, key)] = value.device
    snap = Snapshot(
        model=model,
        optimizer=optimizer,
        scaler=scaler,
        modules=modules,
        tensors=tensors,
        requires_grad=[t.requires_grad for t in tensors],
        groups=groups,
        counters=counters,
        scaler_state=scaler_state,
        rng=_Rng.capture(generators),
        state_devices=state_devices,
    )
    live = {
        "values": [t.detach() for t in tensors],
        "grads": [None if t.grad is None else t.grad.detach() for t in tensors],
        "opt_state": live_state,
    }
    if memory_cache:
        pin = torch.cuda.is_available()

        def to_cpu(obj: Any) -> Any:
            if isinstance(obj, torch.Tensor):
                return _to_cpu(obj, pin and obj.device.type == "cuda")
            if isinstance(obj, dict):
                return {k: to_cpu(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return [to_cpu(v) for v in obj]
            return copy.deepcopy(obj)

        snap.payload = to_cpu(live)
        return snap
    # On disk: torch.save streams tensors one storage at a time (no second full copy in memory).
    if cache_dir is not None:
        check_cache_dir(cache_dir, _payload_nbytes(live))
    snap.own_dir = tempfile.mkdtemp(prefix="lr_finder_snapshot_", dir=None if cache_dir is None else cache_dir)
    if cache_dir is None:
        check_cache_dir(snap.own_dir, _payload_nbytes(live))
    final = os.path.join(snap.own_dir, "snapshot.pt")
    tmp = final + ".tmp"
    try:
        torch.save(live, tmp)
        os.replace(tmp, final)
    except BaseException:
        snap.discard()
        raise
    snap.path = final
    logger.debug("snapshot written to %s", final)
    return snap
