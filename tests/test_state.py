"""Snapshot and restore: every item of the restore promise, bit for bit, any number of times."""

import os
import random
import tempfile
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lr_finder import LRFinder
from lr_finder.errors import StorageError
from lr_finder.snapshot import capture, tracked_tensors

from tasks import Task, assert_same_state, digits_mlp, digits_tensors, state_of


def train_steps(task, n=3, lr=0.5):
    for g in task.optimizer.param_groups:
        g["lr"] = lr
    it = iter(task.loader)
    for _ in range(n):
        x, y = next(it)
        task.optimizer.zero_grad()
        task.criterion(task.model(x), y).backward()
        task.optimizer.step()


@pytest.mark.parametrize("memory_cache", [True, False])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_restore_twice_in_a_row_is_exact(tmp_path, memory_cache, optimizer):
    task = digits_mlp(optimizer=optimizer)
    train_steps(task, 2, lr=0.01)  # optimizer state (momentum / Adam moments, step) exists and has grads
    task.model.eval()
    task.model[1].train()  # a mixed train/eval pattern
    before = state_of(task.model, task.optimizer)
    snap = capture(task.model, task.optimizer, memory_cache=memory_cache, cache_dir=tmp_path / "cache")
    for _ in range(2):  # the second round would fail if the snapshot were aliased by the live state
        task.model.train()
        train_steps(task, 3, lr=1.0)
        task.optimizer.param_groups[0]["weight_decay"] = 0.5
        task.optimizer.param_groups[0]["extra_key"] = 1
        snap.restore()
        assert_same_state(before, state_of(task.model, task.optimizer))
    snap.close()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_optimizer_state_absent_before_is_absent_after():
    task = digits_mlp(optimizer="adam")
    assert not task.optimizer.state
    snap = capture(task.model, task.optimizer)
    train_steps(task, 2)
    assert task.optimizer.state
    snap.restore()
    assert not task.optimizer.state
    assert all(p.grad is None for p in task.model.parameters())


def test_grads_and_requires_grad_flags_come_back():
    task = digits_mlp()
    params = list(task.model.parameters())
    params[0].grad = torch.randn_like(params[0])
    params[-1].requires_grad_(False)
    before = state_of(task.model, task.optimizer)
    snap = capture(task.model, task.optimizer)
    params[0].grad = None
    params[1].grad = torch.ones_like(params[1])
    params[-1].requires_grad_(True)
    snap.restore()
    assert_same_state(before, state_of(task.model, task.optimizer))


def test_parameter_identity_is_kept():
    task = digits_mlp()
    ids = [id(p) for p in task.model.parameters()]
    snap = capture(task.model, task.optimizer)
    train_steps(task, 1)
    snap.restore()
    assert [id(p) for p in task.model.parameters()] == ids
    assert [id(p) for p in task.optimizer.param_groups[0]["params"]] == ids


def test_rng_states_and_loader_generator_come_back():
    task = digits_mlp()
    g = task.loader.generator
    snap = capture(task.model, task.optimizer, generators=[g])
    expected = (random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=g))
    snap.restore()
    for _ in range(3):
        random.random(), np.random.rand(), torch.rand(5), torch.rand(5, generator=g)
    snap.restore()
    got = (random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=g))
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2]) and torch.equal(got[3], expected[3])


def test_grad_scaler_state_comes_back():
    task = digits_mlp()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1)
    x, y = next(iter(task.loader))
    scaler.scale(task.criterion(task.model(x), y)).backward()
    scaler.step(task.optimizer)
    scaler.update()
    before = scaler.state_dict()
    snap = capture(task.model, task.optimizer, scaler=scaler)
    for _ in range(3):
        task.optimizer.zero_grad()
        scaler.scale(task.criterion(task.model(x), y)).backward()
        scaler.step(task.optimizer)
        scaler.update()
    assert scaler.state_dict() != before
    snap.restore()
    assert scaler.state_dict() == before


