"""Flat host buffers for snapshots: one allocation per snapshot, off the malloc heap, on huge pages if offered.

Profiled on a 63 MB snapshot (5.3M-parameter MLP + Adam): ``clone()`` into fresh 4 KiB pages spent most of
its ~45 ms CPU in first-touch page faults and ``free`` ~6 ms; packed into one buffer on 2 MiB pages the same
copy takes ~17 ms and the free ~0.4 ms. A buffer in its own mapping also goes straight back to the OS when
freed: a snapshot's worth of freed heap blocks can leave glibc handing memory back that every later training
step then faults in again (thousands of page faults per step were seen with per-tensor copies).
"""

from __future__ import annotations

import mmap
from typing import Any

import torch

from ._logging import logger

#: Put in-memory snapshots of CPU tensors on transparent huge pages (Linux, ``madvise`` mode or ``always``).
USE_HUGE_PAGES = True
HUGE_PAGE = 2 << 20
ALIGN = 64  # byte alignment of each tensor inside a flat buffer


def aligned(nbytes: int) -> int:
    """``nbytes`` rounded up to :data:`ALIGN`."""
    return -(-nbytes // ALIGN) * ALIGN


def _anonymous(nbytes: int) -> mmap.mmap:
    return mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | getattr(mmap, "MAP_ANONYMOUS", 0))


def mapped_bytes(nbytes: int) -> torch.Tensor:
    """A flat ``uint8`` CPU tensor of exactly ``nbytes`` in its own anonymous mapping (small pages)."""
    try:
        return torch.frombuffer(_anonymous(nbytes), dtype=torch.uint8)  # keeps the mapping alive
    except (OSError, ValueError, RuntimeError, TypeError, AttributeError):  # pragma: no cover - not POSIX
        return torch.empty(nbytes, dtype=torch.uint8)


def host_buffer(nbytes: int) -> torch.Tensor:
    """A flat ``uint8`` CPU tensor of ``nbytes``, on transparent huge pages where the OS offers them.

    Only the 2 MiB-aligned middle of the mapping is advised huge, so the resident size stays the bytes used
    (rounded to 4 KiB), never a partly used huge page. Anywhere else (not Linux, small buffers, THP off) this
    is an ordinary allocation.
    """
    if USE_HUGE_PAGES and nbytes >= HUGE_PAGE and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            mapping = _anonymous(nbytes + HUGE_PAGE)
            whole = torch.frombuffer(mapping, dtype=torch.uint8)  # keeps ``mapping`` alive
            start = -whole.data_ptr() % HUGE_PAGE
            huge = nbytes // HUGE_PAGE * HUGE_PAGE
            mapping.madvise(mmap.MADV_HUGEPAGE, start, huge)
            if hasattr(mmap, "MADV_NOHUGEPAGE"):  # the partial tail stays on small pages under THP=always
                mapping.madvise(mmap.MADV_NOHUGEPAGE, start + huge, len(mapping) - start - huge)
            return whole[start : start + nbytes]
        except (OSError, ValueError, RuntimeError, TypeError) as exc:  # pragma: no cover - platform dependent
            logger.debug("huge-page snapshot buffer unavailable (%s): using an ordinary allocation", exc)
    return torch.empty(nbytes, dtype=torch.uint8)


def raw_bytes(t: torch.Tensor) -> bool:
    """Whether the bytes of ``t`` are its values: dense, not quantized, no lazy conjugate or negation bit."""
    return t.layout == torch.strided and not t.is_quantized and not t.is_conj() and not t.is_neg()


def _plain(t: torch.Tensor) -> bool:
    """A plain tensor (no subclass) whose values a flat buffer's view can hold."""
    return type(t) is torch.Tensor and raw_bytes(t)


def packable(t: torch.Tensor) -> bool:
    """A plain dense contiguous CPU tensor, which can live in a view of a flat buffer."""
    return t.device.type == "cpu" and _plain(t) and t.is_contiguous()


def device_packable(t: torch.Tensor) -> bool:
    """A plain dense accelerator tensor whose values can be copied into a view of a flat pinned buffer."""
    return t.device.type == "cuda" and _plain(t)


