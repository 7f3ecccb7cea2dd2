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

Cost (measured with ``benchmarks/overhead.py`` and cProfile; see ``benchmarks/results/overhead.md``):
CPU tensors are copied into one flat buffer on transparent huge pages where Linux offers them, because
first-touch page faults, not the copy, dominated the capture of fresh 4 KiB pages; CUDA tensors go to
pinned memory with non-blocking copies and one synchronisation per device. On disk the tensors are cut
into shard files of about 1/64 of the snapshot (1 to 64 MiB) and restored one shard at a time, so a
restore adds about one shard to the peak memory, not a second copy of the state.
"""

from __future__ import annotations

import copy
import mmap
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
from .errors import StorageError

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


#: Put the in-memory snapshot of CPU tensors on transparent huge pages (Linux, ``madvise`` mode or ``always``).
USE_HUGE_PAGES = True
_HUGE_PAGE = 2 << 20
_ALIGN = 64  # byte alignment of each tensor in the flat snapshot buffer
_SHARD_MIN, _SHARD_MAX = 1 << 20, 64 << 20


def _shard_bytes(total: int) -> int:
    """Bytes per shard of a disk snapshot: about 1/64 of it, between 1 MiB and 64 MiB."""
    return min(_SHARD_MAX, max(_SHARD_MIN, total // 64))


def _host_buffer(nbytes: int) -> torch.Tensor:
    """A flat ``uint8`` CPU tensor of ``nbytes``, on transparent huge pages where the OS offers them.

    Profiled on a 63 MB snapshot (5.3M-parameter MLP + Adam): ``clone()`` into fresh 4 KiB pages spent
    most of its ~45 ms CPU in first-touch page faults and ``free`` ~6 ms; on 2 MiB pages the same copy
    takes ~17 ms and the free ~0.4 ms. Only the 2 MiB-aligned middle of the mapping is advised huge, so
    the resident size stays the bytes used (rounded to 4 KiB), never a partly used huge page. Anywhere
    else (not Linux, small snapshots, THP off) this is an ordinary allocation.
    """
    if USE_HUGE_PAGES and nbytes >= _HUGE_PAGE and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0)
            mapping = mmap.mmap(-1, nbytes + _HUGE_PAGE, flags=flags)
            whole = torch.frombuffer(mapping, dtype=torch.uint8)  # keeps ``mapping`` alive
            start = -whole.data_ptr() % _HUGE_PAGE
            huge = nbytes // _HUGE_PAGE * _HUGE_PAGE
            mapping.madvise(mmap.MADV_HUGEPAGE, start, huge)
            if hasattr(mmap, "MADV_NOHUGEPAGE"):  # the partial tail stays on small pages under THP=always
                mapping.madvise(mmap.MADV_NOHUGEPAGE, start + huge, len(mapping) - start - huge)
            return whole[start : start + nbytes]
        except (OSError, ValueError, RuntimeError, TypeError) as exc:  # pragma: no cover - platform dependent
            logger.debug("huge-page snapshot buffer unavailable (%s): using an ordinary allocation", exc)
    return torch.empty(nbytes, dtype=torch.uint8)


def _mapped_bytes(nbytes: int) -> torch.Tensor:
    """A flat ``uint8`` CPU tensor of exactly ``nbytes`` in its own anonymous mapping, off the malloc heap."""
    try:
        mapping = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0))
        return torch.frombuffer(mapping, dtype=torch.uint8)  # keeps ``mapping`` alive
    except (OSError, ValueError, RuntimeError, TypeError, AttributeError):  # pragma: no cover - not POSIX
        return torch.empty(nbytes, dtype=torch.uint8)


def _packable(t: torch.Tensor) -> bool:
    """A plain dense contiguous CPU tensor, which can live in a view of the flat snapshot buffer."""
    return (
        t.device.type == "cpu"
        and t.layout == torch.strided
        and type(t.detach()) is torch.Tensor
        and not t.is_quantized
        and not t.is_conj()
        and not t.is_neg()
        and t.is_contiguous()
    )


def _scan_tensors(obj: Any, found: list[torch.Tensor]) -> None:
    if isinstance(obj, torch.Tensor):
        found.append(obj)
    elif isinstance(obj, dict):
        for v in obj.values():
            _scan_tensors(v, found)
    elif isinstance(obj, list):
        for v in obj:
            _scan_tensors(v, found)


def _host_copy(obj: Any, slots: dict[int, torch.Tensor], pin: bool, synced: set[torch.device]) -> Any:
    if isinstance(obj, torch.Tensor):
        slot = slots.get(id(obj))
        if slot is not None:
            return slot
        if obj.device.type == "cpu":
            return obj.detach().clone()
        pinned = pin and obj.device.type == "cuda"
        out = torch.empty(obj.shape, dtype=obj.dtype, device="cpu", pin_memory=pinned)
        out.copy_(obj.detach(), non_blocking=pinned)
        if pinned:
            synced.add(obj.device)
        return out
    if isinstance(obj, dict):
        return {k: _host_copy(v, slots, pin, synced) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_host_copy(v, slots, pin, synced) for v in obj]
    return copy.deepcopy(obj)


def _to_host(live: Any, pin: bool) -> Any:
    """A copy of a nested structure (dicts, lists) in CPU memory, tensors copied and the rest deep-copied.

    Plain contiguous CPU tensors are packed into one flat buffer (:func:`_host_buffer`); CUDA tensors are
    copied into pinned memory (when ``pin``) without blocking, then each device is synchronised once;
    anything else is cloned. (No recursive closures here: a reference cycle would keep the buffer alive
    until the next garbage collection.)
    """
    found: list[torch.Tensor] = []
    _scan_tensors(live, found)
    found = [t for t in found if _packable(t)]
    sizes = [-(-t.numel() * t.element_size() // _ALIGN) * _ALIGN for t in found]
    buffer = _host_buffer(sum(sizes)) if found else None
    slots: dict[int, torch.Tensor] = {}
    offset = 0
    for t, size in zip(found, sizes, strict=True):
        if id(t) in slots:
            continue
        try:
            view = buffer[offset : offset + t.numel() * t.element_size()].view(t.dtype).view(t.shape)  # type: ignore[index]
        except RuntimeError:  # a dtype that cannot be viewed from bytes: cloned by _host_copy
            continue
        view.copy_(t.detach())
        slots[id(t)] = view
        offset += size
    synced: set[torch.device] = set()
    out = _host_copy(live, slots, pin, synced)
    for device in synced:  # the non-blocking copies into pinned memory have landed
        torch.cuda.synchronize(device)
    return out


class _ShardStore:
    """The tensors of a disk snapshot, cut into shard files of at most ``shard_bytes``.

    Each shard holds the bytes of consecutive 1-D pieces of the tensors (each at a 64-byte aligned
    offset; the shapes, dtypes and offsets stay in the :class:`_OnDisk` records), written with
    ``torch.save`` to a temp file renamed over its final name (atomic), and read back with
    ``torch.load(weights_only=True, mmap=True)`` one shard at a time, in the order they were written (the
    order :meth:`Snapshot.restore` reads them), so a restore holds at most one shard besides the live
    state. The bytes are gathered in one staging buffer in its own mapping, reused for every shard:
    writing allocates nothing on the malloc heap (a snapshot's worth of freed heap blocks can leave glibc
    returning memory that every later training step then faults in again; thousands of page faults per
    step were seen in ``benchmarks/overhead.py`` with per-piece copies).
    """

    def __init__(self, folder: str, shard_bytes: int) -> None:
        self.folder = folder
        self.shard_bytes = shard_bytes
        self.paths: list[str] = []
        self._other: list[torch.Tensor] = []
        self._size = 0
        self._staging: torch.Tensor | None = None
        self._loaded: tuple[int, dict[str, Any]] | None = None

    def add(self, t: torch.Tensor) -> _OnDisk:
        t = t.detach()
        flat = (t if t.is_contiguous() else t.contiguous()).reshape(-1)
        size = flat.element_size()
        pieces = []
        start, n = 0, flat.numel()
        while start < n:
            offset = -(-self._size // _ALIGN) * _ALIGN
            room = (self.shard_bytes - offset) // size
            if room < 1:
                self._flush()
                continue
            stop = min(n, start + room)
            nbytes = (stop - start) * size
            if self._staging is None:
                self._staging = _mapped_bytes(self.shard_bytes)
            try:
                self._staging[offset : offset + nbytes].view(flat.dtype).copy_(flat[start:stop])
                pieces.append((len(self.paths), offset, start, stop))
                self._size = offset + nbytes
            except RuntimeError:  # a dtype that cannot be viewed from bytes: saved as its own tensor
                self._other.append(flat[start:stop].to("cpu", copy=True))
                pieces.append((len(self.paths), -len(self._other), start, stop))
                self._size = offset + nbytes  # counted against the shard all the same
            start = stop
        return _OnDisk(tuple(t.shape), t.dtype, tuple(pieces), self)

    def finish(self) -> None:
        if self._size:
            self._flush()
        self._staging = None

    def _flush(self) -> None:
        path = os.path.join(self.folder, f"shard_{len(self.paths):05d}.pt")
        tmp = path + ".tmp"
        data = self._staging if self._staging is not None else torch.empty(0, dtype=torch.uint8)
        torch.save({"bytes": data, "other": self._other}, tmp)
        os.replace(tmp, path)
        self.paths.append(path)
        self._other = []
        self._size = 0

    def piece(self, shard: int, where: int, dtype: torch.dtype, numel: int) -> torch.Tensor:
        """The saved piece at byte ``where`` of shard ``shard`` (or its ``-where``-th other tensor)."""
        if self._loaded is None or self._loaded[0] != shard:
            self._loaded = None  # unmap the previous shard before mapping the next
            if shard >= len(self.paths) or not os.path.exists(self.paths[shard]):
                raise RuntimeError("the disk snapshot was discarded or deleted; run range_test() again")
            self._loaded = (shard, torch.load(self.paths[shard], map_location="cpu", weights_only=True, mmap=True))
        data = self._loaded[1]
        if where < 0:
            return data["other"][-where - 1]
        return data["bytes"][where : where + numel * dtype.itemsize].view(dtype)

    def release(self) -> None:
        self._loaded = None


@dataclass(frozen=True)
class _OnDisk:
    """A tensor saved in a :class:`_ShardStore`: shape, dtype, pieces ``(shard, byte offset, start, stop)``."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    pieces: tuple[tuple[int, int, int, int], ...]
    store: _ShardStore = field(repr=False, compare=False)

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * self.dtype.itemsize

    def fill(self, dst: torch.Tensor) -> None:
        """Copy the saved values into ``dst`` (same shape and dtype, any device), one piece at a time."""
        target = dst if dst.is_contiguous() else torch.empty(self.shape, dtype=self.dtype)
        flat = target.view(-1)
        with torch.no_grad():
            for shard, where, start, stop in self.pieces:
                flat[start:stop].copy_(self.store.piece(shard, where, self.dtype, stop - start))
            if target is not dst:
                dst.copy_(target)


