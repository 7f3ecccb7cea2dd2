"""The training code people already have, plugged in as it is: every batch and model style, val_loader,
accumulation, param groups, frozen parameters, torch.compile, the common optimizers.

Each test runs a real range test on scikit-learn's bundled digits (no download), checks the curve and the
suggestion, and checks that the model and optimizer come back bit for bit.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections import namedtuple
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lr_finder import LRFinder, analyze, lr_schedule
from lr_finder.training import Amp, Trainer

from tasks import assert_same_state, digits_tensors, state_of

RT: dict[str, Any] = {"show_progress": False}
CE = torch.nn.CrossEntropyLoss()
X, Y = digits_tensors(512)
XV, YV = digits_tensors()[0][1500:1600], digits_tensors()[1][1500:1600]  # 100 held-out samples


def mlp(seed: int = 0, batch_norm: bool = False, hidden: int = 32) -> torch.nn.Sequential:
    """64-hidden-10 MLP; with ``batch_norm`` it also has BatchNorm and Dropout (state that must come back)."""
    torch.manual_seed(seed)
    if batch_norm:
        return torch.nn.Sequential(
            torch.nn.Linear(64, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(), torch.nn.Dropout(0.1),
            torch.nn.Linear(hidden, 10),
        )
    return torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))


def loader(dataset: Any, batch_size: int = 32, shuffle: bool = True, **kw: Any) -> DataLoader:
    g = torch.Generator().manual_seed(0) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=g, **kw)


def check_curve(finder: LRFinder, start_lr: float, end_lr: float, num_iter: int) -> float:
    """A sensible curve: finite, on the planned sweep, the loss falls, and a suggestion inside the range."""
    h = finder.history
    assert len(h.lr) >= min(num_iter, 12), h.stop_reason
    assert np.allclose(h.lr, lr_schedule(start_lr, end_lr, num_iter)[: len(h.lr)], rtol=1e-12)
    assert all(math.isfinite(v) for v in h.raw_loss)
    assert min(h.loss) < 0.9 * h.loss[0], h.loss  # the loss fell somewhere on the way
    lr = finder.get_suggested_lr()
    assert lr is not None and start_lr <= lr <= end_lr
    return lr


def run_and_check(model, optimizer, criterion, train_loader, *, loss_fn=None, start_lr=1e-4, end_lr=10.0,
                  num_iter=30, **kw) -> LRFinder:
    before = state_of(model, optimizer)
    finder = LRFinder(model, optimizer, criterion, loss_fn=loss_fn)
    finder.range_test(train_loader, start_lr=start_lr, end_lr=end_lr, num_iter=num_iter, **kw, **RT)
    assert_same_state(before, state_of(model, optimizer))
    check_curve(finder, start_lr, end_lr, num_iter)
    return finder


# -- batch and model styles -----------------------------------------------------------------------------


class DictDataset(Dataset):
    """Yields ``{"pixels": x, "labels": y}``; the default collate makes dict batches."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixels": self.x[i], "labels": self.y[i]}


@dataclasses.dataclass
class ClassifierOutput:
    """Like a Hugging Face ``ModelOutput``: an object with ``loss`` and ``logits``."""

    loss: torch.Tensor | None
    logits: torch.Tensor


