"""The task zoo of the suggestion-quality benchmark: small CPU tasks on data that ships offline.

Each :class:`QualityTask` is a recipe (data, model, optimizer, loss, batch size, training budget, LR
schedule) that can be rebuilt for any seed. The seed fixes the model's initial weights and the order
of the batches; the train/validation split is fixed per task (it does not depend on the seed).

The training protocol of the ground truth is the specification's: the learning rate ``eta`` is the
``max_lr`` of ``OneCycleLR`` over the whole budget (``schedule="onecycle"``); some tasks train at a
constant LR instead (``schedule="constant"``). For an optimizer with several param groups ``eta`` is
the LR of the first group and the others keep their ratio to it (as ``LRFinder`` sweeps them).

Data: scikit-learn's bundled sets (digits, also read row by row as a sequence by a GRU; wine, breast
cancer, diabetes) and a synthetic sequence task generated with a fixed numpy seed (the majority token,
for a small transformer). Nothing is downloaded. (The adding problem was tried for the GRU and dropped:
its loss stays on a plateau through a 100-step sweep, so the curve carries no signal for any rule.)
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

Tensors = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # x_train, y_train, x_val, y_val

# ------------------------------------------------------------------------------------------------
# data (cached per process; every array is built deterministically)
# ------------------------------------------------------------------------------------------------


def _split(x: np.ndarray, y: np.ndarray, n_val: int, seed: int = 1234) -> tuple[np.ndarray, ...]:
    order = np.random.RandomState(seed).permutation(len(x))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def _standardize(train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = train.mean(0), train.std(0) + 1e-8
    return (train - mu) / sd, (val - mu) / sd


def _as_tensors(xtr: Any, ytr: Any, xva: Any, yva: Any, regression: bool) -> Tensors:
    ydtype = torch.float32 if regression else torch.long
    return (
        torch.tensor(xtr, dtype=torch.float32),
        torch.tensor(ytr, dtype=ydtype),
        torch.tensor(xva, dtype=torch.float32),
        torch.tensor(yva, dtype=ydtype),
    )


@functools.cache
def digits(shape: str = "flat") -> Tensors:
    """scikit-learn's 8x8 digits in [0, 1]: ``"flat"`` (64 features), ``"image"`` (1x8x8) or ``"rows"``
    (a sequence of 8 rows of 8 pixels)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.data.astype(np.float32) / 16.0
    xtr, ytr, xva, yva = _split(x, d.target, 497)
    new = {"flat": (-1, 64), "image": (-1, 1, 8, 8), "rows": (-1, 8, 8)}[shape]
    return _as_tensors(xtr.reshape(new), ytr, xva.reshape(new), yva, regression=False)


@functools.cache
def tabular(name: str) -> Tensors:
    """A bundled scikit-learn table, standardized on the train split (targets too, for regression)."""
    import sklearn.datasets as ds

    loader = {"wine": ds.load_wine, "breast_cancer": ds.load_breast_cancer, "diabetes": ds.load_diabetes}[name]
    d = loader()
    regression = name == "diabetes"
    x, y = d.data.astype(np.float64), d.target.astype(np.float64 if regression else np.int64)
    xtr, ytr, xva, yva = _split(x, y, len(x) // 4)
    xtr, xva = _standardize(xtr, xva)
    if regression:
        ytr, yva = _standardize(ytr[:, None], yva[:, None])
    return _as_tensors(xtr, ytr, xva, yva, regression)


@functools.cache
def majority_tokens(n: int = 2400, length: int = 16, vocab: int = 8) -> Tensors:
    """Sequences of tokens drawn from a skewed random distribution; the label is the most frequent token."""
    rng = np.random.RandomState(11)
    probs = rng.dirichlet(np.full(vocab, 0.7), n)
    tokens = np.stack([rng.choice(vocab, length, p=p) for p in probs])
    counts = np.stack([np.bincount(t, minlength=vocab) for t in tokens])
    y = counts.argmax(1)
    xtr, ytr, xva, yva = _split(tokens, y, 600)
    xtr_t, ytr_t, xva_t, yva_t = _as_tensors(xtr, ytr, xva, yva, regression=False)
    return xtr_t.long(), ytr_t, xva_t.long(), yva_t


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------


def mlp(n_in: int, hidden: int, n_out: int, depth: int = 2) -> nn.Module:
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def cnn_bn(channels: int = 16) -> nn.Module:
    """A small CNN with BatchNorm for 8x8 digit images."""
    c = channels
    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
        nn.Conv2d(c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(),
        nn.MaxPool2d(2),  # 4x4
        nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.BatchNorm2d(2 * c), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * c, 10),
    )  # fmt: skip


