"""lr_finder.compat.LRFinder: torch-lr-finder 0.2.2's API and numbers on our machinery, checked side by side.

Each side-by-side test runs the installed torch_lr_finder and lr_finder.compat on identical copies of a
real task (same seed, same data order) and compares what users read: the LRs, the losses, the stop step.
"""

import ast
import inspect
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

import lr_finder
from lr_finder import LRFinder as NativeLRFinder
from lr_finder import analyze
from lr_finder.compat import DataLoaderIter, LRFinder, TrainDataLoaderIter, ValDataLoaderIter
from lr_finder.compat.rules import EmaDivergence
from lr_finder.errors import InputError, InputTypeError
from lr_finder.settings import RangeTestSettings

from tasks import assert_same_state, digits_mlp, digits_tensors, state_of

try:  # the side-by-side tests need the real package (in the dev extra)
    import torch_lr_finder as tlf
except ImportError:  # pragma: no cover - the dev extra installs it
    tlf = None
needs_tlf = pytest.mark.skipif(tlf is None, reason="needs torch-lr-finder: pip install 'lr-finder[dev]'")


class RecordingSGD(torch.optim.SGD):
    """SGD that remembers every param group's LR at each step: what the sweep really applied."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.applied = []

    def step(self, closure=None):
        self.applied.append([g["lr"] for g in self.param_groups])
        return super().step(closure)


def digits_groups(seed=0, lrs=(1e-3, 1e-5)):
    """The digits MLP with two param groups at different LRs (discriminative fine-tuning)."""
    task = digits_mlp(seed=seed)
    m = task.model
    task.optimizer = RecordingSGD(
        [{"params": m[0].parameters(), "lr": lrs[0]},
         {"params": [*m[1].parameters(), *m[4].parameters()], "lr": lrs[1]}],
        lr=1e-4, momentum=0.9,
    )
    return task


def val_loader():
    x, y = digits_tensors()
    return DataLoader(TensorDataset(x[1500:], y[1500:]), batch_size=100)


def side_by_side(make_task, criterion=None, val=False, **kwargs):
    """Run torch_lr_finder and lr_finder.compat on identical tasks; return both finders and the tasks."""
    out = []
    for cls in (tlf.LRFinder, LRFinder):
        task = make_task()
        torch.manual_seed(123)  # dropout draws from the global RNG: the same masks on both sides
        finder = cls(task.model, task.optimizer, criterion or task.criterion)
        finder.range_test(task.loader, val_loader=val_loader() if val else None, **kwargs)
        out.append((finder, task))
    return out


# -- the API ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["__init__", "range_test", "plot"])
@needs_tlf
def test_signatures_are_torch_lr_finders(method):
    theirs = inspect.signature(getattr(tlf.LRFinder, method)).parameters
    ours = inspect.signature(getattr(LRFinder, method)).parameters
    assert [(p.name, p.default) for p in ours.values()] == [(p.name, p.default) for p in theirs.values()]


def test_core_never_imports_the_compatibility_front():
    package = Path(lr_finder.__file__).parent
    for path in package.rglob("*.py"):
        if "compat" in path.relative_to(package).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [f"{'.' * node.level}{node.module or ''}", *(a.name for a in node.names)]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            assert not any("compat" in n.split(".") for n in names), (path.name, names)


# -- the same numbers as torch-lr-finder -----------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [
    {},  # start_lr=None (the optimizer's 0.01) to end_lr=10: diverges and stops early
    {"start_lr": 1e-5, "end_lr": 1, "num_iter": 40, "step_mode": "linear"},
    {"start_lr": 1e-5, "num_iter": 30, "accumulation_steps": 3, "smooth_f": 0},
])
@needs_tlf
def test_same_lrs_raw_losses_and_stop_step_as_torch_lr_finder(kwargs):
    (theirs, _), (ours, _) = side_by_side(digits_mlp, **kwargs)
    assert ours.history["lr"] == theirs.history["lr"]
    assert ours.history["loss"] == theirs.history["loss"]  # bit for bit, the stop step included
    assert ours.best_loss == theirs.best_loss
    if not kwargs:
        assert len(ours.history["lr"]) < 100 and ours.result.stop_reason.startswith("diverged")
    # the smoothed curve is torch-lr-finder's EMA of exactly these raw losses
    rule = EmaDivergence(kwargs.get("smooth_f", 0.05), 5)
    rule(ours.result.raw_loss)
    assert rule.smoothed == ours.history["loss"]


@needs_tlf
def test_param_groups_each_sweep_from_their_own_lr_to_end_lr_as_torch_lr_finder():
    (theirs, t_task), (ours, o_task) = side_by_side(digits_groups, end_lr=0.1, num_iter=20)
    assert o_task.optimizer.applied == t_task.optimizer.applied
    first, last = o_task.optimizer.applied[0], o_task.optimizer.applied[-1]
    assert first == [1e-3, 1e-5] and last == pytest.approx([0.1, 0.1])  # ratios are not kept
    assert ours.history["lr"] == [lrs[0] for lrs in o_task.optimizer.applied]
    assert ours.history["loss"] == theirs.history["loss"]
    # a start_lr list sets each group's first LR
    (theirs, t_task), (ours, o_task) = side_by_side(digits_groups, start_lr=[1e-4, 1e-6], end_lr=0.1, num_iter=10)
    assert o_task.optimizer.applied == t_task.optimizer.applied and o_task.optimizer.applied[0] == [1e-4, 1e-6]


@needs_tlf
def test_validation_losses_equal_torch_lr_finders():
    (theirs, _), (ours, _) = side_by_side(digits_mlp, val=True, start_lr=1e-4, end_lr=1, num_iter=25)
    assert ours.history["lr"] == theirs.history["lr"]
    assert ours.history["loss"] == theirs.history["loss"]


@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=60), st.sampled_from([0.0, 0.05, 0.5]),
       st.sampled_from([1.5, 5.0]))
def test_stop_rule_is_torch_lr_finders_loop(raw, smooth_f, diverge_th):
    # torch-lr-finder's loop, written out: smooth, track the best, stop after the first step above the bar
    smoothed, best, stop_at = [], None, None
    for i, loss in enumerate(raw):
        if i == 0:
            best = loss
        else:
            if smooth_f > 0:
                loss = smooth_f * loss + (1 - smooth_f) * smoothed[-1]
            best = min(best, loss)
        smoothed.append(loss)
        if loss > diverge_th * best:
            stop_at = i
            break
    rule = EmaDivergence(smooth_f, diverge_th)
    reasons = [rule(raw[: i + 1]) for i in range(len(smoothed))]
    assert rule.smoothed == smoothed and rule.best == best
    assert [i for i, r in enumerate(reasons) if r is not None] == ([] if stop_at is None else [stop_at])


# -- better than torch-lr-finder -------------------------------------------------------------------------
@needs_tlf
def test_state_is_restored_when_range_test_returns_without_reset():
    (theirs, t_task), (ours, o_task) = side_by_side(digits_mlp, start_lr=1e-4, num_iter=20)
    fresh = digits_mlp()
    assert_same_state(state_of(fresh.model, fresh.optimizer), state_of(o_task.model, o_task.optimizer))
    with pytest.raises(AssertionError):  # torch-lr-finder leaves the trained model until reset()
        assert_same_state(state_of(fresh.model, fresh.optimizer), state_of(t_task.model, t_task.optimizer))
    # and the optimizer at an LR past the end of its sweep
    assert t_task.optimizer.param_groups[0]["lr"] > theirs.history["lr"][-1]
    assert o_task.optimizer.param_groups[0]["lr"] == 0.01


def test_state_is_restored_when_the_sweep_raises_midway():
    task = digits_mlp()
    before = state_of(task.model, task.optimizer)
    rng = torch.get_rng_state()
    calls = 0

    def failing(out, y):
        nonlocal calls
        calls += 1
        if calls == 7:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the sweep
        return torch.nn.functional.cross_entropy(out, y)

    finder = LRFinder(task.model, task.optimizer, failing)
    with pytest.raises(KeyboardInterrupt):
        finder.range_test(task.loader, num_iter=50)
    assert_same_state(before, state_of(task.model, task.optimizer))
    assert torch.equal(rng, torch.get_rng_state())
    assert len(finder.history["lr"]) == len(finder.history["loss"]) == 6  # the curve so far is kept


def test_loader_generator_and_global_rng_are_left_as_found():
    task = digits_mlp()
    gen_state, rng = task.loader.generator.get_state(), torch.get_rng_state()
    LRFinder(task.model, task.optimizer, task.criterion).range_test(task.loader, num_iter=30, end_lr=1)
    assert torch.equal(gen_state, task.loader.generator.get_state())
    assert torch.equal(rng, torch.get_rng_state())


def test_disk_snapshot_restores_and_leaves_cache_dir_empty(tmp_path):
    task = digits_mlp(optimizer="adam")
    before = state_of(task.model, task.optimizer)
    finder = LRFinder(task.model, task.optimizer, task.criterion, memory_cache=False, cache_dir=tmp_path)
    finder.range_test(task.loader, num_iter=15)
    assert_same_state(before, state_of(task.model, task.optimizer))
    assert list(tmp_path.iterdir()) == []
    finder.reset()  # kept for the familiar workflow: nothing left to undo
    assert_same_state(before, state_of(task.model, task.optimizer))


def naive_cross_entropy(out, y):
    """Cross-entropy written by hand: 0 * log(0) = NaN once a softmax underflows at a high LR."""
    onehot = torch.nn.functional.one_hot(y, 10).float()
    return -(onehot * torch.log(torch.softmax(out, 1))).sum(1).mean()


@needs_tlf
def test_nan_loss_stops_at_once_where_torch_lr_finder_records_nans():
    (theirs, _), (ours, _) = side_by_side(digits_mlp, criterion=naive_cross_entropy, end_lr=100, diverge_th=1e6)
    assert len(theirs.history["loss"]) == 100 and math.isnan(theirs.history["loss"][-1])  # NaN > x is False
    n = len(ours.history["loss"])
    assert n < 100 and all(math.isfinite(v) for v in ours.history["loss"])
    assert "non-finite" in ours.result.stop_reason
    assert ours.history["loss"] == theirs.history["loss"][:n]  # the same curve up to the NaN
    assert math.isnan(theirs.history["loss"][n])


@needs_tlf
def test_negative_losses_do_not_stop_the_sweep_at_the_first_step():
    def shifted(out, y):  # a loss below zero (a log-likelihood, say): same curve, shifted by -10
        return torch.nn.functional.cross_entropy(out, y) - 10.0

    (theirs, _), (ours, _) = side_by_side(digits_mlp, criterion=shifted, start_lr=1e-4, end_lr=1, num_iter=30)
    assert len(theirs.history["loss"]) == 1  # -10 > 5 * -10: torch-lr-finder stops after one step
    assert len(ours.history["loss"]) == 30


# -- the constructor's checks ----------------------------------------------------------------------------
def test_apex_is_refused_in_one_line_that_names_the_replacement():
    task = digits_mlp()
    with pytest.raises(InputError) as err:
        LRFinder(task.model, task.optimizer, task.criterion, amp_backend="apex")
    assert "\n" not in str(err.value) and "amp_backend='torch'" in str(err.value)
    with pytest.raises(InputError, match="'fp16'"):
        LRFinder(task.model, task.optimizer, task.criterion, amp_backend="fp16")
    with pytest.warns(UserWarning, match="ignored without amp_backend='torch'"):
        LRFinder(task.model, task.optimizer, task.criterion, grad_scaler=torch.amp.GradScaler("cpu"))


def test_amp_config_for_another_device_or_dtype_is_refused_before_training():
    task = digits_mlp()
    with pytest.raises(InputError, match="device_type='cuda'"):
        LRFinder(task.model, task.optimizer, task.criterion, amp_backend="torch",
                 amp_config={"device_type": "cuda", "dtype": torch.float16})
    with pytest.raises(InputError, match="bfloat16"):
        LRFinder(task.model, task.optimizer, task.criterion, amp_backend="torch",
                 amp_config={"device_type": "cpu", "dtype": torch.float32})
    with pytest.raises(InputError, match="not supported"):
        LRFinder(task.model, task.optimizer, task.criterion, amp_backend="torch", amp_config={"fast": True})


def test_torch_amp_maps_to_bf16_autocast_on_cpu():
    losses = {}
    for backend in (None, "torch"):
        task = digits_mlp()
        finder = LRFinder(task.model, task.optimizer, task.criterion, amp_backend=backend,
                          amp_config=None if backend is None else {"device_type": "cpu", "dtype": torch.bfloat16})
        finder.range_test(task.loader, start_lr=1e-4, end_lr=1e-2, num_iter=10)
        losses[backend] = finder.result.raw_loss
        assert finder.result.settings["amp_dtype"] == (None if backend is None else "bfloat16")
    # bf16 rounds the forward pass: close to fp32, not equal
    assert losses["torch"] != losses[None]
    np.testing.assert_allclose(losses["torch"], losses[None], rtol=0.05)


@pytest.mark.parametrize("enabled", [True, False])
@needs_tlf
def test_float16_autocast_on_cpu_runs_as_in_torch_lr_finder(enabled):
    """torch-lr-finder runs torch.autocast("cpu", dtype=torch.float16) and steps through its grad_scaler; the
    scaler changes the numbers (fp16 gradients that would underflow), so both settings are compared."""
    amp = {"amp_backend": "torch", "amp_config": {"device_type": "cpu", "dtype": torch.float16}}
    out = []
    for cls in (tlf.LRFinder, LRFinder):
        task = digits_mlp()
        scaler = torch.amp.GradScaler("cpu", enabled=enabled)
        torch.manual_seed(123)
        finder = cls(task.model, task.optimizer, task.criterion, grad_scaler=scaler, **amp)
        finder.range_test(task.loader, start_lr=1e-5, end_lr=1, num_iter=30, accumulation_steps=2)
        out.append((finder, scaler))
    (theirs, their_scaler), (ours, our_scaler) = out
    assert ours.history["loss"] == theirs.history["loss"] and len(ours.history["loss"]) == 30
    assert ours.result.settings["amp_dtype"] == "float16"
    # the scaler's own state (scale, growth tracker) is restored after the test; theirs kept stepping
    assert our_scaler.state_dict() == torch.amp.GradScaler("cpu", enabled=enabled).state_dict()
    task = digits_mlp()
    fp32 = LRFinder(task.model, task.optimizer, task.criterion)
    torch.manual_seed(123)
    fp32.range_test(task.loader, start_lr=1e-5, end_lr=1, num_iter=30, accumulation_steps=2)
    assert fp32.history["loss"] != ours.history["loss"]  # float16 really ran


@pytest.mark.gpu
def test_torch_amp_uses_the_given_grad_scaler_on_cuda():
    class CountingScaler(torch.amp.GradScaler):
        calls = 0

        def scale(self, outputs):
            CountingScaler.calls += 1
            return super().scale(outputs)

    task = digits_mlp()
    task.model.cuda()
    scaler = CountingScaler("cuda")
    finder = LRFinder(task.model, task.optimizer, task.criterion, amp_backend="torch",
                      amp_config={"device_type": "cuda", "dtype": torch.float16}, grad_scaler=scaler)
    finder.range_test(task.loader, num_iter=10, accumulation_steps=2, end_lr=1)
    assert CountingScaler.calls == 20 and finder.result.settings["amp_dtype"] == "float16"


@pytest.mark.gpu
def test_device_moves_the_model_for_the_test_and_back():
    task = digits_mlp()
    before = state_of(task.model, task.optimizer)
    finder = LRFinder(task.model, task.optimizer, task.criterion, device="cuda")
    finder.range_test(task.loader, num_iter=10, end_lr=1)
    assert finder.result.settings["device"].startswith("cuda")
    assert all(p.device.type == "cpu" for p in task.model.parameters())
    assert_same_state(before, state_of(task.model, task.optimizer))


def test_unavailable_device_and_missing_cache_dir_are_refused(tmp_path):
    task = digits_mlp()
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            LRFinder(task.model, task.optimizer, task.criterion, device="cuda")
    with pytest.raises(InputError, match="not a folder"):
        LRFinder(task.model, task.optimizer, task.criterion, cache_dir=tmp_path / "missing")
    with pytest.raises(InputError, match="device='gpu0' is not a device"):  # the core's checks, shared
        LRFinder(task.model, task.optimizer, task.criterion, device="gpu0")
    with pytest.raises(InputTypeError, match="cache_dir=3 must be a folder path or None"):
        LRFinder(task.model, task.optimizer, task.criterion, cache_dir=3)


# -- range_test's checks -----------------------------------------------------------------------------------
def test_bad_start_lrs_are_refused_before_any_step():
    task = digits_groups()
    before = state_of(task.model, task.optimizer)
    finder = LRFinder(task.model, task.optimizer, task.criterion)
    with pytest.raises(InputError, match=r"param group 0's start lr=0.001 \(the optimizer's LR \(start_lr=None\)"):
        finder.range_test(task.loader, end_lr=1e-4)  # the optimizer's LR is above end_lr
    with pytest.raises(InputError, match="2 param groups"):
        finder.range_test(task.loader, start_lr=[1e-5, 1e-5, 1e-5])
    with pytest.raises(InputError, match="positive"):
        finder.range_test(task.loader, start_lr=0.0)
    with pytest.raises(InputError, match="num_iter"):
        finder.range_test(task.loader, num_iter=1)
    with pytest.raises(InputError, match="`train_loader` has unsupported type: list"):
        finder.range_test([(torch.zeros(2, 64), torch.zeros(2, dtype=torch.long))])
    assert task.optimizer.applied == []
    assert_same_state(before, state_of(task.model, task.optimizer))


def test_step_mode_is_case_insensitive_as_in_torch_lr_finder():
    task = digits_mlp()
    finder = LRFinder(task.model, task.optimizer, task.criterion)
    finder.range_test(task.loader, start_lr=1e-3, end_lr=1e-2, num_iter=4, step_mode="LINEAR")
    assert finder.history["lr"] == pytest.approx([1e-3, 4e-3, 7e-3, 1e-2])


# -- history and plot --------------------------------------------------------------------------------------
def test_history_is_a_plain_dict_users_can_change():
    task = digits_mlp()
    finder = LRFinder(task.model, task.optimizer, task.criterion)
    finder.range_test(task.loader, start_lr=1e-4, end_lr=1, num_iter=20)
    assert type(finder.history) is dict and set(finder.history) == {"lr", "loss"}
    assert type(finder.history["lr"]) is list and type(finder.history["loss"]) is list
    finder.history["lr"].append(2.0)
    finder.history["loss"].append(100.0)
    ax = finder.plot(skip_start=0, skip_end=0, suggest_lr=False, ax=plt.subplots()[1])
    assert ax.lines[0].get_xdata()[-1] == 2.0  # plot draws what the dict holds now
    plt.close("all")


@needs_tlf
def test_plot_returns_torch_lr_finders_values_and_steepest_point():
    (theirs, _), (ours, _) = side_by_side(digits_mlp, start_lr=1e-4, num_iter=60)
    for kwargs in ({}, {"skip_start": 0, "skip_end": 0}, {"skip_start": 5, "skip_end": 20, "log_lr": False}):
        t_ax, t_lr = theirs.plot(ax=plt.subplots()[1], **kwargs)
        o_ax, o_lr = ours.plot(ax=plt.subplots()[1], **kwargs)
        assert o_lr == t_lr
        lrs, losses = ax_data(o_ax)
        assert np.array_equal(lrs, ax_data(t_ax)[0]) and np.array_equal(losses, ax_data(t_ax)[1])
        assert o_lr == lrs[np.gradient(losses).argmin()]
        assert len(o_ax.lines) == 1 and len(o_ax.collections) == 1
    ax = ours.plot(ax=plt.subplots()[1], suggest_lr=False, show_lr=1e-2)
    assert not isinstance(ax, tuple) and len(ax.collections) == 0 and len(ax.lines) == 2
    plt.close("all")


def ax_data(ax):
    x, y = ax.lines[0].get_data()
    return np.asarray(x), np.asarray(y)


def test_plot_can_mark_our_own_suggestion():
    task = digits_mlp()
    finder = LRFinder(task.model, task.optimizer, task.criterion)
    finder.range_test(task.loader, start_lr=1e-5, num_iter=100)
    ax, lr = finder.plot(ax=plt.subplots()[1], suggest_lr="default")
    expected = analyze(finder.result.lr, finder.result.raw_loss).lr
    assert lr is not None and lr == expected == finder.get_suggested_lr()
    # the marked point is the plotted point nearest to it
    x = float(ax.collections[0].get_offsets()[0][0])
    step = math.log(finder.history["lr"][1] / finder.history["lr"][0])
    assert abs(math.log(x / lr)) <= step / 2 + 1e-12
    assert ax.get_legend().get_texts()[0].get_text() == "suggested (default)"
    plt.close("all")


def test_plot_checks_say_what_to_change():
    task = digits_mlp()
    finder = LRFinder(task.model, task.optimizer, task.criterion)
    finder.range_test(task.loader, start_lr=1e-4, end_lr=1e-1, num_iter=12)
    with pytest.raises(RuntimeError, match="Need at least 17 iterations.*suggest_lr=False"):
        finder.plot(skip_start=10, skip_end=5)
    with pytest.raises(ValueError, match="skip_end=-1 cannot be negative"):
        finder.plot(skip_end=-1)
    with pytest.raises(ValueError, match="suggest_lr='best'"):
        finder.plot(suggest_lr="best")
    ax = finder.plot(skip_start=0, skip_end=0, suggest_lr=False, ax=plt.subplots()[1])
    assert len(ax.lines[0].get_xdata()) == 12  # skip_end=0 keeps the last point
    plt.close("all")


# -- the loader iterators ------------------------------------------------------------------------------
class DictDataset(torch.utils.data.Dataset):
    """Digits as dict samples, a batch shape the default (inputs, labels) reading does not accept."""

    def __init__(self):
        self.x, self.y = digits_tensors(256)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixels": self.x[i], "digit": self.y[i]}


class DictTrainIter(TrainDataLoaderIter):
    def inputs_labels_from_batch(self, batch_data):
        return batch_data["pixels"], batch_data["digit"]


class DictValIter(ValDataLoaderIter):
    def inputs_labels_from_batch(self, batch_data):
        return batch_data["pixels"], batch_data["digit"]


@needs_tlf
def test_subclassed_iterators_read_any_batch_and_match_torch_lr_finder():
    class TheirTrainIter(tlf.TrainDataLoaderIter):
        def inputs_labels_from_batch(self, batch_data):
            return batch_data["pixels"], batch_data["digit"]

    results = []
    for cls, make_iter in ((tlf.LRFinder, TheirTrainIter), (LRFinder, DictTrainIter), (LRFinder, TheirTrainIter)):
        task = digits_mlp()
        torch.manual_seed(0)
        finder = cls(task.model, task.optimizer, task.criterion)
        finder.range_test(make_iter(DataLoader(DictDataset(), batch_size=32)), start_lr=1e-4, num_iter=20)
        results.append(finder.history)
    assert results[0] == results[1] == results[2]  # torch-lr-finder's own subclasses work here too


def test_val_iterator_subclass_is_read_in_full_after_every_step():
    class CountingVal(DictValIter):
        seen = 0

        def inputs_labels_from_batch(self, batch_data):
            CountingVal.seen += 1
            return super().inputs_labels_from_batch(batch_data)

    task = digits_mlp()
    loader = DataLoader(DictDataset(), batch_size=64)  # 4 batches
    finder = LRFinder(task.model, task.optimizer, task.criterion)
    finder.range_test(DictTrainIter(loader), val_loader=CountingVal(loader), start_lr=1e-4, end_lr=1e-2, num_iter=5)
    assert CountingVal.seen == 5 * 4
    with pytest.raises(InputError, match="`val_loader` has unsupported type: list"):
        finder.range_test(DictTrainIter(loader), val_loader=[1, 2], num_iter=5)


def test_default_reading_refuses_dict_batches_and_names_the_override():
    it = TrainDataLoaderIter(DataLoader(DictDataset(), batch_size=8))
    with pytest.raises(ValueError, match="override inputs_labels_from_batch"):
        next(it)


def test_train_iterator_starts_over_and_val_iterator_makes_one_pass_per_iter():
    loader = DataLoader(TensorDataset(torch.arange(10.0), torch.arange(10.0)), batch_size=4)  # 3 batches
    train = TrainDataLoaderIter(loader)
    firsts = [next(train)[0][0].item() for _ in range(7)]
    assert firsts == [0, 4, 8, 0, 4, 8, 0]
    assert isinstance(train, DataLoaderIter) and train.dataset is loader.dataset
    with pytest.raises(StopIteration):
        once = TrainDataLoaderIter(loader, auto_reset=False)
        for _ in range(4):
            next(once)
    val = ValDataLoaderIter(loader)
    assert len(list(val)) == 3 and len(list(val)) == 3  # each for-loop is a full pass
    half = ValDataLoaderIter(loader)
    next(half)
    assert len(list(half)) == 2  # a pass left half-way continues, as torch-lr-finder's does


# -- the core's stop hook ------------------------------------------------------------------------------
def test_run_stop_rule_replaces_the_divergence_rule():
    task = digits_mlp()
    finder = NativeLRFinder(task.model, task.optimizer, task.criterion)
    settings = RangeTestSettings(start_lr=1e-4, end_lr=10, num_iter=100, show_progress=False)
    seen = []

    def stop_after_five(raw_losses):
        seen.append(len(raw_losses))
        return "five steps" if len(raw_losses) == 5 else None

    history = finder.run(task.loader, settings, stop=stop_after_five)
    assert history.num_steps == 5 and history.stop_reason == "five steps" and seen == [1, 2, 3, 4, 5]
    # without the hook the same sweep runs past five steps
    assert finder.run(task.loader, settings).num_steps > 5


def test_plot_suggest_lr_steepest_is_torch_lr_finders_point(tmp_path):
    """torch-lr-finder's docstring spells its suggestion ``"steepest"``: that string must give its point."""
    task = digits_mlp()
    finder = LRFinder(task.model, task.optimizer, task.criterion)
    finder.range_test(task.loader, start_lr=1e-4, end_lr=10, num_iter=40)
    _, by_true = finder.plot(suggest_lr=True, ax=plt.subplots()[1])
    _, by_name = finder.plot(suggest_lr="steepest", ax=plt.subplots()[1])
    plt.close("all")
    assert by_name == by_true
