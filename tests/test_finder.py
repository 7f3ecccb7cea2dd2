"""LRFinder end to end on real small tasks: sweep, stops, restore on every exit path, bad input."""

import inspect
import logging
import math
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lr_finder import LRFinder
from lr_finder.errors import InputError, StorageError
from lr_finder.settings import DEFAULTS

from tasks import assert_same_state, diabetes_regression, digits_mlp, state_of

RT = {"show_progress": False}


def test_sweep_records_equal_lengths_and_the_lrs_of_the_schedule():
    task = digits_mlp()
    f = LRFinder(task.model, task.optimizer, task.criterion)
    h = f.range_test(task.loader, start_lr=1e-4, end_lr=1e-1, num_iter=20, **RT)
    assert len(h["lr"]) == len(h["loss"]) == len(h["raw_loss"]) == 20
    np.testing.assert_allclose(h["lr"], np.logspace(-4, -1, 20), rtol=1e-9)
    assert h["stop_reason"] is None and h.settings["num_iter"] == 20
    h = f.range_test(task.loader, start_lr=0.01, end_lr=0.1, num_iter=10, step_mode="linear", **RT)
    np.testing.assert_allclose(h["lr"], np.linspace(0.01, 0.1, 10), rtol=1e-9)


def test_the_lr_really_reaches_every_param_group_with_ratios_kept():
    task = digits_mlp()
    model = task.model
    opt = torch.optim.SGD(
        [{"params": model[0].parameters(), "lr": 0.1}, {"params": model[4].parameters(), "lr": 0.01},
         {"params": model[1].parameters()}], lr=0.05)
    seen = []
    orig_step = opt.step

    def spy_step(*a, **k):
        seen.append([g["lr"] for g in opt.param_groups])
        return orig_step(*a, **k)

    opt.step = spy_step
    f = LRFinder(model, opt, task.criterion)
    h = f.range_test(task.loader, start_lr=1e-5, end_lr=1e-2, num_iter=8, **RT)
    del opt.step
    for lrs, swept in zip(seen, h["lr"], strict=True):
        assert lrs == pytest.approx([swept, swept * 0.1, swept * 0.5])
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01, 0.05]


def test_loader_shorter_than_the_sweep_is_cycled():
    task = digits_mlp(n=96, batch_size=32)  # 3 batches
    f = LRFinder(task.model, task.optimizer, task.criterion)
    h = f.range_test(task.loader, start_lr=1e-5, end_lr=1e-3, num_iter=20, **RT)
    assert len(h["lr"]) == 20


def test_early_stop_on_divergence_keeps_the_history_and_restores():
    task = diabetes_regression()
    before = state_of(task.model, task.optimizer)
    f = LRFinder(task.model, task.optimizer, task.criterion)
    h = f.range_test(task.loader, start_lr=1e-4, end_lr=100, num_iter=100, **RT)
    assert h.stop_reason is not None and len(h["lr"]) < 100
    assert all(math.isfinite(v) for v in h["raw_loss"])
    assert_same_state(before, state_of(task.model, task.optimizer))


def test_nan_loss_stops_at_once():
    task = digits_mlp()
    calls = {"n": 0}

    def crit(out, y):
        calls["n"] += 1
        loss = torch.nn.functional.cross_entropy(out, y)
        return loss * float("nan") if calls["n"] == 6 else loss

    before = state_of(task.model, task.optimizer)
    f = LRFinder(task.model, task.optimizer, crit)
    h = f.range_test(task.loader, start_lr=1e-5, end_lr=1e-3, num_iter=30, **RT)
    assert calls["n"] == 6 and len(h["lr"]) == 5 and "non-finite" in h.stop_reason
    assert_same_state(before, state_of(task.model, task.optimizer))


def test_two_runs_in_a_row_start_from_the_same_state():
    task = digits_mlp()
    f = LRFinder(task.model, task.optimizer, task.criterion)
    a = f.range_test(task.loader, start_lr=1e-5, end_lr=1, num_iter=25, **RT)
    b = f.range_test(task.loader, start_lr=1e-5, end_lr=1, num_iter=25, **RT)
    assert a["raw_loss"] == b["raw_loss"]  # same weights, same RNG, same data order


def test_training_after_the_finder_equals_training_without_it():
    def train(run_finder: bool):
        random.seed(1)
        np.random.seed(1)
        task = digits_mlp(seed=3, optimizer="adam")
        if run_finder:
            f = LRFinder(task.model, task.optimizer, task.criterion)
            f.range_test(task.loader, start_lr=1e-5, end_lr=10, num_iter=30, **RT)
            f.plot(save_csv=False)
            f.reset()
        for _ in range(2):
            for x, y in task.loader:
                task.optimizer.zero_grad()
                task.criterion(task.model(x), y).backward()
                task.optimizer.step()
        return state_of(task.model, task.optimizer), (random.random(), np.random.rand(), torch.rand(1).item())

    (s1, r1), (s2, r2) = train(False), train(True)
    assert_same_state(s1, s2)
    assert r1 == r2


