"""The memory backend: the state's values copied into one flat host buffer.

One allocation for the whole state instead of one per tensor: a snapshot's worth of small freed heap blocks
can leave the allocator handing memory back that the next training steps then fault in again, and a single
buffer is freed in one call. CUDA tensors go into a page-locked buffer that the finder reuses between its
snapshots (pinning memory costs far more than copying into it): non-blocking copies, then one
synchronisation, before the first training step.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

ALIGN = 64  # byte alignment of each tensor inside a flat buffer


def _nbytes(t: torch.Tensor) -> int:
    return -(-t.numel() * t.element_size() // ALIGN) * ALIGN


def raw_bytes(t: torch.Tensor) -> bool:
    """Whether the bytes of ``t`` are its values: dense, not quantized, no lazy conjugate or negation bit."""
    return t.layout == torch.strided and not t.is_quantized and not t.is_conj() and not t.is_neg()


def _views(buffer: torch.Tensor, tensors: Iterable[torch.Tensor]) -> dict[int, torch.Tensor]:
    """One contiguous view of ``buffer`` per tensor (its dtype and shape), by ``id`` of the tensor."""
    views, offset = {}, 0
    for t in tensors:
        n = t.numel() * t.element_size()
        views[id(t)] = buffer[offset : offset + n].view(t.dtype).view(t.shape)
        offset += _nbytes(t)
    return views


class PinnedBuffer:
    """A page-locked host buffer kept between the snapshots of one finder (``verify()`` takes several)."""

    def __init__(self) -> None:
        self.buffer: torch.Tensor | None = None

    def take(self, nbytes: int) -> torch.Tensor:
        if self.buffer is None or self.buffer.numel() < nbytes:
            self.buffer = None  # the old one goes first: never two at once
            self.buffer = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        return self.buffer[:nbytes]

    def release(self) -> None:
        self.buffer = None


def copy_to_host(tensors: list[torch.Tensor], pinned: PinnedBuffer) -> dict[int, torch.Tensor]:
    """A CPU copy of each tensor, by ``id``: plain tensors packed in one buffer per kind (CPU memory, or the
    pinned buffer for CUDA tensors), anything else (a subclass, sparse, quantized) cloned on its own.

    Returns once every copy has landed.
    """
    unique = list({id(t): t for t in tensors}.values())
    plain = [t for t in unique if type(t) is torch.Tensor and raw_bytes(t)]
    on_cpu = [t for t in plain if t.device.type == "cpu"]
    on_cuda = [t for t in plain if t.device.type == "cuda"]
    copies = _views(torch.empty(sum(map(_nbytes, on_cpu)), dtype=torch.uint8), on_cpu)
    if on_cuda:
        copies.update(_views(pinned.take(sum(map(_nbytes, on_cuda))), on_cuda))
    for t in unique:
        if id(t) in copies:
            copies[id(t)].copy_(t, non_blocking=t.device.type == "cuda")
        else:
            copies[id(t)] = t.to("cpu", copy=True)
    for device in {t.device for t in unique if t.device.type == "cuda"}:
        torch.cuda.synchronize(device)  # the one wait: every copy to the host has landed
    return copies
