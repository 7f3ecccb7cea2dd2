"""Drawing batches from the user's loader for a sweep (cycled when it is shorter), and leaving the loader as
it was found (see :class:`LoaderBookkeeping`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch

from .errors import InputError


def is_one_shot(loader: Any) -> bool:
    """Whether ``loader`` can be iterated only once: an iterator whose ``iter()`` is itself (not a fresh one)."""
    return isinstance(loader, Iterator) and iter(loader) is loader


class LoaderBookkeeping:
    """What iterating a loader changes besides the data, saved to be put back.

    * A ``DataLoader`` with ``persistent_workers=True`` keeps the iterator (and its worker processes) that
      the first ``iter()`` created and reuses it for every later epoch; one created by the range test
      would give the next epoch another shuffling (it has drawn its worker seed and sampler order from the
      RNGs in a different order than a fresh one does). An iterator the test created is shut down and
      dropped, so the user's first ``iter()`` starts exactly as it would have.
    * accelerate's ``DataLoaderShard`` counts its finished passes in ``iteration`` (the epoch its seedable
      sampler shuffles with) and registers in accelerate's ``GradientState`` while a pass runs; a pass left
      half-way stays registered.
    Other loaders have none of these, and nothing is saved for them.
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        # DataLoader keeps the persistent iterator in a private attribute; there is no public handle on it
        persistent = bool(getattr(loader, "persistent_workers", False)) and hasattr(loader, "_iterator")
        self.no_iterator_yet = persistent and loader._iterator is None
        state = getattr(loader, "gradient_state", None)
        references = getattr(state, "dataloader_references", None)
        self.references = None if references is None else list(references)
        iteration = getattr(loader, "iteration", None) if self.references is not None else None
        self.iteration = iteration if isinstance(iteration, int) else None

    def restore(self) -> None:
        if self.no_iterator_yet:
            created = getattr(self.loader, "_iterator", None)
            if created is not None:
                created._shutdown_workers()
                self.loader._iterator = None
        if self.iteration is not None:
            self.loader.iteration = self.iteration
        if self.references is not None:
            self.loader.gradient_state.dataloader_references = list(self.references)


class BatchStream:
    """Batches from a loader, starting it over when it ends; :meth:`close` puts the loader back."""

    def __init__(self, loader: Iterable[Any], name: str = "train_loader") -> None:
        self.loader = loader
        self.name = name
        self.one_shot = is_one_shot(loader)
        self._bookkeeping = LoaderBookkeeping(loader)
        self._it: Iterator[Any] = iter(loader)
        self._in_pass = 0
        self.total = 0
        self.passes = 1  # passes started

    def next(self) -> Any:
        try:
            batch = next(self._it)
        except StopIteration:
            if self.one_shot:
                raise InputError(
                    f"{self.name} (a one-shot iterator) ran out after {self.total} batches: pass a re-iterable "
                    "loader such as a DataLoader (it is cycled as needed), or lower num_iter"
                ) from None
            if self._in_pass == 0:
                raise InputError(f"{self.name} yielded no batches: pass a loader with at least one batch") from None
            self._it, self._in_pass = iter(self.loader), 0
            self.passes += 1
            batch = next(self._it, _END)
            if batch is _END:
                raise InputError(f"{self.name} yielded no batches on its second pass: it cannot be cycled") from None
        self._in_pass += 1
        self.total += 1
        return batch

    def close(self) -> None:
        """Drop the pass in progress and put back the loader's bookkeeping. Safe to call more than once."""
        self._it = iter(())
        self._in_pass = 0
        self._bookkeeping.restore()


_END = object()


def loader_generators(loader: Any) -> list[torch.Generator]:
    """Generators a DataLoader draws its shuffling from, so the data order after the test is unchanged."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    owners = (loader, getattr(loader, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None))
    return [g for owner in owners if isinstance(g := getattr(owner, "generator", None), torch.Generator)]