def test_mid_training_use_has_no_stale_state():
    task = digits_mlp(optimizer="adam")
    for x, y in task.loader:  # one epoch of real training first
        task.optimizer.zero_grad()
        task.criterion(task.model(x), y).backward()
        task.optimizer.step()
    f = LRFinder(task.model, task.optimizer, task.criterion)
    h = f.range_test(task.loader, start_lr=1e-6, end_lr=1e-3, num_iter=30, **RT)
    assert h.stop_reason is None and len(h["lr"]) == 30
    assert h["loss"][0] == h["raw_loss"][0]


def test_negative_losses():
    task = digits_mlp()

    def nll_shifted(out, y):  # a loss that lives below zero
        return torch.nn.functional.cross_entropy(out, y) - 10.0

    f = LRFinder(task.model, task.optimizer, nll_shifted)
    h = f.range_test(task.loader, start_lr=1e-5, end_lr=1e-2, num_iter=30, **RT)
    assert h.stop_reason is None and max(h["loss"]) < 0
    assert f.get_suggested_lr() is not None


def test_model_in_eval_mode_comes_back_in_eval_mode():
    task = digits_mlp()
    task.model.eval()
    f = LRFinder(task.model, task.optimizer, task.criterion)
    f.range_test(task.loader, start_lr=1e-5, end_lr=1e-3, num_iter=5, **RT)
    assert not any(m.training for m in task.model.modules())


def test_context_manager_and_messages(caplog):
    task = digits_mlp()
    with caplog.at_level(logging.INFO, logger="lr_finder"), LRFinder(task.model, task.optimizer, task.criterion) as f:
        f.range_test(task.loader, start_lr=1e-5, end_lr=1, num_iter=30, **RT)
        lr = f.get_suggested_lr()
    text = caplog.text
    assert "LR range test complete" in text and "restored" in text
    assert f"Suggested Learning Rate: {lr:.2E}" in text


def test_the_analysis_is_logged_once_per_curve(caplog):
    task = digits_mlp()
    f = LRFinder(task.model, task.optimizer, task.criterion)
    for _ in range(2):  # each new curve is logged again
        f.range_test(task.loader, start_lr=1e-5, end_lr=1, num_iter=30, **RT)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="lr_finder"):
            lr = f.get_suggested_lr()
            assert f.plot(save_csv=False) == lr and f.get_suggested_lr("default") == lr
            f.get_suggested_lr("steepest")
        assert caplog.text.count("Suggested Learning Rate") == 2  # the default's pick once, steepest's once


def test_logger_can_be_silenced(caplog):
    task = digits_mlp()
    logger = logging.getLogger("lr_finder")
    old = logger.level
    try:
        f = LRFinder(task.model, task.optimizer, task.criterion)
        with caplog.at_level(logging.INFO):  # an application that shows INFO sees the library's messages
            f.range_test(task.loader, start_lr=1e-5, end_lr=1e-3, num_iter=3, **RT)
        assert "LR range test complete" in caplog.text
        caplog.clear()
        logger.setLevel(logging.WARNING)  # ... and can turn the library's own down
        with caplog.at_level(logging.INFO):
            f.range_test(task.loader, start_lr=1e-5, end_lr=1e-3, num_iter=3, **RT)
        assert "LR range test complete" not in caplog.text
    finally:
        logger.setLevel(old)


def test_results_before_range_test_explain_themselves():
    task = digits_mlp()
    f = LRFinder(task.model, task.optimizer, task.criterion)
    for call in (f.get_suggested_lr, f.plot, f.suggestion):
        with pytest.raises(RuntimeError, match="call range_test"):
            call()


def test_range_test_defaults_are_the_settings_defaults():
    """range_test spells its defaults out for readers of the API; they must stay those of RangeTestSettings."""
    params = inspect.signature(LRFinder.range_test).parameters
    shared = {name for name in DEFAULTS if name in params}
    assert shared == set(DEFAULTS)
    assert {name: params[name].default for name in shared} == DEFAULTS