class GRUClassifier(nn.Module):
    """A GRU reading a sequence of vectors (here the 8 rows of a digit), classified from its last state."""

    def __init__(self, n_in: int = 8, hidden: int = 32, n_out: int = 10) -> None:
        super().__init__()
        self.rnn = nn.GRU(n_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class TinyTransformer(nn.Module):
    """One pre-norm encoder layer over token + position embeddings, mean-pooled, linear head."""

    def __init__(self, vocab: int = 8, length: int = 16, d: int = 32, heads: int = 4, n_out: int = 8) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(length, d) * 0.1)
        self.layer = nn.TransformerEncoderLayer(
            d, heads, dim_feedforward=2 * d, dropout=0.0, batch_first=True, norm_first=True
        )
        self.head = nn.Linear(d, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layer(self.embed(x) + self.pos)
        return self.head(h.mean(1))


class TwoPart(nn.Module):
    """A body and a head, for the two-param-group task."""

    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


# ------------------------------------------------------------------------------------------------
# optimizers: (model, lr) -> optimizer; ``lr`` is the first group's LR, other groups keep their ratio
# ------------------------------------------------------------------------------------------------


def sgd(momentum: float = 0.0, weight_decay: float = 0.0) -> Callable[[nn.Module, float], torch.optim.Optimizer]:
    def make(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)

    return make


def adam(weight_decay: float = 0.0, decoupled: bool = False) -> Callable[[nn.Module, float], torch.optim.Optimizer]:
    def make(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        cls = torch.optim.AdamW if decoupled else torch.optim.Adam
        return cls(model.parameters(), lr=lr, weight_decay=weight_decay)

    return make


def two_groups_sgd(ratio: float, momentum: float = 0.9) -> Callable[[nn.Module, float], torch.optim.Optimizer]:
    """Group 0: the head at ``lr``; group 1: the body at ``ratio * lr`` (discriminative LRs)."""

    def make(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        assert isinstance(model, TwoPart)
        return torch.optim.SGD(
            [
                {"params": model.head.parameters(), "lr": lr},
                {"params": model.body.parameters(), "lr": lr * ratio},
            ],
            lr=lr,
            momentum=momentum,
        )

    return make


# ------------------------------------------------------------------------------------------------
# the zoo
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QualityTask:
    """One benchmark task; ``name`` is unique, ``config`` is what the ground-truth cache is keyed on."""

    name: str
    summary: str
    data: Callable[[], Tensors]
    model: Callable[[], nn.Module]
    optimizer: Callable[[nn.Module, float], torch.optim.Optimizer]
    regression: bool
    batch_size: int
    steps: int
    schedule: str = "onecycle"  # or "constant"
    cycle_momentum: bool = True  # OneCycleLR's momentum cycling (off for plain SGD: it has no momentum)
    config: dict[str, Any] = field(default_factory=dict)

    def criterion(self) -> nn.Module:
        return nn.MSELoss() if self.regression else nn.CrossEntropyLoss()

    def fingerprint(self) -> str:
        """A hash of everything that changes the ground truth (bump ``config`` when the code changes)."""
        blob = json.dumps(
            {
                "name": self.name,
                "batch_size": self.batch_size,
                "steps": self.steps,
                "schedule": self.schedule,
                "cycle_momentum": self.cycle_momentum,
                "regression": self.regression,
                **self.config,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _digits_two_part() -> nn.Module:
    return TwoPart(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU()), nn.Linear(64, 10))


TASKS: dict[str, QualityTask] = {
    t.name: t
    for t in [
        QualityTask(
            "digits_mlp_sgdm",
            "digits, MLP 64-64-64-10, SGD momentum 0.9, OneCycle",
            lambda: digits(),
            lambda: mlp(64, 64, 10),
            sgd(0.9),
            False,
            64,
            150,
            config={"v": 1},
        ),
        QualityTask(
            "digits_mlp_sgdm_const",
            "digits, MLP 64-64-64-10, SGD momentum 0.9, constant LR",
            lambda: digits(),
            lambda: mlp(64, 64, 10),
            sgd(0.9),
            False,
            64,
            150,
            "constant",
            config={"v": 1},
        ),
        QualityTask(
            "digits_cnn_bn_sgdm",
            "digits 8x8, CNN + BatchNorm, SGD momentum 0.9 + wd, OneCycle",
            lambda: digits("image"),
            lambda: cnn_bn(8),
            sgd(0.9, 5e-4),
            False,
            64,
            100,
            config={"v": 1},
        ),
        QualityTask(
            "digits_cnn_bn_adam_const",
            "digits 8x8, CNN + BatchNorm, Adam, constant LR",
            lambda: digits("image"),
            lambda: cnn_bn(8),
            adam(),
            False,
            64,
            100,
            "constant",
            config={"v": 1},
        ),
        QualityTask(
            "digits_2groups_sgdm",
            "digits, MLP body at lr/10 + head at lr (two param groups), SGD momentum, OneCycle",
            lambda: digits(),
            _digits_two_part,
            two_groups_sgd(0.1),
            False,
            64,
            150,
            config={"v": 1},
        ),
        QualityTask(
            "diabetes_mlp_sgd",
            "diabetes regression, MLP 10-32-1 tanh, plain SGD, OneCycle",
            lambda: tabular("diabetes"),
            lambda: nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1)),
            sgd(),
            True,
            32,
            150,
            cycle_momentum=False,
            config={"v": 1},
        ),
        QualityTask(
            "diabetes_mlp_sgd_const",
            "diabetes regression, MLP 10-32-1 tanh, plain SGD, constant LR",
            lambda: tabular("diabetes"),
            lambda: nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 1)),
            sgd(),
            True,
            32,
            150,
            "constant",
            config={"v": 1},
        ),
        QualityTask(
            "breast_cancer_mlp_adamw",
            "breast cancer, MLP 30-32-32-2, AdamW wd 0.01, OneCycle",
            lambda: tabular("breast_cancer"),
            lambda: mlp(30, 32, 2),
            adam(0.01, decoupled=True),
            False,
            32,
            100,
            config={"v": 1},
        ),
        QualityTask(
            "wine_mlp_adam",
            "wine, MLP 13-32-32-3, Adam, OneCycle",
            lambda: tabular("wine"),
            lambda: mlp(13, 32, 3),
            adam(),
            False,
            16,
            80,
            config={"v": 1},
        ),
        QualityTask(
            "digits_rows_gru_adam",
            "digits read row by row (8 steps of 8 pixels), GRU 32, Adam, OneCycle",
            lambda: digits("rows"),
            lambda: GRUClassifier(),
            adam(),
            False,
            64,
            150,
            config={"v": 1},
        ),
        QualityTask(
            "majority_transformer_adamw",
            "majority token (synthetic), 1-layer transformer d=32, AdamW, OneCycle",
            lambda: majority_tokens(),
            lambda: TinyTransformer(),
            adam(0.01, decoupled=True),
            False,
            64,
            150,
            config={"v": 1},
        ),
    ]
}

