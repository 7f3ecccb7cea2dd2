"""CUDA checks: mixed precision, CUDA RNG, no second copy of the state on the GPU, exact restore.

Every test here is marked ``gpu`` and skipped without a CUDA device (see conftest.py). Run them with
``pytest -m gpu tests/test_gpu.py`` or ``python benchmarks/gpu_check.py``.
"""

import math
from itertools import cycle, islice

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lr_finder import LRFinder
from lr_finder.snapshot import capture

from tasks import assert_same_state, state_of

pytestmark = pytest.mark.gpu

RT = {"show_progress": False}
CUDA = torch.device("cuda")


def cuda_task(seed=0, hidden=64, n=512, batch_size=32, optimizer="adam"):
    """A small classifier with BatchNorm (buffers) and Dropout (CUDA RNG), on the GPU; the data on the CPU."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    y = (x @ torch.randn(20, 5, generator=g)).argmax(1)
    shuffle = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True, generator=shuffle)
    model = torch.nn.Sequential(
        torch.nn.Linear(20, hidden),
        torch.nn.BatchNorm1d(hidden),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(hidden, 5),
    ).to(CUDA)
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return model, opt, torch.nn.CrossEntropyLoss(), loader


def train(model, opt, crit, loader, steps, scaler=None, dtype=None):
    """A few ordinary training steps, so that optimizer state, gradients (and scaler state) exist."""
    model.train()
    for x, y in islice(cycle(loader), steps):
        x, y = x.to(CUDA), y.to(CUDA)
        opt.zero_grad()
        with torch.autocast("cuda", dtype=dtype or torch.float16, enabled=dtype is not None):
            loss = crit(model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
    torch.cuda.synchronize()


def record_dtype(module):
    seen = []
    handle = module.register_forward_hook(lambda m, args, out: seen.append(out.dtype))
    return seen, handle


def test_amp_fp16_with_grad_scaler_runs_in_fp16_and_restores_exactly():
    model, opt, crit, loader = cuda_task()
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**12, growth_interval=2)
    train(model, opt, crit, loader, 3, scaler=scaler, dtype=torch.float16)
    before = state_of(model, opt)
    scaler_before = scaler.state_dict()
    seen, handle = record_dtype(model[0])
    f = LRFinder(model, opt, crit, scaler=scaler)
    h = f.range_test(loader, start_lr=1e-5, end_lr=1.0, num_iter=30, use_amp=True, **RT)
    handle.remove()
    assert h.settings["amp_dtype"] == "float16"
    assert seen and all(d == torch.float16 for d in seen), set(seen)
    assert len(h["lr"]) >= 10 and all(math.isfinite(v) for v in h["raw_loss"])
    assert_same_state(before, state_of(model, opt))
    assert scaler.state_dict() == scaler_before


def test_amp_fp16_without_a_scaler_makes_its_own_and_leaves_the_model_exact():
    model, opt, crit, loader = cuda_task(optimizer="sgd")
    train(model, opt, crit, loader, 2)
    before = state_of(model, opt)
    h = LRFinder(model, opt, crit).range_test(loader, start_lr=1e-5, end_lr=1e-2, num_iter=15, **RT)
    assert h.settings["amp_dtype"] == "float16"  # use_amp=True is the default: fp16 + a GradScaler on CUDA
    assert len(h["lr"]) >= 5
    assert_same_state(before, state_of(model, opt))


def test_bf16_autocast_needs_no_scaler_and_restores_exactly():
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16 support")
    model, opt, crit, loader = cuda_task()
    train(model, opt, crit, loader, 2)
    before = state_of(model, opt)
    seen, handle = record_dtype(model[0])
    f = LRFinder(model, opt, crit)
    h = f.range_test(
        loader, start_lr=1e-5, end_lr=1e-2, num_iter=20, use_amp=True, amp_dtype=torch.bfloat16, **RT
    )
    handle.remove()
    assert h.settings["amp_dtype"] == "bfloat16"
    assert seen and all(d == torch.bfloat16 for d in seen), set(seen)
    assert len(h["lr"]) >= 5 and all(math.isfinite(v) for v in h["raw_loss"])
    assert_same_state(before, state_of(model, opt))


def test_cuda_rng_state_is_restored():
    model, opt, crit, loader = cuda_task()
    torch.cuda.manual_seed(123)
    expected = torch.cuda.get_rng_state()
    probe = torch.nn.functional.dropout(torch.ones(64, device=CUDA), 0.5, training=True)  # dropout draws here
    assert probe.numel() and not torch.equal(torch.cuda.get_rng_state(), expected)
    torch.cuda.set_rng_state(expected)
    f = LRFinder(model, opt, crit)
    f.range_test(loader, start_lr=1e-5, end_lr=1e-2, num_iter=10, use_amp=False, **RT)
    assert torch.equal(torch.cuda.get_rng_state(), expected)
    after = torch.rand(8, device=CUDA)
    torch.cuda.set_rng_state(expected)
    assert torch.equal(after, torch.rand(8, device=CUDA))


@pytest.mark.parametrize("memory_cache", [True, False])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_exact_restore_on_cuda_twice_in_a_row(tmp_path, memory_cache, optimizer):
    model, opt, crit, loader = cuda_task(optimizer=optimizer)
    train(model, opt, crit, loader, 2)  # optimizer state and gradients exist on the GPU
    model.eval()
    model[1].train()  # a mixed train/eval pattern
    before = state_of(model, opt)
    rng = torch.cuda.get_rng_state()
    f = LRFinder(model, opt, crit, memory_cache=memory_cache, cache_dir=tmp_path / "c")
    for _ in range(2):  # the second run would differ if the snapshot were aliased by the live state
        f.range_test(loader, start_lr=1e-4, end_lr=10, num_iter=25, use_amp=False, **RT)
        assert_same_state(before, state_of(model, opt))
        assert torch.equal(torch.cuda.get_rng_state(), rng)
    assert all(p.is_cuda for p in model.parameters())
    assert not [p for p in (tmp_path / "c").rglob("*") if p.is_file()], "no snapshot files left"


def test_snapshot_of_cuda_tensors_is_in_pinned_cpu_memory():
    model, opt, crit, loader = cuda_task()
    train(model, opt, crit, loader, 2)
    snap = capture(model, opt)
    try:
        for live, saved in zip(snap.tensors, snap.saved.values, strict=True):
            assert saved.device.type == "cpu"
            if live.is_cuda:
                assert saved.is_pinned()
        for st in snap.saved.opt_state.values():
            for value in st.values():
                if isinstance(value, torch.Tensor):
                    assert value.device.type == "cpu"
    finally:
        snap.close()


def test_a_nan_stops_the_sweep_at_once_on_cuda():
    model, opt, crit, loader = cuda_task()
    calls = {"n": 0}

    def poison(module, args, out):
        calls["n"] += 1
        return out * float("nan") if calls["n"] == 8 else out

    handle = model.register_forward_hook(poison)
    before = state_of(model, opt)
    f = LRFinder(model, opt, crit)
    h = f.range_test(loader, start_lr=1e-5, end_lr=1e-3, num_iter=30, use_amp=False, **RT)
    handle.remove()
    assert "non-finite" in h.stop_reason
    assert len(h["lr"]) == 7  # the steps before the NaN, nothing after it
    assert calls["n"] == 8  # each step's loss is read back before the next step starts
    assert_same_state(before, state_of(model, opt))


def test_no_second_copy_of_the_state_lands_on_the_gpu():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(1024, 2048), torch.nn.ReLU(), torch.nn.Linear(2048, 1024), torch.nn.ReLU(),
        torch.nn.Linear(1024, 10),
    ).to(CUDA)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    crit = torch.nn.CrossEntropyLoss()
    batches = [
        (torch.randn(256, 1024, device=CUDA), torch.randint(0, 10, (256,), device=CUDA)) for _ in range(4)
    ]

    def bare(steps):
        for x, y in islice(cycle(batches), steps):
            opt.zero_grad(set_to_none=True)
            crit(model(x), y).backward()
            opt.step()
        model.zero_grad(set_to_none=True)
        torch.cuda.synchronize()

    bare(3)  # Adam's state exists; cuBLAS workspaces are allocated
    tensors = list(model.parameters()) + [
        v for st in opt.state.values() for v in st.values() if isinstance(v, torch.Tensor)
    ]
    state_bytes = sum(t.numel() * t.element_size() for t in tensors)
    start = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    bare(10)
    bare_peak = torch.cuda.max_memory_allocated() - start
    torch.cuda.reset_peak_memory_stats()
    f = LRFinder(model, opt, crit)
    f.range_test(batches, start_lr=1e-5, end_lr=1e-3, num_iter=10, use_amp=False, **RT)
    torch.cuda.synchronize()
    ours_peak = torch.cuda.max_memory_allocated() - start
    left = torch.cuda.memory_allocated() - start
    assert state_bytes > 40e6  # the test is meaningful: a second copy would be tens of MB
    assert ours_peak <= bare_peak + 0.05 * state_bytes, (ours_peak, bare_peak, state_bytes)
    assert abs(left) <= 0.01 * state_bytes, left  # nothing of the test stays on the GPU


def test_large_state_restores_exactly_and_the_pinned_buffer_is_reused():
    """A state large enough that a copy still in flight when the first step starts would save updated
    weights: the copies land before training; no hook is left anywhere; a second test reuses the same
    page-locked buffer, and close() frees it."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(2048, 2048), torch.nn.BatchNorm1d(2048), torch.nn.Linear(2048, 5)]
    model = torch.nn.Sequential(*layers).to(CUDA)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = torch.nn.CrossEntropyLoss()
    x, y = torch.randn(256, 2048), torch.randint(0, 5, (256,))
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    train(model, opt, crit, loader, 2)
    before = state_of(model, opt)
    f = LRFinder(model, opt, crit)
    f.range_test(loader, start_lr=1e-3, end_lr=1, num_iter=5, **RT)
    assert_same_state(before, state_of(model, opt))
    assert not model._forward_pre_hooks and not opt._optimizer_step_pre_hooks
    assert not torch.nn.modules.module._global_forward_pre_hooks
    buffer = f._pinned.buffer
    assert buffer is not None and buffer.is_pinned()
    f.range_test(loader, start_lr=1e-3, end_lr=1, num_iter=5, **RT)
    assert f._pinned.buffer.data_ptr() == buffer.data_ptr(), "the pinned buffer was allocated again"
    assert_same_state(before, state_of(model, opt))
    f.close()
    assert f._pinned.buffer is None


def test_exact_restore_when_the_loss_calls_submodules_directly():
    """A loss_fn (or a LightningModule's training_step) that calls the layers itself never calls the model:
    the BatchNorm statistics it updates in place are still restored exactly."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(2048, 2048), torch.nn.BatchNorm1d(2048), torch.nn.Linear(2048, 5))
    model = model.to(CUDA)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = torch.nn.CrossEntropyLoss()

    def loss_fn(m, batch):
        x, y = batch[0].to(CUDA), batch[1].to(CUDA)
        return crit(m[2](m[1](m[0](x))), y)

    x, y = torch.randn(256, 2048), torch.randint(0, 5, (256,))
    loader = DataLoader(TensorDataset(x, y), batch_size=64)
    train(model, opt, crit, loader, 2)
    before = state_of(model, opt)
    LRFinder(model, opt, None, loss_fn=loss_fn).range_test(loader, start_lr=1e-3, end_lr=1, num_iter=5, **RT)
    assert_same_state(before, state_of(model, opt))