# -- every bad input: a clear error before training, the model untouched --------------------------------
BAD_RANGE = [
    ({"start_lr": 0.0}, ValueError, "start_lr=0.0 must be a positive"),
    ({"start_lr": -1e-3}, ValueError, "start_lr"),
    ({"end_lr": math.inf}, ValueError, "end_lr=inf"),
    ({"start_lr": math.nan}, ValueError, "start_lr=nan"),
    ({"start_lr": 1.0, "end_lr": 0.1}, ValueError, "end_lr=0.1 must be greater than start_lr=1.0"),
    ({"num_iter": 1}, ValueError, "num_iter=1 must be at least 2"),
    ({"num_iter": 10.5}, TypeError, "num_iter=10.5 must be an int"),
    ({"step_mode": "cosine"}, ValueError, "step_mode='cosine' must be one of"),
    ({"smooth_f": 1.0}, ValueError, r"smooth_f=1.0 must be in \[0, 1\)"),
    ({"smooth_f": -0.1}, ValueError, "smooth_f"),
    ({"diverge_th": 1.0}, ValueError, "diverge_th=1.0 must be a finite number greater than 1"),
    ({"accumulation_steps": 0}, ValueError, "accumulation_steps=0"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), BAD_RANGE)
def test_bad_range_arguments(kwargs, exc, match):
    task = digits_mlp()
    before = state_of(task.model, task.optimizer)
    f = LRFinder(task.model, task.optimizer, task.criterion)
    with pytest.raises(exc, match=match):
        f.range_test(task.loader, **{"num_iter": 10, **kwargs}, **RT)
    assert_same_state(before, state_of(task.model, task.optimizer))


def _loader(batches):
    class L:
        def __iter__(self):
            return iter(batches)

        def __len__(self):
            return len(batches)

    return L()


@pytest.mark.parametrize(
    ("loader", "exc", "match"),
    [
        (DataLoader(TensorDataset(torch.zeros(0, 64), torch.zeros(0, dtype=torch.long)), batch_size=4),
         ValueError, "train_loader is empty"),
        (_loader([(torch.zeros(4, 64),)]), TypeError, r"must be \(inputs, targets\).*loss_fn"),
        (_loader([(torch.zeros(4, 64), torch.zeros(4, dtype=torch.long), 1)]), TypeError, "length 3.*loss_fn"),
        (iter([(torch.zeros(4, 64), torch.zeros(4, dtype=torch.long))] * 3), ValueError, "one-shot iterator"),
        (5, TypeError, "train_loader must be an iterable"),
    ],
)
def test_bad_loaders(loader, exc, match):
    task = digits_mlp()
    before = state_of(task.model, task.optimizer)
    f = LRFinder(task.model, task.optimizer, task.criterion)
    with pytest.raises(exc, match=match):
        f.range_test(loader, num_iter=10, **RT)
    assert_same_state(before, state_of(task.model, task.optimizer))


def test_loss_that_is_not_a_scalar_or_has_no_grad():
    task = digits_mlp()
    before = state_of(task.model, task.optimizer)
    per_sample = torch.nn.CrossEntropyLoss(reduction="none")
    with pytest.raises(ValueError, match="expected a scalar: use reduction='mean'"):
        LRFinder(task.model, task.optimizer, per_sample).range_test(task.loader, num_iter=5, **RT)
    with pytest.raises(ValueError, match="without a gradient"):
        LRFinder(task.model, task.optimizer, lambda o, y: task.criterion(o, y).detach()).range_test(
            task.loader, num_iter=5, **RT)
    with pytest.raises(TypeError, match="expected a scalar torch.Tensor"):
        LRFinder(task.model, task.optimizer, lambda o, y: 1.0).range_test(task.loader, num_iter=5, **RT)
    assert_same_state(before, state_of(task.model, task.optimizer))


def test_bad_constructor_arguments():
    task = digits_mlp()
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        LRFinder(lambda x: x, task.optimizer, task.criterion)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        LRFinder(task.model, "adam", task.criterion)
    with pytest.raises(TypeError, match="LBFGS, which needs a closure"):
        LRFinder(task.model, torch.optim.LBFGS(task.model.parameters()), task.criterion)
    with pytest.raises(TypeError, match="criterion must be callable"):
        LRFinder(task.model, task.optimizer, "mse")
    with pytest.raises(ValueError, match="device='meta' but the model's parameters are on cpu"):
        LRFinder(task.model, task.optimizer, task.criterion, device="meta")
    with pytest.raises(ValueError, match="is not a device"):
        LRFinder(task.model, task.optimizer, task.criterion, device="gpu0")
    opt = torch.optim.SGD(task.model.parameters(), lr=0.1)
    del opt.param_groups[0]["lr"]
    with pytest.raises(ValueError, match=r"param_groups\[0\] has no 'lr'"):
        LRFinder(task.model, opt, task.criterion)
    frozen = torch.nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter with requires_grad=True"):
        LRFinder(frozen, torch.optim.SGD(frozen.parameters(), lr=0.1), task.criterion)
    lazy = torch.nn.LazyLinear(3)
    with pytest.raises(ValueError, match="lazy"):
        LRFinder(lazy, torch.optim.SGD(lazy.parameters(), lr=0.1), task.criterion)


