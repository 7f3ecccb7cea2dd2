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


@functools.cache
def digits_classes(which: str, shape: str = "flat") -> Tensors:
    """The digits 0-4 (``"low"``, the pre-training set) or 5-9 (``"high"``, the fine-tuning set, labels 0-4)."""
    xtr, ytr, xva, yva = digits(shape)
    keep_tr = ytr < 5 if which == "low" else ytr >= 5
    keep_va = yva < 5 if which == "low" else yva >= 5
    shift = 0 if which == "low" else 5
    return xtr[keep_tr], ytr[keep_tr] - shift, xva[keep_va], yva[keep_va] - shift


@functools.cache
def digits_reconstruction() -> Tensors:
    """Flat digits as their own targets (an autoencoder's reconstruction loss)."""
    xtr, _, xva, _ = digits()
    return xtr, xtr.clone(), xva, xva.clone()


@functools.cache
def synthetic_table(name: str) -> Tensors:
    """scikit-learn's generators with a fixed seed: ``"friedman"`` (Friedman #1 regression, 10 features),
    ``"linear"`` (a noisy linear regression on correlated features), ``"weak"`` (a classification on 20
    features of which 3 are informative, classes close together, 10% of labels flipped)."""
    import sklearn.datasets as ds

    regression = name != "weak"
    if name == "friedman":
        x, y = ds.make_friedman1(n_samples=1500, n_features=10, noise=1.0, random_state=5)
    elif name == "linear":
        x, y = ds.make_regression(
            n_samples=1000, n_features=30, n_informative=20, effective_rank=8, noise=5.0, random_state=6
        )
    else:
        x, y = ds.make_classification(
            n_samples=1500, n_features=20, n_informative=3, n_redundant=2, n_classes=3, n_clusters_per_class=1,
            class_sep=0.6, flip_y=0.1, random_state=7,
        )  # fmt: skip
    xtr, ytr, xva, yva = _split(x, y, 400)
    xtr, xva = _standardize(xtr, xva)
    if regression:
        ytr, yva = _standardize(ytr[:, None], yva[:, None])
    return _as_tensors(xtr, ytr, xva, yva, regression)


@functools.cache
def gratings(n: int = 2000, size: int = 12) -> Tensors:
    """Noisy sinusoidal gratings (1 x size x size); the class is the orientation (0, 45, 90, 135 degrees)."""
    rng = np.random.RandomState(21)
    y = rng.randint(0, 4, n)
    theta = y * np.pi / 4
    freq = rng.uniform(0.15, 0.35, n) * 2 * np.pi
    phase = rng.uniform(0, 2 * np.pi, n)
    contrast = rng.uniform(0.3, 1.0, n)
    r = np.arange(size) - (size - 1) / 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    proj = np.cos(theta)[:, None, None] * xx + np.sin(theta)[:, None, None] * yy
    img = contrast[:, None, None] * np.sin(freq[:, None, None] * proj + phase[:, None, None])
    img = img + rng.normal(0.0, 0.5, img.shape)
    xtr, ytr, xva, yva = _split(img[:, None].astype(np.float32), y, 500)
    return _as_tensors(xtr, ytr, xva, yva, regression=False)


@functools.cache
def sines(n: int = 1600, length: int = 16) -> Tensors:
    """Sums of two noisy sines of random frequency and phase; the target is the next (noise-free) value."""
    rng = np.random.RandomState(31)
    t = np.arange(length + 1)
    f = rng.uniform(0.05, 0.3, (n, 2))
    ph = rng.uniform(0, 2 * np.pi, (n, 2))
    a = rng.uniform(0.5, 1.0, (n, 2))
    clean = (a[:, :1] * np.sin(2 * np.pi * f[:, :1] * t + ph[:, :1])
             + a[:, 1:] * np.sin(2 * np.pi * f[:, 1:] * t + ph[:, 1:]))  # fmt: skip
    x = clean[:, :length] + rng.normal(0.0, 0.1, (n, length))
    y = clean[:, length:]
    xtr, ytr, xva, yva = _split(x[:, :, None], y, 400)
    return _as_tensors(xtr, ytr, xva, yva, regression=True)


