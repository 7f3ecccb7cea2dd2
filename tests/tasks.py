"""A zoo of tiny real tasks for the tests: real data (scikit-learn's bundled sets), real small models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, TensorDataset


@dataclass
class Task:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Any
    loader: DataLoader
    dataset: TensorDataset


def digits_tensors(n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    return (x, y) if n is None else (x[:n], y[:n])


def digits_mlp(
    seed: int = 0, batch_size: int = 32, optimizer: str = "sgd", n: int | None = 512, hidden: int = 32
) -> Task:
    """A 64-hidden-10 MLP with a BatchNorm layer on scikit-learn digits."""
    torch.manual_seed(seed)
    x, y = digits_tensors(n)
    ds = TensorDataset(x, y)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    model = torch.nn.Sequential(
        torch.nn.Linear(64, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(), torch.nn.Dropout(0.1),
        torch.nn.Linear(hidden, 10),
    )
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        raise ValueError(optimizer)
    return Task(model, opt, torch.nn.CrossEntropyLoss(), loader, ds)


def diabetes_regression(seed: int = 0, batch_size: int = 32) -> Task:
    """Linear-ish regression on scikit-learn's diabetes data (standardised targets), plain SGD."""
    from sklearn.datasets import load_diabetes

    torch.manual_seed(seed)
    d = load_diabetes()
    x = torch.tensor(d.data, dtype=torch.float32)
    x = (x - x.mean(0)) / x.std(0)
    y = torch.tensor(d.target, dtype=torch.float32)[:, None]
    y = (y - y.mean()) / y.std()
    ds = TensorDataset(x, y)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    return Task(model, opt, torch.nn.MSELoss(), loader, ds)


def state_of(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Everything that must come back bit for bit, as plain comparable data."""
    out: dict[str, Any] = {}
    for name, t in model.state_dict().items():
        out[f"model.{name}"] = t.detach().clone()
    for name, p in model.named_parameters():
        out[f"grad.{name}"] = None if p.grad is None else p.grad.detach().clone()
        out[f"requires_grad.{name}"] = p.requires_grad
    for name, m in model.named_modules():
        out[f"training.{name}"] = m.training
    sd = optimizer.state_dict()
    for idx, st in sd["state"].items():
        for k, v in st.items():
            out[f"opt.{idx}.{k}"] = v.detach().clone() if isinstance(v, torch.Tensor) else v
    for i, g in enumerate(sd["param_groups"]):
        for k, v in g.items():
            out[f"group.{i}.{k}"] = v
    return out


def assert_same_state(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Bitwise equality of two :func:`state_of` results (NaN-safe, dtype- and shape-exact)."""
    assert before.keys() == after.keys(), set(before) ^ set(after)
    for key, a in before.items():
        b = after[key]
        if isinstance(a, torch.Tensor):
            assert isinstance(b, torch.Tensor), key
            assert a.dtype == b.dtype and a.shape == b.shape, key
            assert torch.equal(_bits(a), _bits(b)), key
        else:
            assert a == b, (key, a, b)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes of a tensor, so that NaN == NaN and -0.0 != 0.0 (true bitwise equality)."""
    t = t.detach().cpu().contiguous().reshape(-1)
    return t if t.dtype == torch.bool else t.view(torch.uint8)