class OwnLossModel(torch.nn.Module):
    """Computes its own loss when given labels (the Hugging Face convention), as a dict or an object."""

    def __init__(self, as_object: bool) -> None:
        super().__init__()
        self.net = mlp(batch_norm=True)
        self.as_object = as_object

    def forward(self, pixels: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        logits = self.net(pixels)
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return ClassifierOutput(loss, logits) if self.as_object else {"loss": loss, "logits": logits}


class TwoTower(torch.nn.Module):
    """Several inputs: the top and bottom halves of each digit, ``model(top, bottom)``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.top = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU())
        self.bottom = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU())
        self.head = torch.nn.Linear(32, 10)

    def forward(self, top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.top(top), self.bottom(bottom)], dim=1))


class HalvesDataset(Dataset):
    def __len__(self) -> int:
        return len(X)

    def __getitem__(self, i: int) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        return (X[i, :32], X[i, 32:]), Y[i]


Sample = namedtuple("Sample", ["inputs", "targets"])


class NamedDataset(Dataset):
    def __len__(self) -> int:
        return len(X)

    def __getitem__(self, i: int) -> Sample:
        return Sample(X[i], Y[i])


class TupleOutput(torch.nn.Module):
    """Returns ``(logits, features)``: a plain criterion cannot take it, a ``loss_fn`` can."""

    def __init__(self) -> None:
        super().__init__()
        self.body = mlp(batch_norm=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.body(x), x.mean(dim=1)


@dataclasses.dataclass
class DigitBatch:
    """A custom batch type made by a ``collate_fn`` (moved field by field to the device)."""

    pixels: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor


def collate_digits(samples: list[tuple[torch.Tensor, torch.Tensor]]) -> DigitBatch:
    x = torch.stack([s[0] for s in samples])
    y = torch.stack([s[1] for s in samples])
    return DigitBatch(x, y, torch.where(y % 2 == 0, 1.0, 0.5))


def test_tuple_batches_with_criterion():
    model = mlp(batch_norm=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    run_and_check(model, opt, CE, loader(TensorDataset(X, Y)))


@pytest.mark.parametrize("as_object", [False, True], ids=["dict-output", "object-output"])
def test_dict_batches_and_model_computed_loss(as_object):
    model = OwnLossModel(as_object)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    run_and_check(model, opt, None, loader(DictDataset(X, Y)))


def test_several_inputs():
    model = TwoTower()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    run_and_check(model, opt, CE, loader(HalvesDataset()))


def test_namedtuple_batches():
    model = mlp(batch_norm=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    run_and_check(model, opt, CE, loader(NamedDataset()))


def test_loss_fn_for_tuple_outputs():
    model = TupleOutput()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def loss_fn(m, batch):
        x, y = batch
        logits, _ = m(x)
        return CE(logits, y)

    run_and_check(model, opt, None, loader(TensorDataset(X, Y)), loss_fn=loss_fn)


def test_loss_fn_for_custom_batch_objects():
    model = mlp(batch_norm=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    seen: list[type] = []

    def loss_fn(m, batch):
        seen.append(type(batch))
        per_sample = torch.nn.functional.cross_entropy(m(batch.pixels), batch.labels, reduction="none")
        return (per_sample * batch.weights).sum() / batch.weights.sum()

    run_and_check(model, opt, None, loader(TensorDataset(X, Y), collate_fn=collate_digits), loss_fn=loss_fn)
    assert set(seen) == {DigitBatch}


# -- val_loader ---------------------------------------------------------------------------------------


class UnevenBatches(torch.utils.data.Sampler):
    """Batches of sizes that do not divide the set: 7, 50, 3, 40 (100 samples)."""

    sizes = (7, 50, 3, 40)

    def __iter__(self):
        start = 0
        for n in self.sizes:
            yield list(range(start, start + n))
            start += n

    def __len__(self) -> int:
        return len(self.sizes)


def full_mean_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The hand-computed mean: the summed per-sample loss over the whole set, divided by its size."""
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(x), y, reduction="sum").double() / len(x))


def test_evaluate_is_the_exact_mean_over_uneven_batches():
    model = mlp(batch_norm=True)
    model.train()
    for val in [
        DataLoader(TensorDataset(XV, YV), batch_sampler=UnevenBatches()),
        DataLoader(TensorDataset(XV, YV), batch_size=32),  # 32, 32, 32, 4
    ]:
        trainer = Trainer(model, optimizer=None, criterion=CE, loss_fn=None, amp=Amp("cpu"), device=torch.device("cpu"))
        got = trainer.evaluate(val)
        model.eval()
        expected = full_mean_loss(model, XV, YV)
        model.train()
        assert float(got) == pytest.approx(expected, rel=1e-6)
        # a plain mean of the batch means would be wrong here, and measurably so
        assert all(m.training for m in model.modules())  # train mode put back
    with torch.no_grad():
        means = [float(CE(model.eval()(XV[i]), YV[i])) for i in UnevenBatches()]
    assert abs(np.mean(means) - expected) > 1e-3


