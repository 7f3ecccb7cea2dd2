"""The record of one range test: an immutable result, readable like torch-lr-finder's dict."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import InputError

KEYS = ("lr", "loss", "raw_loss")


@dataclass(frozen=True)
class History(Mapping[str, Any]):
    """Learning rates, smoothed losses and raw losses of a sweep, equal lengths, plus why it stopped.

    ``history["lr"]``, ``history["loss"]`` (smoothed, what the suggestion uses) and ``history["raw_loss"]``
    are tuples of floats; ``history["stop_reason"]`` is ``None`` when the sweep ran all ``num_iter`` steps.
    """

    lr: tuple[float, ...] = ()
    loss: tuple[float, ...] = ()
    raw_loss: tuple[float, ...] = ()
    stop_reason: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not len(self.lr) == len(self.loss) == len(self.raw_loss):
            raise InputError(
                f"history columns differ in length: lr {len(self.lr)}, loss {len(self.loss)}, "
                f"raw_loss {len(self.raw_loss)}"
            )

    def __getitem__(self, key: str) -> Any:
        if key in (*KEYS, "stop_reason"):
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter((*KEYS, "stop_reason"))

    def __len__(self) -> int:
        return len(KEYS) + 1

    @property
    def num_steps(self) -> int:
        return len(self.lr)

    @property
    def stopped_early(self) -> bool:
        return self.stop_reason is not None

    def analyze(self, method: str = "default") -> Any:
        """The :class:`lr_finder.Suggestion` for this curve.

        It reads the raw per-step losses, which :func:`lr_finder.analyze` smooths without lag; the EMA in
        ``loss`` lags about ``1 / smooth_f`` steps behind and drives only the stop rule and the plot
        (``benchmarks/suggestion_quality.py`` measured both inputs).
        """
        from .suggestion import analyze

        return analyze(self.lr, self.raw_loss, method)

    def to_dataframe(self) -> Any:
        """The per-step columns as a pandas DataFrame (needs pandas: ``pip install pandas``)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - exercised with pandas hidden
            raise ImportError("History.to_dataframe needs pandas: pip install 'lr-finder[pandas]'") from exc
        return pd.DataFrame({"lr": self.lr, "raw_loss": self.raw_loss, "loss": self.loss})
