"""A SPEC for ``lr-finder run``: scikit-learn's bundled handwritten digits (no download) and a small MLP.

    lr-finder run examples/digits_spec.py:build --start-lr 1e-5 --end-lr 10 --out runs/digits
    lr-finder run examples/digits_spec.py:build -p batch_size=128 -p optimizer=adam --out runs/adam128
    lr-finder compare runs/digits/lr_finder_log.csv runs/adam128/lr_finder_log.csv --out compare.png

A SPEC function returns ``(model, optimizer, criterion, train_loader[, val_loader])`` or a dict with
those keys. Its keyword arguments are set from the command line with ``-p KEY=VALUE``. It puts the model
on its device (``-p device=cuda``); the batches follow the model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset


def digits(n: int | None = None) -> TensorDataset:
    """The 1,797 8x8 digit images shipped inside scikit-learn, scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    if n is not None:
        x, y = x[:n], y[:n]
    return TensorDataset(x, y)


def build(
    batch_size: int = 64,
    optimizer: str = "sgd",
    hidden: int = 128,
    n: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    val: bool = False,
) -> dict[str, Any]:
    """Model, optimizer, criterion and loader(s) for the digits task.

    Args:
        batch_size: mini-batch size of the training loader.
        optimizer: ``"sgd"`` (momentum 0.9) or ``"adam"``.
        hidden: width of the hidden layers.
        n: use only the first ``n`` images (faster); all 1,797 when ``None``.
        seed: seeds the weights and the shuffling.
        device: where the model lives (``"cpu"``, ``"cuda"``, ...).
        val: also return a validation loader (the last 20% of the images); the recorded loss is then the
            validation loss after each step (slower, smoother).
    """
    torch.manual_seed(seed)
    data = digits(n)
    train, held = data, None
    if val:
        cut = int(len(data) * 0.8)
        train = torch.utils.data.Subset(data, range(cut))
        held = torch.utils.data.Subset(data, range(cut, len(data)))
    shuffle = torch.Generator().manual_seed(seed)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=shuffle)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden // 2),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden // 2, 10),
    ).to(device)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        raise ValueError(f"{optimizer=} must be 'sgd' or 'adam'")
    spec: dict[str, Any] = {
        "model": model,
        "optimizer": opt,
        "criterion": torch.nn.CrossEntropyLoss(),
        "train_loader": loader,
    }
    if held is not None:
        spec["val_loader"] = DataLoader(held, batch_size=256)
    return spec


def build_tuple(batch_size: int = 64) -> tuple[Any, Any, Any, Any]:
    """The same task returned as a tuple ``(model, optimizer, criterion, train_loader)``."""
    d = build(batch_size=batch_size)
    return d["model"], d["optimizer"], d["criterion"], d["train_loader"]
