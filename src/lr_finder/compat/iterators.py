"""torch-lr-finder's loader iterators, which iterate as its own do: subclasses that override
:meth:`DataLoaderIter.inputs_labels_from_batch` for batches other than ``(inputs, labels, ...)`` work unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..errors import InputError, InputTypeError


class DataLoaderIter(Iterator[tuple[Any, Any]]):
    """Iterates ``data_loader`` once, yielding ``inputs_labels_from_batch(batch)`` for each batch.

    Args:
        data_loader: a ``torch.utils.data.DataLoader`` (any re-iterable with ``dataset`` works).
    """

    def __init__(self, data_loader: Iterable[Any]) -> None:
        self.data_loader = data_loader
        self._iterator = iter(data_loader)

    @property
    def dataset(self) -> Any:
        return self.data_loader.dataset  # type: ignore[attr-defined]

    def inputs_labels_from_batch(self, batch_data: Any) -> tuple[Any, Any]:
        """``(inputs, labels)`` of one batch, the first two items of a tuple or list; override it for other
        batches. The model is called as ``model(inputs)`` and the loss as ``criterion(outputs, labels)``."""
        if not isinstance(batch_data, (list, tuple)):
            raise InputTypeError(
                f"Your batch type is not supported: {type(batch_data).__name__}. Subclass "
                "lr_finder.compat.TrainDataLoaderIter (and ValDataLoaderIter for val_loader) and override "
                "inputs_labels_from_batch(self, batch) to return (inputs, labels)"
            )
        if len(batch_data) < 2:
            raise InputError(
                f"a batch of {len(batch_data)} item(s) has no (inputs, labels): make the loader yield "
                "(inputs, labels, ...) or override inputs_labels_from_batch in a TrainDataLoaderIter subclass"
            )
        return batch_data[0], batch_data[1]

    def __next__(self) -> tuple[Any, Any]:  # __iter__ (return self) comes with Iterator
        return self.inputs_labels_from_batch(next(self._iterator))


class TrainDataLoaderIter(DataLoaderIter):
    """A :class:`DataLoaderIter` that starts the loader over when it ends, unless ``auto_reset=False`` (then
    it raises ``StopIteration`` at the end of the loader)."""

    def __init__(self, data_loader: Iterable[Any], auto_reset: bool = True) -> None:
        super().__init__(data_loader)
        self.auto_reset = auto_reset

    def __next__(self) -> tuple[Any, Any]:
        try:
            batch = next(self._iterator)
        except StopIteration:
            if not self.auto_reset:
                raise
            self._iterator = iter(self.data_loader)
            batch = next(self._iterator)
        return self.inputs_labels_from_batch(batch)


class ValDataLoaderIter(DataLoaderIter):
    """A :class:`DataLoaderIter` for one pass per evaluation: ``iter()`` on it starts a new pass once the
    previous one has ended (as ``for batch in it`` does); a pass left half-way is continued, not restarted.
    """

    def __init__(self, data_loader: Iterable[Any]) -> None:
        super().__init__(data_loader)
        self.run_limit = len(data_loader)  # type: ignore[arg-type]
        self.run_counter = 0

    def __iter__(self) -> ValDataLoaderIter:
        if self.run_counter >= self.run_limit:
            self._iterator = iter(self.data_loader)
            self.run_counter = 0
        return self

    def __next__(self) -> tuple[Any, Any]:
        self.run_counter += 1
        return super().__next__()