@functools.cache
def imbalanced(name: str) -> Tensors:
    """A skewed version of ``"digits"`` (the 0s and 1s kept, 15% of the others) or of the ``"weak"`` table
    (class 0 kept, 20% of the others): a strong class prior to learn before the features."""
    xtr, ytr, xva, yva = digits() if name == "digits" else synthetic_table("weak")
    common, rate = (2, 0.15) if name == "digits" else (1, 0.2)
    rng = np.random.RandomState(41)

    def keep(y: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor((y.numpy() < common) | (rng.rand(len(y)) < rate))

    ktr, kva = keep(ytr), keep(yva)
    return xtr[ktr], ytr[ktr], xva[kva], yva[kva]


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


def cnn_plain(channels: int = 8, n_out: int = 10) -> nn.Module:
    """The CNN of :func:`cnn_bn` without BatchNorm (its conv layers keep their biases)."""
    c = channels
    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * c, n_out),
    )  # fmt: skip


def cnn_plain_digits(c: int = 8) -> nn.Module:
    """A CNN without BatchNorm for 8x8 digits: He-initialised convolutions and a linear head on the whole
    4x4 map (with PyTorch's default init and a global average pool instead, the signal fades and the
    digits barely train in a hundred steps at any LR)."""
    net = nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1), nn.ReLU(),
        nn.Conv2d(c, 2 * c, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * c, 2 * c, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(2 * c * 16, 10),
    )  # fmt: skip
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return net


class Block(nn.Module):
    """A ResNet basic block: conv-BN-ReLU-conv-BN plus the (projected when the shape changes) input."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(h)) + self.skip(x))


def resnet_tiny(c: int = 8, n_out: int = 10) -> nn.Module:
    """A ResNet-style net for small images: a stem, two basic blocks (the second halves the size), a head."""
    return nn.Sequential(
        nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
        Block(c, c), Block(c, 2 * c, stride=2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * c, n_out),
    )  # fmt: skip


class StiffPrior(nn.Module):
    """A classifier plus a learned class-prior offset ``amp * tanh(scale * b)``: the offset is stiff (its
    gradient is ``scale`` times larger than a plain bias's), so it learns at tiny LRs, thrashes between its
    bounds at moderate ones (a bump in the range test, bounded by the tanh), and the features learn at
    high LRs: a range test with two minima, the second the lower."""

    def __init__(self, body: nn.Module, n_out: int, scale: float = 30.0, amp: float = 4.0) -> None:
        super().__init__()
        self.body = body
        self.b = nn.Parameter(torch.zeros(n_out))
        self.scale, self.amp = scale, amp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.amp * torch.tanh(self.scale * self.b)


def deep_tanh(n_in: int, width: int, n_out: int, depth: int, xavier: bool = False) -> nn.Module:
    """A deep plain MLP with tanh and no normalisation: PyTorch's default init, or ``xavier`` (Glorot with
    tanh's gain, the usual choice for tanh; with the default init the signal fades through ten layers)."""
    layers: list[nn.Module] = []
    w = n_in
    for _ in range(depth):
        layers += [nn.Linear(w, width), nn.Tanh()]
        w = width
    layers.append(nn.Linear(w, n_out))
    if xavier:
        for m in layers:
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight, gain=nn.init.calculate_gain("tanh"))
                nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