def _views(buffer: torch.Tensor, tensors: list[torch.Tensor]) -> dict[int, torch.Tensor]:
    """One view per tensor (its dtype and shape) of consecutive aligned slices of ``buffer``, by ``id`` of
    the tensor; one whose dtype cannot be viewed from bytes is left out."""
    views: dict[int, torch.Tensor] = {}
    offset = 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        try:
            views[id(t)] = buffer[offset : offset + nbytes].view(t.dtype).view(t.shape)
        except RuntimeError:
            continue
        offset += aligned(nbytes)
    return views


def pack(tensors: list[torch.Tensor]) -> dict[int, torch.Tensor]:
    """Copies of the :func:`packable` ``tensors`` in one :func:`host_buffer`, by ``id`` of the original.

    A tensor listed twice is copied once; one whose dtype cannot be viewed from bytes is left out (the
    caller clones it).
    """
    found = list({id(t): t for t in tensors if packable(t)}.values())
    if not found:
        return {}
    copies = _views(host_buffer(sum(aligned(t.numel() * t.element_size()) for t in found)), found)
    for t in found:
        if id(t) in copies:
            copies[id(t)].copy_(t)
    return copies


class PinnedPool:
    """One page-locked host buffer, kept between the snapshots of one finder (``verify`` takes several).

    Allocating pinned memory is far slower than copying into it (the pages are locked one by one), so the
    buffer is reused while it is large enough and freed by :meth:`release` (``LRFinder.close``).
    """

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None

    def take(self, nbytes: int) -> torch.Tensor:
        if self._buffer is None or self._buffer.numel() < nbytes:
            self._buffer = None  # the old one goes first: never two at once
            self._buffer = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        return self._buffer[:nbytes]

    def release(self) -> None:
        self._buffer = None


class DeviceCopy:
    """Device-to-host copies of accelerator tensors, running on a side stream while training starts.

    The copies of ``early`` tensors (buffers, gradients: what a forward or backward pass may change in
    place) are recorded by one event, the rest (weights, optimizer state: changed only by the optimizer's
    step) by a second. :meth:`before_forward` and :meth:`before_step` make the compute stream wait for them
    on the device, without blocking the host, so the bulk of the copy overlaps the first forward and
    backward passes. The source tensors are marked as used by the side stream, so memory freed meanwhile
    (``zero_grad(set_to_none=True)``) is not handed out again before the copy has read it. Tensors that
    are not :func:`device_packable` are left out of :attr:`copies` (the caller copies them itself).
    """

    def __init__(self, early: list[torch.Tensor], rest: list[torch.Tensor], pool: PinnedPool) -> None:
        first = {id(t) for t in early}
        unique = [t for t in {id(t): t for t in [*early, *rest]}.values() if device_packable(t)]
        groups = ([t for t in unique if id(t) in first], [t for t in unique if id(t) not in first])
        buffer = pool.take(sum(aligned(t.numel() * t.element_size()) for t in unique))
        self.copies = _views(buffer, [*groups[0], *groups[1]])  # by ``id`` of the live tensor
        self._streams = {t.device: torch.cuda.Stream(t.device) for t in unique}
        for device, side in self._streams.items():
            side.wait_stream(torch.cuda.current_stream(device))  # the values as they are now
        self._events: list[dict[torch.device, Any]] = []
        for group in groups:
            for t in (t for t in group if id(t) in self.copies):
                side = self._streams[t.device]
                with torch.cuda.stream(side):
                    self.copies[id(t)].copy_(t, non_blocking=True)
                t.record_stream(side)
            self._events.append({device: side.record_event() for device, side in self._streams.items()})

    def _wait(self, stages: int) -> None:
        for events in self._events[:stages]:
            for device, event in events.items():
                torch.cuda.current_stream(device).wait_event(event)
            events.clear()

    def before_forward(self) -> None:
        self._wait(1)

    def before_step(self) -> None:
        self._wait(2)

    def settle(self) -> None:
        """Block the host until every copy has landed: before the host itself reads the buffer, or when
        nothing will wait for the copies (a capture that failed half-way)."""
        for side in self._streams.values():
            side.synchronize()
        self._wait(2)