def test_val_loader_records_the_exact_validation_mean_after_each_step():
    """The recorded loss after step i is the validation mean of the model after i+1 hand-made SGD steps."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    reference = copy.deepcopy(model)
    train = loader(TensorDataset(X, Y), shuffle=False)
    val = DataLoader(TensorDataset(XV, YV), batch_size=32)  # last batch of 4
    before = state_of(model, opt)
    finder = LRFinder(model, opt, CE)
    num_iter = 8
    h = finder.range_test(
        train, start_lr=1e-3, end_lr=1.0, num_iter=num_iter, val_loader=val, smooth_f=0.0, diverge_th=1e6,
        adaptive_stop=False, **RT,
    )
    assert_same_state(before, state_of(model, opt))
    assert len(h.raw_loss) == num_iter and h.loss == h.raw_loss

    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.01)
    expected = []
    for lr, (x, y) in zip(lr_schedule(1e-3, 1.0, num_iter), train, strict=False):
        ref_opt.param_groups[0]["lr"] = float(lr)
        ref_opt.zero_grad()
        CE(reference(x), y).backward()
        ref_opt.step()
        expected.append(full_mean_loss(reference, XV, YV))
    assert h.raw_loss == pytest.approx(expected, rel=1e-5)


def test_val_loader_runs_in_eval_mode_without_grad_and_goes_back_to_train():
    model = mlp(batch_norm=True)
    model.eval()  # the user's mode before the test: put back afterwards
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    calls: list[tuple[bool, bool]] = []

    def loss_fn(m, batch):
        calls.append((m.training, torch.is_grad_enabled()))
        return CE(m(batch[0]), batch[1])

    before = state_of(model, opt)
    finder = LRFinder(model, opt, None, loss_fn=loss_fn)
    val = DataLoader(TensorDataset(XV, YV), batch_size=40)  # 3 batches
    finder.range_test(loader(TensorDataset(X, Y)), start_lr=1e-3, end_lr=1, num_iter=5, val_loader=val, **RT)
    assert calls == [(True, True), (False, False), (False, False), (False, False)] * 5
    assert_same_state(before, state_of(model, opt))
    assert not model.training


# -- gradient accumulation ----------------------------------------------------------------------------


def test_accumulation_equals_one_big_batch():
    """k micro-batches of n give the loss and update of one batch of k*n (no batch-dependent layers)."""
    num_iter = 10
    results = {}
    for batch_size, steps in [(32, 1), (8, 4)]:
        model = mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        before = state_of(model, opt)
        params_at_step_start: list[torch.Tensor] = []
        calls = [0]

        def loss_fn(m, batch, steps=steps, seen=params_at_step_start, calls=calls):
            if calls[0] % steps == 0:
                seen.append(torch.nn.utils.parameters_to_vector(m.parameters()).detach().clone())
            calls[0] += 1
            return CE(m(batch[0]), batch[1])

        finder = LRFinder(model, opt, None, loss_fn=loss_fn)
        h = finder.range_test(
            loader(TensorDataset(X[:256], Y[:256]), batch_size=batch_size, shuffle=False), start_lr=1e-3,
            end_lr=1.0, num_iter=num_iter, accumulation_steps=steps, diverge_th=1e6, adaptive_stop=False,
            **RT,
        )
        assert_same_state(before, state_of(model, opt))
        assert calls[0] == num_iter * steps and len(h.raw_loss) == num_iter
        results[steps] = (h, params_at_step_start)
    (big, big_params), (acc, acc_params) = results[1], results[4]
    assert acc.raw_loss == pytest.approx(big.raw_loss, rel=1e-5)
    assert acc.loss == pytest.approx(big.loss, rel=1e-5)
    for a, b in zip(acc_params, big_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.equal(big_params[0], big_params[-1])  # the updates did happen


# -- param groups ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("first_lr", [1e-3, 0.0], ids=["first-group-reference", "first-group-at-zero"])
def test_param_groups_keep_their_ratio_at_every_step(first_lr):
    model = mlp()
    first, last = model[0], model[2]
    groups = [
        {"params": [first.weight], "lr": first_lr},
        {"params": [first.bias], "lr": 2e-3},
        {"params": last.parameters(), "lr": 2e-2},
    ]
    opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9)
    base = first_lr or 2e-3
    ratios = [g["lr"] / base for g in opt.param_groups]
    seen: list[list[float]] = []

    def loss_fn(m, batch):
        seen.append([g["lr"] for g in opt.param_groups])
        return CE(m(batch[0]), batch[1])

    finder = run_and_check(model, opt, None, loader(TensorDataset(X, Y)), loss_fn=loss_fn, start_lr=1e-4)
    h = finder.history
    assert len(seen) == len(h.lr)
    for lrs, swept in zip(seen, h.lr, strict=True):
        assert lrs == pytest.approx([swept * r for r in ratios], rel=1e-12)
    assert [g["lr"] for g in opt.param_groups] == [first_lr, 2e-3, 2e-2]
    lr = finder.get_suggested_lr()  # computed on the swept base LRs, not on a group's scaled LRs
    assert lr is not None and lr == analyze(h.lr, h.raw_loss).lr and h.lr[0] <= lr <= h.lr[-1]


# -- frozen parameters ----------------------------------------------------------------------------------


def test_partly_frozen_parameters_stay_frozen_and_unchanged():
    model = mlp(batch_norm=True)
    model[0].requires_grad_(False)  # frozen but still in the optimizer
    model[1].requires_grad_(False)  # frozen and left out of the optimizer
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.Adam([p for n, p in model.named_parameters() if not n.startswith("1.")], lr=1e-3)
    changed: list[bool] = []

    def loss_fn(m, batch):
        changed.append(any(not torch.equal(dict(m.named_parameters())[n], v) for n, v in frozen.items()))
        return CE(m(batch[0]), batch[1])

    run_and_check(model, opt, None, loader(TensorDataset(X, Y)), loss_fn=loss_fn, start_lr=1e-5, end_lr=1.0)
    assert changed and not any(changed)
    assert all(p.grad is None for p in model[0].parameters())
    frozen_names = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen_names == ["0.weight", "0.bias", "1.weight", "1.bias"]


def test_fully_frozen_optimizer_is_refused():
    model = mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter with requires_grad=True"):
        LRFinder(model, torch.optim.SGD(model.parameters(), lr=0.01), CE)


# -- torch.compile --------------------------------------------------------------------------------------


def _compiled_run(backend: str) -> None:
    torch._dynamo.reset()
    model = mlp(batch_norm=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    compiled = torch.compile(model, backend=backend)
    before = state_of(model, opt)
    finder = LRFinder(compiled, opt, CE)
    finder.range_test(loader(TensorDataset(X, Y)), start_lr=1e-4, end_lr=10, num_iter=30, **RT)
    assert_same_state(before, state_of(model, opt))
    check_curve(finder, 1e-4, 10, 30)
    # the same curve as the eager model: compiling changes nothing the range test sees
    eager = LRFinder(model, opt, CE)
    eager.range_test(loader(TensorDataset(X, Y)), start_lr=1e-4, end_lr=10, num_iter=30, **RT)
    assert eager.history.raw_loss == pytest.approx(finder.history.raw_loss, rel=1e-4, abs=1e-5)


def test_torch_compile_aot_eager():
    """Dynamo capture and AOTAutograd, as inductor gets them, without the (slow on 2 CPUs) C++ codegen."""
    _compiled_run("aot_eager")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LR_FINDER_SLOW_TESTS"), reason="inductor compiles for ~1 min on CPU; "
                    "set LR_FINDER_SLOW_TESTS=1")
def test_torch_compile_inductor():
    _compiled_run("inductor")


# -- optimizers -----------------------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": (lambda p: torch.optim.SGD(p, lr=0.01), 1e-4, 10.0),
    "sgd-momentum": (lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9, nesterov=True), 1e-4, 10.0),
    "adam": (lambda p: torch.optim.Adam(p, lr=1e-3), 1e-5, 1.0),
    "adamw": (lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01), 1e-5, 1.0),
    "rmsprop": (lambda p: torch.optim.RMSprop(p, lr=1e-3, momentum=0.5), 1e-5, 1.0),
    "adagrad": (lambda p: torch.optim.Adagrad(p, lr=1e-2, initial_accumulator_value=0.1), 1e-4, 10.0),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_common_optimizers_with_state_restore_exactly(name):
    make, start_lr, end_lr = OPTIMIZERS[name]
    model = mlp(batch_norm=True)
    opt = make(model.parameters())
    for x, y in list(loader(TensorDataset(X, Y)))[:2]:  # some optimizer state before the test
        opt.zero_grad()
        CE(model(x), y).backward()
        opt.step()
    run_and_check(model, opt, CE, loader(TensorDataset(X, Y)), start_lr=start_lr, end_lr=end_lr)


def test_lbfgs_is_refused_with_a_clear_message():
    model = mlp()
    with pytest.raises(TypeError, match="LBFGS.*closure.*SGD or Adam"):
        LRFinder(model, torch.optim.LBFGS(model.parameters()), CE)