def _is_saved_tensor(value: Any) -> bool:
    return isinstance(value, (torch.Tensor, _OnDisk))


def _fresh(src: torch.Tensor | _OnDisk, device: torch.device) -> torch.Tensor:
    """A new tensor on ``device`` holding the saved values (never the snapshot's own tensor)."""
    if isinstance(src, _OnDisk):
        out = torch.empty(src.shape, dtype=src.dtype, device=device)
        src.fill(out)
        return out
    return src.detach().to(device=device, copy=True)


def _copy_into(dst: torch.Tensor, src: torch.Tensor | _OnDisk) -> torch.Tensor:
    """Copy ``src`` into ``dst`` in place when they match, else a fresh copy on ``dst``'s device."""
    if tuple(dst.shape) == tuple(src.shape) and dst.dtype == src.dtype:
        if isinstance(src, _OnDisk):
            src.fill(dst)
        else:
            with torch.no_grad():
                dst.copy_(src)
        return dst
    return _fresh(src, dst.device)


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
            [(g, g.get_state()) for g in dict.fromkeys(generators)],
        )

    def restore(self) -> None:
        random.setstate(self.python)
        np.random.set_state(self.numpy)
        torch.set_rng_state(self.torch_cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        for g, s in self.generators:
            g.set_state(s)


@dataclass(frozen=True)
class _Slots:
    """What one module holds, by name: its parameters and buffers (the objects, ``None`` too) and its mode.

    ``forward`` may re-assign a buffer (``self.steps = self.steps + 1``) or fill one registered as ``None``;
    the values of the objects held here are restored with the other tensors, and putting these very
    objects back in their slots undoes the re-assignment (names added since are dropped).
    """

    module: torch.nn.Module
    training: bool
    parameters: dict[str, torch.nn.Parameter | None]
    buffers: dict[str, torch.Tensor | None]
    non_persistent: frozenset[str]

    @classmethod
    def capture(cls, m: torch.nn.Module) -> _Slots:
        return cls(m, m.training, dict(m._parameters), dict(m._buffers), frozenset(m._non_persistent_buffers_set))

    def restore(self) -> None:
        m = self.module
        m.training = self.training
        m._parameters.clear()
        m._parameters.update(self.parameters)
        m._buffers.clear()
        m._buffers.update(self.buffers)
        m._non_persistent_buffers_set.clear()
        m._non_persistent_buffers_set.update(self.non_persistent)


@dataclass
class Snapshot:
    """The saved state of one model/optimizer/scaler set; see the module docstring."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: Any
    modules: list[_Slots]
    tensors: list[torch.Tensor]  # live tensors, in the order of the saved values
    requires_grad: list[bool]
    groups: list[dict[str, Any]]
    counters: dict[str, Any]
    scaler_state: dict[str, Any] | None
    rng: _Rng
    # payload: {"values": [...], "grads": [...], "opt_state": {position: {key: value}}}; on disk its
    # tensors are _OnDisk records of the shards in ``store`` (in the folder ``path``)
    payload: dict[str, Any] | None = None
    path: str | None = None
    own_dir: str | None = None
    state_devices: dict[tuple[int, str], torch.device] = field(default_factory=dict)
    store: _ShardStore | None = None

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data the snapshot holds (or holds on disk)."""
        return _payload_nbytes(self.payload or {})

    def _load(self) -> dict[str, Any]:
        if self.payload is None:
            raise RuntimeError("the snapshot was discarded; run range_test() again")
        return self.payload

    def restore(self) -> None:
        """Put everything back bit for bit, in place. Safe to call any number of times."""
        payload = self._load()
        try:
            self._restore(payload)
        finally:
            if self.store is not None:
                self.store.release()  # unmap the last shard read

    def _restore(self, payload: dict[str, Any]) -> None:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for t, grad in zip(self.tensors, payload["grads"], strict=True):
            if grad is None:  # free the sweep's gradients first: a lower peak while values are copied
                t.grad = None
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
                t.grad = _fresh(grad, t.device)
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
                if _is_saved_tensor(value):
                    device = self.state_devices.get((pos, key), p.device)
                    current = live.get(key)
                    if isinstance(current, torch.Tensor) and current.device == device:
                        live[key] = _copy_into(current, value)
                    else:
                        live[key] = _fresh(value, device)
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
        for slots in self.modules:
            slots.restore()
        if self.scaler is not None and self.scaler_state is not None:
            self.scaler.load_state_dict(copy.deepcopy(self.scaler_state))
        self.rng.restore()

    def discard(self) -> None:
        """Free the copy: drop it from memory, delete the shard files and the private folder."""
        self.payload = None
        if self.store is not None:
            self.store.release()
            for shard in self.store.paths:
                if os.path.exists(shard):
                    os.remove(shard)
            self.store = None
        self.path = None
        if self.own_dir is not None:
            shutil.rmtree(self.own_dir, ignore_errors=True)
            self.own_dir = None


def _payload_nbytes(payload: dict[str, Any]) -> int:
    def walk(obj: Any) -> Iterator[torch.Tensor | _OnDisk]:
        if isinstance(obj, (torch.Tensor, _OnDisk)):
            yield obj
        elif isinstance(obj, dict):
            for v in obj.values():
                yield from walk(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                yield from walk(v)

    return sum(t.nbytes if isinstance(t, _OnDisk) else t.numel() * t.element_size() for t in walk(payload))


def check_cache_dir(cache_dir: str | os.PathLike[str], needed: int | None = None) -> None:
    """Raise :class:`~lr_finder.errors.StorageError` now, before any training, when ``cache_dir`` is unusable.

    With ``needed`` (bytes of a disk snapshot) the folder is created and must have the space; without it
    (the memory snapshot, where only the finder's output files go there later) nothing is created: the
    folder, or the nearest folder above it that exists, must be writable.
    """
    path = os.fspath(cache_dir)
    fix = "pass a writable cache_dir" + (", or memory_cache=True" if needed is not None else "")
    probe_dir = path
    while needed is None and not os.path.exists(probe_dir) and os.path.dirname(probe_dir) != probe_dir:
        probe_dir = os.path.dirname(probe_dir) or "."
    if os.path.exists(probe_dir) and not os.path.isdir(probe_dir):
        where = "" if probe_dir == path else f" ({probe_dir!r} is a file)"
        raise StorageError(f"cache_dir {path!r} is a file, not a folder{where}: pass a folder path")
    try:
        if needed is not None:
            os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".lr_finder_probe_", dir=probe_dir)
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise StorageError(f"cache_dir {path!r} is not writable ({exc.strerror}): {fix}") from exc
    if needed is None:
        return
    free = shutil.disk_usage(path).free
    if free < needed * 1.05 + (1 << 20):
        raise StorageError(
            f"not enough free disk space in cache_dir {path!r}: the snapshot needs about {needed / 2**20:.1f} "
            f"MiB, {free / 2**20:.1f} MiB are free; free some space, pass another cache_dir, or use "
            "memory_cache=True"
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
    modules = [_Slots.capture(m) for root in [model, *extra] for m in root.modules()]
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
    live: dict[str, Any] = {
        "values": [t.detach() for t in tensors],
        "grads": [None if t.grad is None else t.grad.detach() for t in tensors],
        "opt_state": live_state,
    }
    pin = torch.cuda.is_available()
    if memory_cache:
        if cache_dir is not None:  # the finder writes its outputs there after the sweep: refuse it now
            check_cache_dir(cache_dir)
        snap.payload = _to_host(live, pin)
        return snap
    # On disk, in shards (see _ShardStore): one shard at a time is in memory, writing and reading.
    needed = _payload_nbytes(live)
    if cache_dir is not None:
        check_cache_dir(cache_dir, needed)
    snap.own_dir = tempfile.mkdtemp(prefix="lr_finder_snapshot_", dir=None if cache_dir is None else cache_dir)
    try:
        if cache_dir is None:
            check_cache_dir(snap.own_dir, needed)
        found: list[torch.Tensor] = []
        _scan_tensors(live, found)
        aligned = sum(-(-t.numel() * t.element_size() // _ALIGN) * _ALIGN for t in found)
        store = _ShardStore(snap.own_dir, max(_ALIGN, min(_shard_bytes(needed), aligned)))
        snap.store = store
        # written in the order restore() reads: each tensor's value then grad, then the optimizer state
        values, grads = [], []
        for value, grad in zip(live["values"], live["grads"], strict=True):
            values.append(store.add(value))
            grads.append(None if grad is None else store.add(grad))
        opt_state = {
            pos: {k: store.add(v) if isinstance(v, torch.Tensor) else _to_host(v, pin) for k, v in st.items()}
            for pos, st in sorted(live_state.items())
        }
        store.finish()
    except BaseException:
        snap.discard()
        raise
    snap.payload = {"values": values, "grads": grads, "opt_state": opt_state}
    snap.path = snap.own_dir
    logger.debug("snapshot written to %s (%d shards)", snap.own_dir, len(store.paths))
    return snap