def test_lr_scheduler_counters_and_state_unchanged():
    task = digits_mlp()
    sched = torch.optim.lr_scheduler.StepLR(task.optimizer, step_size=1, gamma=0.5)
    sched_before = sched.state_dict()
    had = hasattr(task.optimizer, "_opt_called")
    snap = capture(task.model, task.optimizer)
    train_steps(task, 2)
    snap.restore()
    assert sched.state_dict() == sched_before
    assert hasattr(task.optimizer, "_opt_called") == had


def test_disk_snapshot_is_raw_bytes_without_pickle(tmp_path, monkeypatch):
    task = digits_mlp(optimizer="adam")
    train_steps(task, 1, lr=0.01)
    unpickled = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: unpickled.append(a))
    snap = capture(task.model, task.optimizer, memory_cache=False, cache_dir=tmp_path)
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    tensors = tracked_tensors(task.model, task.optimizer)
    tensors += [t.grad for t in tensors if t.grad is not None]
    expected = sum(t.numel() * t.element_size() for t in tensors)
    expected += sum(v.numel() * v.element_size() for s in task.optimizer.state.values() for v in s.values())
    assert [f.name for f in files] == ["snapshot.bin"] and files[0].stat().st_size == expected
    train_steps(task, 1)
    snap.restore()
    assert not unpickled
    snap.close()
    assert not list(tmp_path.rglob("*")), "the private snapshot folder is removed"


def test_criterion_module_parameters_are_restored():
    task = digits_mlp()
    crit = torch.nn.Linear(2, 2)  # stands for a loss with learnable parameters
    opt = torch.optim.SGD(list(task.model.parameters()) + list(crit.parameters()), lr=0.1)
    before = crit.weight.detach().clone()
    snap = capture(task.model, opt, criterion=crit)
    with torch.no_grad():
        crit.weight.add_(1.0)
    snap.restore()
    assert torch.equal(crit.weight, before)


class _Odd(torch.nn.Module):
    """Tensors of every awkward kind: non-contiguous, channels-last, empty, bf16, complex, int, bool, sparse."""

    def __init__(self):
        super().__init__()
        self.t = torch.nn.Parameter(torch.randn(7, 5).t())  # non-contiguous
        self.conv = torch.nn.Parameter(torch.randn(2, 3, 4, 4).to(memory_format=torch.channels_last))
        self.empty = torch.nn.Parameter(torch.zeros(0, 3))
        self.bf16 = torch.nn.Parameter(torch.randn(33, dtype=torch.bfloat16))
        self.cplx = torch.nn.Parameter(torch.randn(6, dtype=torch.complex64))
        self.register_buffer("count", torch.arange(5, dtype=torch.int64))
        self.register_buffer("mask", torch.tensor([True, False, True]))
        sparse = torch.sparse_coo_tensor([[0, 2], [1, 0]], [1.5, -2.0], (3, 2), check_invariants=True)
        self.register_buffer("sparse", sparse)


@pytest.mark.parametrize("memory_cache", [True, False])
def test_awkward_tensors_and_tiny_disk_pieces_restore_exactly(tmp_path, monkeypatch, memory_cache):
    from lr_finder.snapshot import _disk

    monkeypatch.setattr(_disk, "CHUNK", 24)  # tensors written and read in many pieces
    m = _Odd()
    opt = torch.optim.Adam([m.t, m.conv, m.empty, m.cplx], lr=0.1)
    before = {k: v.detach().clone() for k, v in m.state_dict().items()}
    strides = {k: v.stride() for k, v in m.state_dict().items() if not v.is_sparse}
    snap = capture(m, opt, memory_cache=memory_cache, cache_dir=tmp_path)
    if not memory_cache:
        assert max(len(getattr(v, "pieces", ())) for v in snap.saved.values) > 3
    for _ in range(2):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(1)
            m.count.add_(1)
            m.mask.logical_not_()
            m.sparse.mul_(3)
        snap.restore()
        for k, v in m.state_dict().items():
            if v.is_sparse:
                assert torch.equal(v.to_dense(), before[k].to_dense()), k
            else:
                assert torch.equal(v, before[k]) and v.stride() == strides[k], k
    snap.close()
    assert not list(tmp_path.rglob("*.*"))