# -- faults: restore on every exit path ---------------------------------------------------------------
class Boom(Exception):
    pass


def _failing_loader(loader, k, exc):
    class L:
        def __iter__(self):
            for i, b in enumerate(loader):
                if i == k:
                    raise exc
                yield b

        def __len__(self):
            return len(loader)

    return L()


@pytest.mark.parametrize("k", [0, 7, 14])
@pytest.mark.parametrize("where", ["loader", "model"])
@pytest.mark.parametrize("exc", [Boom("x"), KeyboardInterrupt()])
def test_exception_at_step_k_restores_everything(tmp_path, k, where, exc):
    task = digits_mlp(n=512, batch_size=32)  # 16 batches
    task.model.eval()
    before = state_of(task.model, task.optimizer)
    rng = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    loader = task.loader
    if where == "loader":
        loader = _failing_loader(task.loader, k, exc)
    else:
        calls = {"n": 0}

        def hook(module, args):
            calls["n"] += 1
            if calls["n"] == k + 1:
                raise exc

        task.model[0].register_forward_pre_hook(hook)
    f = LRFinder(task.model, task.optimizer, task.criterion, memory_cache=False, cache_dir=tmp_path / "c")
    with pytest.raises(type(exc)):
        f.range_test(loader, start_lr=1e-5, end_lr=10, num_iter=15, **RT)
    assert len(f.history["lr"]) == k  # what was recorded before the fault is kept
    assert_same_state(before, state_of(task.model, task.optimizer))
    assert torch.equal(torch.get_rng_state(), rng[0]) and np.array_equal(np.random.get_state()[1], rng[1])
    assert random.getstate() == rng[2]
    assert not [p for p in (tmp_path / "c").rglob("*") if p.is_file()], "no temp files left"


def test_full_disk_is_an_error_before_training(tmp_path, monkeypatch):
    import shutil

    task = digits_mlp()
    before = state_of(task.model, task.optimizer)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 0))
    f = LRFinder(task.model, task.optimizer, task.criterion, memory_cache=False, cache_dir=tmp_path)
    with pytest.raises(StorageError, match="not enough free disk space"):
        f.range_test(task.loader, num_iter=5, **RT)
    assert_same_state(before, state_of(task.model, task.optimizer))
    assert not list(tmp_path.iterdir())


def test_gradient_clipping_is_checked_and_reaches_every_step():
    task = digits_mlp(optimizer="sgd")
    for kwargs, match in [({"clip_grad_norm": 1.0, "clip_grad_value": 1.0}, "not both"),
                          ({"clip_grad_norm": -1.0}, "clip_grad_norm=-1.0 must be a positive finite"),
                          ({"clip_grad_value": "1"}, "clip_grad_value='1' must be a number")]:
        with pytest.raises(InputError, match=match):
            LRFinder(task.model, task.optimizer, task.criterion, **kwargs)
    seen: list[float] = []
    task.optimizer.register_step_pre_hook(
        lambda opt, *_: seen.append(max(float(p.grad.abs().max()) for p in task.model.parameters())))
    f = LRFinder(task.model, task.optimizer, task.criterion, clip_grad_value=1e-4)
    h = f.range_test(task.loader, start_lr=1e-3, end_lr=1e3, num_iter=15, show_progress=False)
    assert h.settings["clip_grad_value"] == 1e-4 and h.stop_reason is None  # clipped: even lr 1000 is tame
    assert len(seen) == 15 and max(seen) <= 1e-4


def test_a_loss_fn_returning_none_skips_the_batch_and_the_count_is_recorded():
    task = digits_mlp(optimizer="sgd")
    seen = []

    def loss_fn(model, batch):
        seen.append(1)
        if len(seen) % 4 == 0:  # every 4th batch skipped, as Lightning's training_step may do
            return None
        x, y = batch
        return task.criterion(model(x), y)

    before = state_of(task.model, task.optimizer)
    h = LRFinder(task.model, task.optimizer, None, loss_fn=loss_fn).range_test(
        task.loader, start_lr=1e-4, end_lr=1, num_iter=12, show_progress=False)
    assert h.num_steps == 12 and h.settings["skipped_batches"] == 3 and len(seen) == 15
    assert_same_state(before, state_of(task.model, task.optimizer))
    with pytest.raises(InputError, match="returned None for every batch"):
        LRFinder(task.model, task.optimizer, None, loss_fn=lambda m, b: None).range_test(
            task.loader, num_iter=5, show_progress=False)
    assert_same_state(before, state_of(task.model, task.optimizer))
