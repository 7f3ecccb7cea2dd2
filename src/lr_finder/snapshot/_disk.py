"""The disk backend: the tensors' raw bytes in one file in a private folder, no pickling on the way.

``torch.save`` spent most of a capture in its zip writer (CRC-32 of every byte, ~1.4 GB/s at 200M
parameters); the bytes are written as they are, and the shapes, dtypes and offsets stay in memory in the
:class:`OnDisk` records. A CPU tensor is written straight from its own memory and read back straight into
the live tensor (``os.write`` / ``os.preadv``), so a disk snapshot costs a copy into the page cache and one
back, and adds no memory beyond the state. Anything else (CUDA, non-contiguous tensors) passes through one
scratch buffer of at most :data:`CHUNK` bytes, reused for every piece. Tensors whose bytes are not their
values (sparse, quantized) are few and small: the snapshot keeps them in memory (see ``capture``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field

import torch

from ..errors import StorageError
from ._memory import raw_bytes

#: Largest piece written or read at once: bounds the scratch buffer for tensors not in CPU memory.
CHUNK = 64 << 20


def _bytes_of(flat: torch.Tensor) -> memoryview:
    """The memory of a 1-D contiguous CPU tensor as a writable byte view (no copy)."""
    return memoryview(flat.view(torch.uint8).numpy())  # type: ignore[arg-type]  # numpy arrays are buffers


class DiskStore:
    """The snapshot file ``snapshot.bin`` in ``folder``, which it owns."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = os.path.join(folder, "snapshot.bin")
        self._fd: int | None = os.open(self.path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._size = 0
        self._scratch: torch.Tensor | None = None

    def add(self, t: torch.Tensor) -> OnDisk:
        """Write the values of ``t`` (its bytes are its values) at the end of the file; the record to read
        them back with."""
        flat = (t if t.is_contiguous() else t.contiguous()).reshape(-1)
        size, n = flat.element_size(), flat.numel()
        step = max(1, CHUNK // size)
        pieces = []
        for start in range(0, n, step):
            stop = min(n, start + step)
            piece = flat[start:stop]
            if piece.device.type != "cpu":
                piece = self._scratch_for((stop - start) * size).view(flat.dtype).copy_(piece)
            pieces.append((self._size, start, stop))
            self._write(_bytes_of(piece))
        return OnDisk(tuple(t.shape), t.dtype, tuple(pieces), self)

    def _write(self, data: memoryview) -> None:
        assert self._fd is not None, "add() after finish()"
        done = 0
        while done < len(data):  # a single write() may write less (at most ~2 GiB on Linux)
            done += os.write(self._fd, data[done:])
        self._size += done

    def finish(self) -> None:
        """Close the file under its final name; free the scratch buffer."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            os.replace(self.path + ".tmp", self.path)
        self._scratch = None

    def _scratch_for(self, nbytes: int) -> torch.Tensor:
        if self._scratch is None or self._scratch.numel() < nbytes:
            self._scratch = None  # the old one goes back before the larger one is mapped
            self._scratch = torch.empty(max(nbytes, 1 << 20), dtype=torch.uint8)
        return self._scratch[:nbytes]

    def read_into(self, dst: torch.Tensor, offset: int) -> None:
        """Fill the 1-D ``dst`` with the bytes at ``offset`` (directly in CPU memory, else via scratch)."""
        if self._fd is None:
            if not os.path.exists(self.path):
                raise RuntimeError("the disk snapshot was discarded or deleted; run range_test() again")
            self._fd = os.open(self.path, os.O_RDONLY)
        nbytes = dst.numel() * dst.element_size()
        target = dst if dst.device.type == "cpu" else self._scratch_for(nbytes).view(dst.dtype)
        view = _bytes_of(target)
        done = 0
        while done < nbytes:
            got = os.preadv(self._fd, [view[done:]], offset + done)
            if got <= 0:
                raise RuntimeError(f"the disk snapshot {self.path} is truncated; run range_test() again")
            done += got
        if target is not dst:
            dst.copy_(target)

    def release(self) -> None:
        """Close the file and free the scratch buffer (call after a restore)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._scratch = None

    def delete(self) -> None:
        """Delete the files and the folder."""
        self.release()
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass(frozen=True)
class OnDisk:
    """A tensor saved in a :class:`DiskStore`: shape, dtype and pieces ``(file offset, start, stop)``."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    pieces: tuple[tuple[int, int, int], ...]
    store: DiskStore = field(repr=False, compare=False)

    def fill(self, dst: torch.Tensor) -> None:
        """Copy the saved values into ``dst`` (same shape and dtype, any device)."""
        target = dst if dst.is_contiguous() and raw_bytes(dst) else torch.empty(self.shape, dtype=self.dtype)
        flat = target.view(-1)
        for offset, start, stop in self.pieces:
            self.store.read_into(flat[start:stop], offset)
        if target is not dst:
            dst.copy_(target)

    def fresh(self, device: torch.device) -> torch.Tensor:
        """A new tensor on ``device`` holding the saved values."""
        out = torch.empty(self.shape, dtype=self.dtype, device=device)
        self.fill(out)
        return out


def open_store(cache_dir: str | os.PathLike[str] | None, total: int) -> DiskStore:
    """A store for ``total`` bytes in a new private folder (inside ``cache_dir`` when given), space checked."""
    if cache_dir is not None:
        check_writable(cache_dir, total)
    folder = tempfile.mkdtemp(prefix="lr_finder_snapshot_", dir=None if cache_dir is None else cache_dir)
    try:
        if cache_dir is None:
            check_writable(folder, total)
        return DiskStore(folder)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def check_writable(cache_dir: str | os.PathLike[str], needed: int | None = None) -> None:
    """Raise :class:`~lr_finder.errors.StorageError` now, before any training, when ``cache_dir`` is unusable.

    With ``needed`` (bytes of a disk snapshot) the folder is created and must have the space; without it
    (the memory snapshot, where only the finder's output files go there later) nothing is created: the
    folder, or the nearest folder above it that exists, must be writable.
    """
    path = os.fspath(cache_dir)
    fix = "pass a writable cache_dir" + (", or memory_cache=True" if needed is not None else "")
    probe_dir = path  # the folder itself, or the nearest one above it that exists
    while not os.path.exists(probe_dir) and os.path.dirname(probe_dir) != probe_dir:
        probe_dir = os.path.dirname(probe_dir) or "."
    if os.path.exists(probe_dir) and not os.path.isdir(probe_dir):
        where = "" if probe_dir == path else f" ({probe_dir!r} is a file)"
        raise StorageError(f"cache_dir {path!r} is a file, not a folder{where}: pass a folder path")
    try:
        if needed is not None:
            os.makedirs(path, exist_ok=True)
            probe_dir = path
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