class _Tracker(torch.nn.Module):
    """Statistics kept the way real modules keep them: buffers re-assigned in ``forward``, not updated in place.

    ``steps`` counts calls, ``ema`` follows the activations, ``last`` is registered as ``None`` and filled by
    the first call, and ``gain`` is a parameter re-created (clamped) on every call.
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("ema", torch.zeros(n))
        self.register_buffer("last", None)
        self.gain = torch.nn.Parameter(torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.steps = self.steps + 1
            self.ema = 0.9 * self.ema + 0.1 * x.detach().mean(0)
            self.last = x.detach()[:1].clone()
            self.gain = torch.nn.Parameter(self.gain.detach().clamp(-2.0, 2.0))
        return x * self.gain


def _held(model: torch.nn.Module) -> dict[tuple[str, str, str], Any]:
    """Every parameter and buffer slot of every module: the object it holds and a bitwise copy of its value."""
    out: dict[tuple[str, str, str], Any] = {}
    for mname, m in model.named_modules(remove_duplicate=False):
        for kind, slots in (("param", m._parameters), ("buffer", m._buffers)):
            for name, t in slots.items():
                out[(mname, kind, name)] = (t, None if t is None else t.detach().clone())
    return out


def _assert_held_again(before: dict[tuple[str, str, str], Any], model: torch.nn.Module) -> None:
    after = _held(model)
    assert after.keys() == before.keys(), set(after) ^ set(before)
    for key, (obj, value) in before.items():
        now = after[key][0]
        assert now is obj, f"{key} holds another object ({now!r:.60})"
        if value is not None:
            assert torch.equal(now.detach().view(-1), value.view(-1)), key


@pytest.mark.parametrize("memory_cache", [True, False])
def test_buffers_and_parameters_reassigned_in_forward_come_back_by_module_and_name(tmp_path, memory_cache):
    task = digits_mlp(optimizer="adam")
    tracker = _Tracker(32)
    model = torch.nn.Sequential(task.model[0], task.model[1], tracker, *task.model[2:])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tracker.eval()  # the optimizer must keep holding ``gain``: the tracker updates nothing while training here
    train_steps(Task(model, opt, task.criterion, task.loader, task.dataset), 2, lr=1e-3)
    model.train()
    tracker.steps.fill_(2)
    tracker.ema.normal_()
    before, state = _held(model), state_of(model, opt)
    finder = LRFinder(model, opt, task.criterion, memory_cache=memory_cache, cache_dir=tmp_path / "c")
    finder.range_test(task.loader, start_lr=1e-4, end_lr=1e-1, num_iter=12, show_progress=False)
    assert int(tracker.steps) == 2 and tracker.last is None
    _assert_held_again(before, model)
    assert_same_state(state, state_of(model, opt))
    gain = tracker.gain
    assert set(opt.state) == set(model.parameters()) and any(gain is p for p in opt.state)


@pytest.mark.parametrize("memory_cache", [True, False])
def test_tied_parameters_and_their_optimizer_state_come_back(tmp_path, memory_cache):
    torch.manual_seed(0)
    x, y = digits_tensors(256)
    tokens = (x * 3).long().clamp(max=15)  # 64 tokens in 16 values per sample
    loader = DataLoader(TensorDataset(tokens, y), batch_size=32, shuffle=True,
                        generator=torch.Generator().manual_seed(0))

    class Tied(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(16, 8)
            self.decode = torch.nn.Linear(8, 16, bias=False)
            self.decode.weight = self.embed.weight  # one Parameter held by two modules
            self.head = torch.nn.Linear(16, 10)

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.head(self.decode(self.embed(t)).mean(1))

    model = Tied()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = torch.nn.CrossEntropyLoss()
    t0, y0 = next(iter(loader))
    crit(model(t0), y0).backward()
    opt.step()
    before, state = _held(model), state_of(model, opt)
    moments = {id(p): s["exp_avg"].clone() for p, s in opt.state.items()}
    LRFinder(model, opt, crit, memory_cache=memory_cache, cache_dir=tmp_path).range_test(
        loader, start_lr=1e-4, end_lr=1.0, num_iter=10, show_progress=False)
    assert model.decode.weight is model.embed.weight
    _assert_held_again(before, model)
    assert_same_state(state, state_of(model, opt))
    assert {id(p) for p in opt.state} == set(moments)
    for p, s in opt.state.items():
        assert torch.equal(s["exp_avg"], moments[id(p)])
    crit(model(t0), y0).backward()  # training goes on with the same objects
    opt.step()
    assert opt.state[model.embed.weight]["step"].item() == 2


@pytest.mark.parametrize("memory_cache", [True, False])
@pytest.mark.parametrize("problem", ["a file", "under a file", "read-only"])
def test_unusable_cache_dir_is_refused_before_the_first_step(tmp_path, monkeypatch, memory_cache, problem):
    task = digits_mlp()
    calls = []
    task.model[0].register_forward_pre_hook(lambda m, a: calls.append(1))
    before = state_of(task.model, task.optimizer)
    if problem in ("a file", "under a file"):
        where = tmp_path / "taken"
        where.write_text("not a folder")
        where = where if problem == "a file" else where / "sub"
        match = "is a file, not a folder"
    else:
        where = tmp_path / "ro"
        where.mkdir()
        os.chmod(where, 0o500)
        if os.access(where, os.W_OK):  # root ignores the mode bits: simulate the denial
            def deny(*a, **k):
                raise PermissionError(13, "Permission denied")

            monkeypatch.setattr(tempfile, "mkstemp", deny)
        match = "is not writable" + ("" if memory_cache else ".*or memory_cache=True")
    f = LRFinder(task.model, task.optimizer, task.criterion, memory_cache=memory_cache, cache_dir=where)
    with pytest.raises(StorageError, match=match) as info:
        f.range_test(task.loader, num_iter=5, show_progress=False)
    assert str(where) in str(info.value)
    assert not calls, "refused before the first step"
    assert_same_state(before, state_of(task.model, task.optimizer))
    if where.is_dir():
        os.chmod(where, 0o700)


@pytest.mark.parametrize("memory_cache", [True, False])
def test_optimizer_state_holding_lists_of_tensors_comes_back(tmp_path, memory_cache):
    task = digits_mlp()
    opt = torch.optim.LBFGS(task.model.parameters(), lr=0.1, history_size=3)
    x, y = next(iter(task.loader))

    def closure():
        opt.zero_grad()
        loss = task.criterion(task.model(x), y)
        loss.backward()
        return loss

    opt.step(closure)  # "old_dirs" and "old_stps" are lists of tensors
    flat = [torch.cat([t.reshape(-1) for t in v]) if isinstance(v, list) and v else v
            for v in opt.state[opt.param_groups[0]["params"][0]].values()]
    assert any(isinstance(v, list) for v in opt.state[opt.param_groups[0]["params"][0]].values())
    snap = capture(task.model, opt, memory_cache=memory_cache, cache_dir=tmp_path)
    for _ in range(2):
        opt.step(closure)
        snap.restore()
        now = [torch.cat([t.reshape(-1) for t in v]) if isinstance(v, list) and v else v
               for v in opt.state[opt.param_groups[0]["params"][0]].values()]
        assert len(now) == len(flat)
        for a, b in zip(flat, now, strict=True):
            assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b
    snap.close()
