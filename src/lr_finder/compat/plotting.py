"""torch-lr-finder's plot: the loss against the LR, one marked point, an optional vertical line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def draw(
    lrs: Sequence[float],
    losses: Sequence[float],
    *,
    mark: tuple[float, float, str] | None,
    log_lr: bool,
    show_lr: float | None,
    ax: Any,
) -> tuple[Any, bool]:
    """Draw on ``ax`` (a new figure when ``None``); returns the axes and whether a figure was created.

    The axes hold exactly one line (the curve) and, with ``mark = (lr, loss, label)``, one scatter point,
    as torch-lr-finder's do, so code that inspects ``ax.lines`` / ``ax.collections`` keeps working.
    """
    import matplotlib.pyplot as plt

    created = ax is None
    if created:
        _, ax = plt.subplots()
    ax.plot(lrs, losses)
    if mark is not None:
        x, y, label = mark
        ax.scatter(x, y, s=75, marker="o", color="red", zorder=3, label=label)
        ax.legend()
    if log_lr:
        ax.set_xscale("log")
    ax.set_xlabel("Learning rate")
    ax.set_ylabel("Loss")
    if show_lr is not None:
        ax.axvline(x=show_lr, color="red")
    return ax, created


def show(ax: Any) -> None:
    """Show a figure this module created, where there is a display; otherwise leave it open for saving."""
    import matplotlib
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend().lower()
    if "agg" in backend and "inline" not in backend:
        return  # no display: ax.figure.savefig(...) still works on the returned axes
    plt.show()  # pragma: no cover - needs a display
