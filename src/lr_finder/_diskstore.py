"""The disk snapshot: tensors cut into shard files in a private folder, read back one shard at a time.

Each shard holds the bytes of consecutive 1-D pieces of the tensors, each at a 64-byte aligned offset; the
shapes, dtypes and offsets stay in memory in the :class:`OnDisk` records. Shards are about 1/64 of the
snapshot (1 to 64 MiB), so writing and restoring hold one shard besides the live state, never a second copy.
The bytes pass through one staging buffer in its own mapping, reused for every shard (see ``_hostmem``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field

import torch

from ._hostmem import aligned, mapped_bytes
from .errors import StorageError

SHARD_MIN, SHARD_MAX = 1 << 20, 64 << 20


def shard_bytes(total: int) -> int:
    """Bytes per shard of a disk snapshot of ``total`` bytes: about 1/64 of it, between 1 MiB and 64 MiB."""
    return min(SHARD_MAX, max(SHARD_MIN, total // 64))


class ShardStore:
    """Shard files of at most ``shard_bytes`` in ``folder`` (which it owns and deletes).

    Tensors are :meth:`add`-ed in the order a restore reads them, so a restore loads each shard once.
    """

    def __init__(self, folder: str, total: int) -> None:
        self.folder = folder
        self.shard_bytes = max(aligned(1), min(shard_bytes(total), total))
        self.paths: list[str] = []
        self._other: list[torch.Tensor] = []  # pieces of a dtype that cannot be viewed from bytes
        self._size = 0
        self._staging: torch.Tensor | None = None
        self._loaded: tuple[int, torch.Tensor, list[torch.Tensor]] | None = None

    def add(self, t: torch.Tensor) -> OnDisk:
        """Write ``t``'s values (into the staging buffer, flushed to a shard file when full)."""
        flat = (t if t.is_contiguous() else t.contiguous()).reshape(-1)
        size = flat.element_size()
        pieces = []
        start, n = 0, flat.numel()
        while start < n:
            offset = aligned(self._size)
            room = (self.shard_bytes - offset) // size
            if room < 1:
                self._flush()
                continue
            stop = min(n, start + room)
            nbytes = (stop - start) * size
            if self._staging is None:
                self._staging = mapped_bytes(self.shard_bytes)
            try:
                self._staging[offset : offset + nbytes].view(flat.dtype).copy_(flat[start:stop])
                pieces.append((len(self.paths), offset, start, stop))
            except RuntimeError:  # a dtype that cannot be viewed from bytes: saved as its own tensor
                self._other.append(flat[start:stop].to("cpu", copy=True))
                pieces.append((len(self.paths), -len(self._other), start, stop))
            self._size = offset + nbytes  # odd pieces are counted against the shard all the same
            start = stop
        return OnDisk(tuple(t.shape), t.dtype, tuple(pieces), self)

    def finish(self) -> None:
        """Write the last shard and free the staging buffer."""
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
        """The saved piece at byte ``where`` of shard ``shard`` (or its ``-where``-th odd piece)."""
        if self._loaded is None or self._loaded[0] != shard:
            self._loaded = None  # unmap the previous shard before mapping the next
            if shard >= len(self.paths) or not os.path.exists(self.paths[shard]):
                raise RuntimeError("the disk snapshot was discarded or deleted; run range_test() again")
            data = torch.load(self.paths[shard], map_location="cpu", weights_only=True, mmap=True)
            self._loaded = (shard, data["bytes"], data["other"])
        _, data, other = self._loaded
        if where < 0:
            return other[-where - 1]
        return data[where : where + numel * dtype.itemsize].view(dtype)

    def release(self) -> None:
        """Drop the shard last read (call after a restore)."""
        self._loaded = None

    def delete(self) -> None:
        """Delete the shard files and the folder."""
        self.release()
        self.paths = []
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass(frozen=True)
class OnDisk:
    """A tensor saved in a :class:`ShardStore`: shape, dtype, pieces ``(shard, byte offset, start, stop)``."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    pieces: tuple[tuple[int, int, int, int], ...]
    store: ShardStore = field(repr=False, compare=False)

    def fill(self, dst: torch.Tensor) -> None:
        """Copy the saved values into ``dst`` (same shape and dtype, any device), one piece at a time."""
        target = dst if dst.is_contiguous() else torch.empty(self.shape, dtype=self.dtype)
        flat = target.view(-1)
        for shard, where, start, stop in self.pieces:
            flat[start:stop].copy_(self.store.piece(shard, where, self.dtype, stop - start))
        if target is not dst:
            dst.copy_(target)

    def fresh(self, device: torch.device) -> torch.Tensor:
        """A new tensor on ``device`` holding the saved values."""
        out = torch.empty(self.shape, dtype=self.dtype, device=device)
        self.fill(out)
        return out


def open_store(cache_dir: str | os.PathLike[str] | None, total: int) -> ShardStore:
    """A store for ``total`` bytes in a new private folder (inside ``cache_dir`` when given), space checked."""
    if cache_dir is not None:
        check_cache_dir(cache_dir, total)
    folder = tempfile.mkdtemp(prefix="lr_finder_snapshot_", dir=None if cache_dir is None else cache_dir)
    try:
        if cache_dir is None:
            check_cache_dir(folder, total)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return ShardStore(folder, total)


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
