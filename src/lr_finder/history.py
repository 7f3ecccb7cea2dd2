"""The record of one range test: an immutable result that is also a plain ``dict`` of its columns."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, NoReturn

from .errors import InputError

KEYS = ("lr", "loss", "raw_loss")


@dataclass(frozen=True, eq=False)
class History(dict):  # type: ignore[type-arg]
    """Learning rates, smoothed losses and raw losses of a sweep, equal lengths, plus why it stopped.

    It is a ``dict`` with the per-step columns ``"lr"``, ``"loss"`` (the EMA that drives the stop rule)
    and ``"raw_loss"``, each a tuple of floats, so it goes wherever a dict goes: ``pd.DataFrame(history)``,
    ``json.dumps(history)``, ``dict(history)``, ``history["lr"][-1]``. It is read-only (``dict(history)``
    is a mutable copy). ``history["stop_reason"]`` (also :attr:`stop_reason`) is ``None`` when the sweep
    ran all ``num_iter`` steps; :attr:`settings` records the run.

    >>> import json
    >>> h = History((1e-3, 1e-2), (2.0, 1.5), (2.0, 1.0))
    >>> json.dumps(h), h["lr"][-1], h["stop_reason"]
    ('{"lr": [0.001, 0.01], "loss": [2.0, 1.5], "raw_loss": [2.0, 1.0]}', 0.01, None)
    """

    lr: tuple[float, ...] = ()
    loss: tuple[float, ...] = ()
    raw_loss: tuple[float, ...] = ()
    stop_reason: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        columns = {key: tuple(float(v) for v in getattr(self, key)) for key in KEYS}
        if len({len(values) for values in columns.values()}) > 1:
            lengths = ", ".join(f"{key} {len(values)}" for key, values in columns.items())
            raise InputError(f"history columns differ in length: {lengths}")
        for key, values in columns.items():
            object.__setattr__(self, key, values)
        dict.update(self, columns)

    def __getitem__(self, key: str) -> Any:
        return self.stop_reason if key == "stop_reason" else dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key == "stop_reason" or key in self else default

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return dict.__eq__(self, other) and (self.stop_reason, self.settings) == (other.stop_reason, other.settings)
        return dict.__eq__(self, other)

    def __reduce__(self) -> tuple[Any, ...]:
        return (History, (self.lr, self.loss, self.raw_loss, self.stop_reason, self.settings))

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("History is read-only: copy it first, e.g. columns = dict(history)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only  # type: ignore[assignment]

    @property
    def num_steps(self) -> int:
        return len(self.lr)

    def _repr_html_(self) -> str:
        """A summary for Jupyter (never the columns): steps, LR span, best loss and why the sweep stopped."""
        finite = [(v, lr) for v, lr in zip(self.raw_loss, self.lr, strict=True) if math.isfinite(v)]
        span = f"{self.lr[0]:.2e} to {self.lr[-1]:.2e}" if self.lr else "&ndash;"
        best = "&ndash;"
        if finite:
            value, at = min(finite)
            best = f"{value:.4g} (raw, at LR {at:.2e})"
        stop = "ran all steps" if self.stop_reason is None else html.escape(self.stop_reason)
        rows = (("steps", str(self.num_steps)), ("LR span", span), ("best loss", best), ("stop reason", stop))
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
                       for k, v in rows)
        return f"<table><caption>lr_finder History</caption>{body}</table>"
