"""Applying a suggestion to an optimizer (and to OneCycleLR) with the param groups' ratios kept."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lr_finder import LRFinder, apply_suggested_lr, group_lrs

from tasks import digits_tensors


def model_and_groups(lrs: list[float | torch.Tensor]) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    params = [[model[0].weight], [model[0].bias], list(model[2].parameters())]
    groups = [{"params": p, "lr": lr} for p, lr in zip(params, lrs, strict=True)]
    return model, torch.optim.SGD(groups, lr=0.1, momentum=0.9)


def lrs_of(opt: torch.optim.Optimizer) -> list[float]:
    return [float(g["lr"]) for g in opt.param_groups]


@pytest.mark.parametrize(
    ("before", "lr", "after"),
    [
        ([1e-3, 1e-3, 1e-3], 0.05, [0.05, 0.05, 0.05]),
        ([1e-3, 1e-4, 1e-2], 0.05, [0.05, 0.005, 0.5]),  # discriminative LRs keep their ratios
        ([0.0, 2e-3, 1e-2], 0.01, [0.0, 0.01, 0.05]),  # a group at 0 stays at 0; the next is the reference
        ([0.0, 0.0, 0.0], 0.01, [0.01, 0.01, 0.01]),  # no reference: every group gets lr
    ],
)
def test_group_lrs_and_apply(before, lr, after):
    _, opt = model_and_groups(before)
    assert group_lrs(opt, lr) == pytest.approx(after, rel=1e-12)
    assert lrs_of(opt) == before  # group_lrs changes nothing
    assert apply_suggested_lr(opt, lr) == pytest.approx(after, rel=1e-12)
    assert lrs_of(opt) == pytest.approx(after, rel=1e-12)
    assert opt.param_groups[0]["lr"] == after[0]  # the reference gets lr exactly


def test_tensor_lrs_are_filled_in_place():
    lr_tensors = [torch.tensor(1e-3), torch.tensor(1e-2), torch.tensor(1e-3)]
    _, opt = model_and_groups(list(lr_tensors))
    apply_suggested_lr(opt, 0.02)
    assert all(g["lr"] is t for g, t in zip(opt.param_groups, lr_tensors, strict=True))
    assert lrs_of(opt) == pytest.approx([0.02, 0.2, 0.02], rel=1e-6)


@pytest.mark.parametrize(
    ("lr", "error", "match"),
    [
        (None, ValueError, "suggested no learning rate.*suggestion\\(\\).reason"),
        (0.0, ValueError, "positive finite"),
        (-1e-3, ValueError, "positive finite"),
        (float("nan"), ValueError, "positive finite"),
        (float("inf"), ValueError, "positive finite"),
        ("1e-3", TypeError, "must be a number"),
        (True, TypeError, "must be a number"),
    ],
)
def test_bad_lr_is_refused_before_any_change(lr, error, match):
    _, opt = model_and_groups([1e-3, 1e-4, 1e-2])
    with pytest.raises(error, match=match):
        apply_suggested_lr(opt, lr)
    with pytest.raises(error, match=match):
        group_lrs(opt, lr)
    assert lrs_of(opt) == [1e-3, 1e-4, 1e-2]


def test_attached_scheduler_is_warned_about():
    _, opt = model_and_groups([1e-3, 1e-4, 1e-2])
    torch.optim.lr_scheduler.StepLR(opt, step_size=5)
    with pytest.warns(UserWarning, match="create the scheduler after apply_suggested_lr"):
        apply_suggested_lr(opt, 0.01)


def test_one_cycle_with_per_group_max_lr_from_a_real_suggestion():
    """The workflow: range test with discriminative LRs, then OneCycleLR peaking at it per group."""
    x, y = digits_tensors(256)
    model, opt = model_and_groups([1e-3, 1e-3, 1e-2])
    g = torch.Generator().manual_seed(0)
    train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=g)
    finder = LRFinder(model, opt, torch.nn.CrossEntropyLoss())
    finder.range_test(train, start_lr=1e-4, end_lr=10, num_iter=30, show_progress=False)
    best = finder.get_suggested_lr()
    assert best is not None
    max_lrs = group_lrs(opt, best)
    assert max_lrs == pytest.approx([best, best, 10 * best], rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on this path
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lrs, total_steps=20)
    peaks = [max(v) for v in zip(*(_step(opt, sched) for _ in range(20)), strict=True)]
    assert peaks == pytest.approx(max_lrs, rel=1e-6)


def _step(opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler) -> list[float]:
    lrs = lrs_of(opt)
    opt.step()
    sched.step()
    return lrs