# ------------------------------------------------------------------------------------------------
# building, training, evaluating
# ------------------------------------------------------------------------------------------------


def build(task: QualityTask, seed: int, lr: float = 1e-3) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The model (initial weights fixed by ``seed``) and its optimizer with first-group LR ``lr``."""
    torch.manual_seed(seed)
    model = task.model()
    return model, task.optimizer(model, lr)


def train_loader(task: QualityTask, seed: int) -> DataLoader:
    """A shuffling DataLoader over the train split (its order fixed by ``seed``), for the range tests."""
    xtr, ytr, _, _ = task.data()
    g = torch.Generator().manual_seed(10_000 + seed)
    return DataLoader(TensorDataset(xtr, ytr), batch_size=task.batch_size, shuffle=True, generator=g, drop_last=True)


def _batches(task: QualityTask, seed: int) -> Any:
    """Endless shuffled mini-batches (fast indexing, same order for the same seed)."""
    xtr, ytr, _, _ = task.data()
    g = torch.Generator().manual_seed(10_000 + seed)
    n, bs = len(xtr), task.batch_size
    while True:
        perm = torch.randperm(n, generator=g)
        for i in range(0, n - bs + 1, bs):
            idx = perm[i : i + bs]
            yield xtr[idx], ytr[idx]


@torch.no_grad()
def val_loss(task: QualityTask, model: nn.Module) -> float:
    _, _, xva, yva = task.data()
    was = model.training
    model.eval()
    try:
        out = float(task.criterion()(model(xva), yva))
    finally:
        model.train(was)
    return out if math.isfinite(out) else math.inf


def untrained_loss(task: QualityTask, seed: int) -> float:
    model, _ = build(task, seed)
    return val_loss(task, model)


def train(task: QualityTask, seed: int, lr: float) -> float:
    """Train for the task's budget at LR ``eta = lr``; the validation loss at the end (inf if it diverged)."""
    model, opt = build(task, seed, lr)
    if task.schedule == "onecycle":
        max_lr = [float(g["lr"]) for g in opt.param_groups]
        sched: Any = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=max_lr, total_steps=task.steps, cycle_momentum=task.cycle_momentum
        )
    elif task.schedule == "constant":
        sched = None
    else:
        raise ValueError(f"unknown schedule {task.schedule!r}")
    crit = task.criterion()
    model.train()
    batches = _batches(task, seed)
    for _ in range(task.steps):
        x, y = next(batches)
        loss = crit(model(x), y)
        if not torch.isfinite(loss):
            return math.inf
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
    return val_loss(task, model)


def lr_grid(lo: float = 1e-5, hi: float = 10.0, per_decade: int = 4) -> list[float]:
    """The ground-truth grid: ``per_decade`` log-spaced points per decade from ``lo`` to ``hi``."""
    a, b = math.log10(lo), math.log10(hi)
    k = int(round((b - a) * per_decade))
    return [float(10 ** (a + i / per_decade)) for i in range(k + 1)]