class SeqNet(nn.Module):
    """A recurrent net (``"rnn"``, ``"gru"`` or ``"lstm"``) over a sequence of vectors or of tokens
    (``vocab`` set: embedded first), read out from its last state."""

    def __init__(self, cell: str, n_in: int, hidden: int, n_out: int, vocab: int | None = None) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, n_in) if vocab else None
        cls = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[cell]
        self.rnn = cls(n_in, hidden, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            x = self.embed(x)
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def autoencoder(n: int = 64, code: int = 12) -> nn.Module:
    return nn.Sequential(nn.Linear(n, 32), nn.ReLU(), nn.Linear(32, code), nn.ReLU(), nn.Linear(code, 32), nn.ReLU(),
                         nn.Linear(32, n))  # fmt: skip


@functools.cache
def _pretrained(kind: str) -> dict[str, torch.Tensor]:
    """A body pre-trained on the digits 0-4 (Adam, 300 steps), in-process and deterministic: its own
    seed, its own batch order, whatever the caller's RNG state (which is left untouched)."""
    shape = "image" if kind == "cnn" else "flat"
    xtr, ytr, _, _ = digits_classes("low", shape)
    with torch.random.fork_rng():
        torch.manual_seed(777)
        model = _finetune_net(kind, pretrained=False)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        g = torch.Generator().manual_seed(778)
        crit = nn.CrossEntropyLoss()
        for _ in range(300):
            idx = torch.randint(0, len(xtr), (64,), generator=g)
            loss = crit(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    assert isinstance(model, TwoPart)
    return {k: v.detach().clone() for k, v in model.body.state_dict().items()}


def _finetune_net(kind: str, pretrained: bool = True) -> nn.Module:
    """A body (pre-trained on the digits 0-4 when ``pretrained``) and a fresh 5-way head for the digits 5-9."""
    if kind == "cnn":
        full = cnn_bn(8)
        body: nn.Module = nn.Sequential(*list(full.children())[:-1])
        head: nn.Module = nn.Linear(16, 5)
    else:
        body = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        head = nn.Linear(64, 5)
    net = TwoPart(body, head)
    if pretrained:
        body.load_state_dict(_pretrained(kind))
    return net


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


def _head_and_body(model: nn.Module, lr: float, ratio: float) -> list[dict[str, Any]]:
    assert isinstance(model, TwoPart)
    return [{"params": model.head.parameters(), "lr": lr}, {"params": model.body.parameters(), "lr": lr * ratio}]


def two_groups_sgd(ratio: float, momentum: float = 0.9) -> Callable[[nn.Module, float], torch.optim.Optimizer]:
    """Group 0: the head at ``lr``; group 1: the body at ``ratio * lr`` (discriminative LRs)."""

    def make(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.SGD(_head_and_body(model, lr, ratio), lr=lr, momentum=momentum)

    return make


def rmsprop(momentum: float = 0.0) -> Callable[[nn.Module, float], torch.optim.Optimizer]:
    def make(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.RMSprop(model.parameters(), lr=lr, momentum=momentum)

    return make


def two_groups_adam(ratio: float, weight_decay: float = 0.0) -> Callable[[nn.Module, float], torch.optim.Optimizer]:
    """AdamW with the head at ``lr`` and the body at ``ratio * lr``."""

    def make(model: nn.Module, lr: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(_head_and_body(model, lr, ratio), lr=lr, weight_decay=weight_decay)

    return make


# ------------------------------------------------------------------------------------------------
# the zoo
# ------------------------------------------------------------------------------------------------


TUNING, HELD_OUT = "tuning", "held-out"


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
    split: str = TUNING  # TUNING or HELD_OUT, fixed when the task was added (not part of the fingerprint)

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


def _wine_two_part() -> nn.Module:
    return TwoPart(nn.Sequential(nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU()), nn.Linear(32, 3))


def _digits_two_part() -> nn.Module:
    return TwoPart(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU()), nn.Linear(64, 10))


def _task(name: str, summary: str, split: str, v: int = 1, **kw: Any) -> QualityTask:
    return QualityTask(name, summary, split=split, config={"v": v}, **kw)


T, H = TUNING, HELD_OUT
_DIGITS, _IMAGES, _ROWS = (lambda: digits()), (lambda: digits("image")), (lambda: digits("rows"))

#: The tasks added after the default rule was chosen on the first eleven. Their split was fixed when they
#: were written, before any rule was scored on them: within each family of model, alternately tuning and
#: held-out, with the kinds that defeated the first default (a deep plain tanh net, an LSTM, a ResNet at a
#: constant LR, weak features with Adam, a regression with AdamW, param groups) on both sides.
NEW_TASKS: list[QualityTask] = [
    # CNNs without BatchNorm, ResNet-style, other images
    _task("digits_cnn_nobn_sgdm", "digits 8x8, CNN without BatchNorm (He init), SGD momentum 0.9, OneCycle", H,
          data=_IMAGES, model=lambda: cnn_plain_digits(8), optimizer=sgd(0.9), regression=False,
          batch_size=64, steps=100, v=2),
    _task("digits_cnn_nobn_sgd_const", "digits 8x8, CNN without BatchNorm (He init), plain SGD, constant LR", T,
          data=_IMAGES, model=lambda: cnn_plain_digits(8), optimizer=sgd(), regression=False, batch_size=32,
          steps=150, schedule="constant", v=2),
    _task("digits_resnet_sgdm_const", "digits 8x8, ResNet-style (2 blocks, BatchNorm), SGD momentum + wd, constant LR",
          H, data=_IMAGES, model=lambda: resnet_tiny(6), optimizer=sgd(0.9, 5e-4), regression=False, batch_size=64,
          steps=100, schedule="constant"),
    _task("digits_resnet_adamw", "digits 8x8, ResNet-style (2 blocks, BatchNorm), AdamW, OneCycle", T,
          data=_IMAGES, model=lambda: resnet_tiny(6), optimizer=adam(0.01, decoupled=True), regression=False,
          batch_size=64, steps=100),
    _task("gratings_cnn_bn_rmsprop_const", "noisy gratings 12x12 (orientation), CNN + BatchNorm, RMSprop, constant LR",
          H, data=lambda: gratings(), model=lambda: cnn_bn(6), optimizer=rmsprop(), regression=False, batch_size=32,
          steps=100, schedule="constant"),
    _task("gratings_cnn_nobn_adam", "noisy gratings 12x12 (orientation), CNN without BatchNorm, Adam, OneCycle", T,
          data=lambda: gratings(), model=lambda: cnn_plain(6, 4), optimizer=adam(), regression=False, batch_size=32,
          steps=100),
    # deep plain tanh MLPs, no normalisation
    _task("digits_deep_tanh_sgd_const", "digits, 10-layer tanh MLP width 32 (Glorot init), no normalisation, plain "
          "SGD, constant LR", H, data=_DIGITS, model=lambda: deep_tanh(64, 32, 10, 10, xavier=True), optimizer=sgd(),
          regression=False, batch_size=32, steps=200, schedule="constant", v=2),
    _task("digits_deep_tanh_sgdm", "digits, 8-layer tanh MLP width 32 (Glorot init), no normalisation, SGD momentum, "
          "OneCycle", T, data=_DIGITS, model=lambda: deep_tanh(64, 32, 10, 8, xavier=True), optimizer=sgd(0.9),
          regression=False, batch_size=32, steps=150, v=2),
    _task("friedman_deep_tanh_adam_const", "Friedman #1 regression, 6-layer tanh MLP width 32, Adam, constant LR", T,
          data=lambda: synthetic_table("friedman"), model=lambda: deep_tanh(10, 32, 1, 6), optimizer=adam(),
          regression=True, batch_size=32, steps=200, schedule="constant"),
    # recurrent nets
    _task("digits_rows_lstm_adam_const", "digits read row by row, LSTM 32, Adam, constant LR", H,
          data=_ROWS, model=lambda: SeqNet("lstm", 8, 32, 10), optimizer=adam(), regression=False, batch_size=64,
          steps=150, schedule="constant"),
    _task("digits_rows_lstm_sgdm", "digits read row by row, LSTM 32, SGD momentum 0.9, OneCycle", T,
          data=_ROWS, model=lambda: SeqNet("lstm", 8, 32, 10), optimizer=sgd(0.9), regression=False, batch_size=64,
          steps=150),
    _task("sines_rnn_rmsprop_const", "next value of noisy sines (regression), tanh RNN 16, RMSprop, constant LR", T,
          data=lambda: sines(), model=lambda: SeqNet("rnn", 1, 16, 1), optimizer=rmsprop(), regression=True,
          batch_size=32, steps=200, schedule="constant"),
    _task("sines_gru_adam", "next value of noisy sines (regression), GRU 16, Adam, OneCycle", H,
          data=lambda: sines(), model=lambda: SeqNet("gru", 1, 16, 1), optimizer=adam(), regression=True,
          batch_size=32, steps=100),
    _task("majority_gru_sgd", "majority token (synthetic), embedding + GRU 32, plain SGD, OneCycle", H,
          data=lambda: majority_tokens(), model=lambda: SeqNet("gru", 16, 24, 8, vocab=8), optimizer=sgd(),
          regression=False, batch_size=32, steps=100, cycle_momentum=False),
    # small transformers
    _task("majority_transformer_adam_const", "majority token (synthetic), 1-layer transformer d=16, Adam, constant LR",
          H, data=lambda: majority_tokens(), model=lambda: TinyTransformer(d=16, heads=2), optimizer=adam(),
          regression=False, batch_size=32, steps=100, schedule="constant"),
    _task("majority_transformer_sgdm", "majority token (synthetic), 1-layer transformer d=16, SGD momentum, OneCycle",
          T, data=lambda: majority_tokens(), model=lambda: TinyTransformer(d=16, heads=2), optimizer=sgd(0.9),
          regression=False, batch_size=32, steps=100),
    # fine-tuning from a state pre-trained in-process on the digits 0-4, on the digits 5-9
    _task("digits_finetune_mlp_sgdm", "fine-tune an MLP pre-trained on digits 0-4 to 5-9, SGD momentum, OneCycle",
          H, data=lambda: digits_classes("high"), model=lambda: _finetune_net("mlp"), optimizer=sgd(0.9),
          regression=False, batch_size=32, steps=100),
    _task("digits_finetune_cnn_adam_const", "fine-tune a CNN+BN pre-trained on digits 0-4 to 5-9, Adam, constant LR",
          T, data=lambda: digits_classes("high", "image"), model=lambda: _finetune_net("cnn"), optimizer=adam(),
          regression=False, batch_size=32, steps=100, schedule="constant"),
    _task("digits_finetune_2groups_adamw", "fine-tune (digits 0-4 -> 5-9), body at lr/10 + head at lr, AdamW, OneCycle",
          H, data=lambda: digits_classes("high"), model=lambda: _finetune_net("mlp"),
          optimizer=two_groups_adam(0.1, 0.01), regression=False, batch_size=32, steps=100),
    # regression and reconstruction losses
    _task("digits_autoencoder_adam", "digits reconstruction (MSE), MLP autoencoder 64-32-12-32-64, Adam, OneCycle", T,
          data=digits_reconstruction, model=autoencoder, optimizer=adam(), regression=True, batch_size=64,
          steps=200),
    _task("digits_autoencoder_sgdm_const", "digits reconstruction (MSE), MLP autoencoder, SGD momentum, constant LR", H,
          data=digits_reconstruction, model=autoencoder, optimizer=sgd(0.9), regression=True, batch_size=64,
          steps=200, schedule="constant"),
    _task("friedman_mlp_adamw_const", "Friedman #1 regression, MLP 10-64-64-1, AdamW wd 0.05, constant LR", H,
          data=lambda: synthetic_table("friedman"), model=lambda: mlp(10, 64, 1), optimizer=adam(0.05, True),
          regression=True, batch_size=32, steps=200, schedule="constant"),
    _task("friedman_mlp_sgdm", "Friedman #1 regression, MLP 10-64-64-1, SGD momentum, OneCycle", T,
          data=lambda: synthetic_table("friedman"), model=lambda: mlp(10, 64, 1), optimizer=sgd(0.9),
          regression=True, batch_size=32, steps=200),
    _task("diabetes_mlp_rmsprop", "diabetes regression, MLP 10-32-32-1, RMSprop, OneCycle", T,
          data=lambda: tabular("diabetes"), model=lambda: mlp(10, 32, 1), optimizer=rmsprop(), regression=True,
          batch_size=16, steps=150, cycle_momentum=False),
    _task("linear_regression_sgd_const", "noisy linear regression on correlated features, linear model, plain SGD, "
          "constant LR", H, data=lambda: synthetic_table("linear"), model=lambda: nn.Linear(30, 1), optimizer=sgd(),
          regression=True, batch_size=32, steps=100, schedule="constant"),
    # tiny and large batches, weak features, convex, param groups
    _task("digits_mlp_adam_bs4_const", "digits, MLP 64-64-64-10, Adam, batch 4, constant LR, 300 steps", H,
          data=_DIGITS, model=lambda: mlp(64, 64, 10), optimizer=adam(), regression=False, batch_size=4, steps=300,
          schedule="constant"),
    _task("digits_mlp_sgd_bs512", "digits, MLP 64-64-64-10, plain SGD, batch 512, OneCycle, 200 steps", T,
          data=_DIGITS, model=lambda: mlp(64, 64, 10), optimizer=sgd(), regression=False, batch_size=512,
          steps=200, cycle_momentum=False),
    _task("weak_mlp_adam_const", "3 weak informative features of 20, 10% flipped labels, MLP 20-32-32-3, Adam, "
          "constant LR", H, data=lambda: synthetic_table("weak"), model=lambda: mlp(20, 32, 3), optimizer=adam(),
          regression=False, batch_size=32, steps=200, schedule="constant"),
    _task("weak_mlp_adam", "3 weak informative features of 20, 10% flipped labels, MLP 20-32-32-3, Adam, OneCycle", T,
          data=lambda: synthetic_table("weak"), model=lambda: mlp(20, 32, 3), optimizer=adam(), regression=False,
          batch_size=32, steps=200),
    _task("breast_cancer_logreg_sgd_const", "breast cancer, logistic regression, plain SGD, batch 16, constant LR", T,
          data=lambda: tabular("breast_cancer"), model=lambda: nn.Linear(30, 2), optimizer=sgd(), regression=False,
          batch_size=16, steps=100, schedule="constant"),
    _task("wine_2groups_adamw", "wine, MLP body at lr/10 + head at lr (two param groups), AdamW, OneCycle", H,
          data=lambda: tabular("wine"), model=_wine_two_part,
          optimizer=two_groups_adam(0.1), regression=False, batch_size=16, steps=100),
    _task("digits_2groups_sgd_const", "digits, MLP body at 0.3 lr + head at lr (two param groups), plain SGD, "
          "constant LR", H, data=_DIGITS, model=_digits_two_part, optimizer=two_groups_sgd(0.3, 0.0),
          regression=False, batch_size=32, steps=150, schedule="constant"),
    # curves with two minima: a bump after a first, shallow minimum, then a lower one
    _task("digits_skewed_stiffprior_sgdm", "skewed digits, MLP 64-32-32-10 + stiff class-prior offset (two minima), "
          "SGD momentum, OneCycle", T, data=lambda: imbalanced("digits"), model=lambda: StiffPrior(mlp(64, 32, 10), 10),
          optimizer=sgd(0.9), regression=False, batch_size=32, steps=150),
    _task("digits_skewed_stiffprior_sgdm_bs64", "skewed digits, MLP 64-64-64-10 + stiffer class-prior offset (two "
          "minima), SGD momentum, batch 64, OneCycle", H, data=lambda: imbalanced("digits"),
          model=lambda: StiffPrior(mlp(64, 64, 10), 10, scale=100.0), optimizer=sgd(0.9), regression=False,
          batch_size=64, steps=150),
]  # fmt: skip


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
        *NEW_TASKS,
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
