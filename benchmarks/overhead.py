"""What a range test costs beyond the training it does: time, memory and early stop, against the bare loop
and the real torch-lr-finder package.

    python benchmarks/overhead.py            # CPU, full run (a few minutes on one thread)
    python benchmarks/overhead.py --quick    # fewer steps and rounds (one to two minutes)
    python benchmarks/overhead.py --device cuda --out benchmarks/results/overhead_cuda.md

Method
- The model is an MLP 512-2048-2048-10 (5.27M parameters) with Adam (``foreach=True``: the same update,
  a third cheaper on CPU, which makes a fixed overhead weigh more) whose state exists before the test,
  so "one copy of model+optimizer state" is the parameters plus Adam's two moments (63 MB). The batches
  are made up front and served by a ``DataLoader(batch_size=None)`` (torch-lr-finder accepts only a
  DataLoader), on the model's device; fp32, ``torch.set_num_threads(1)``.
- Time: in one process, rounds that each run the bare loop and ours (``memory_cache=True``), and in the
  first rounds also ours with ``memory_cache=False`` and torch-lr-finder, over the same ``num_iter`` steps
  and learning rates, in an order reversed every round; the figure is the median over rounds of the
  paired ratio ``run / bare loop of the same round``. On CPU the clock is the process CPU time (the
  wall-clock ratio is shown too); on CUDA it is wall time with a synchronisation at both ends. A run
  covers everything a user waits for: building the finder (torch-lr-finder snapshots there), the sweep
  and the restore. With other processes on the same cores the CPU time of a run still varies by 5-10%
  from one run to the next (shared caches and memory bandwidth), more than the overhead measured, so a
  robust figure comes with it, "from its parts": the fastest of five snapshot+restore+free cycles plus
  the per-step cost of our loop (measured on a tiny model, where a step is almost all overhead), over the
  fastest bare run (a one-sided slow-down cannot make a minimum smaller). "Page faults / step" (minor
  faults of the process per step, median) explains much of what the clock shows:
  under glibc's adaptive malloc, whether a step's gradients and optimizer temporaries come from the heap
  or from fresh pages (thousands of page faults per step) depends on what was allocated and freed before;
  here it moved the step time by 10-25% from run to run, for the bare loop too, and torch-lr-finder's
  snapshot (a deep copy on the heap) made it systematic (about 1.4x-1.5x). So the timing process runs
  under a fixed malloc by default (``--malloc fixed``: the script re-executes itself with
  ``MALLOC_MMAP_THRESHOLD_`` = 32 MiB and ``MALLOC_TRIM_THRESHOLD_`` = 4 GiB), and ``--malloc default``
  measures glibc's adaptive behaviour instead. Our memory snapshot is one buffer per kind of memory; the
  first touch of its fresh pages shows in "page faults / step" (spread over the run's steps), as it would
  in any copy of the state.
- Memory: each variant in a fresh subprocess, glibc's mmap threshold fixed at 128 KiB (so every large
  tensor is mapped and unmapped and the resident size follows the live tensors, not the heap's history).
  The baseline is the peak after the model, the optimizer state and a bare run of the same steps exist
  (so the training step's own transient memory is in it), after the variant ran once on a tiny model (so
  the code pages and lazy imports of a first call, ~0.8 MB once per process, do not count as state); the
  figure is the peak during the run above it: the process's VmHWM on CPU, ``torch.cuda.max_memory_allocated``
  on CUDA (and VmHWM for the host). "Restore peak" is the rise of VmHWM during our restore alone (in a
  second process), from a peak reset (Linux ``/proc/self/clear_refs``) just before it with the sweep's
  gradients freed, which shows whether a disk snapshot is materialised in memory.
- Early stop: a sweep to ``end_lr=10`` that diverges; the step where the stop rule's threshold is first
  crossed is found from a reference bare run's losses; we report the steps each finder ran.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from lr_finder import LRFinder  # noqa: E402
from lr_finder import monitor as lr_monitor  # noqa: E402
from lr_finder import snapshot as lr_snapshot  # noqa: E402
from lr_finder.schedule import lr_at  # noqa: E402

try:
    import torch_lr_finder
except ImportError:  # pragma: no cover - the bench extra is not installed
    torch_lr_finder = None

MALLOC_FIXED = {"MALLOC_MMAP_THRESHOLD_": 32 << 20, "MALLOC_TRIM_THRESHOLD_": 4 << 30}
TLF_RULE = "its own rule: smoothed loss > 5 x best"
START_LR, END_LR = 1e-6, 1e-3  # a sweep that does not diverge: every run does all its steps
DIVERGE_END_LR = 10.0
VARIANTS = ("bare", "ours", "ours_disk", "tlf")
LABELS = {
    "bare": "bare training loop",
    "ours": "lr_finder, `memory_cache=True`",
    "ours_disk": "lr_finder, `memory_cache=False`",
    "tlf": "torch-lr-finder {}, `memory_cache=True`",
}


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


# -- the task -------------------------------------------------------------------------------------------
class _Batches(Dataset):
    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches[i]


@dataclass
class Task:
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    criterion: torch.nn.Module
    loader: DataLoader
    device: torch.device
    reference: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]

    @property
    def state_bytes(self) -> int:
        """One copy of model + optimizer state: parameters, buffers and the optimizer's state tensors."""
        total = sum(t.numel() * t.element_size() for t in self.model.state_dict().values())
        for st in self.optimizer.state.values():
            total += sum(v.numel() * v.element_size() for v in st.values() if isinstance(v, torch.Tensor))
        return total

    def reset(self) -> None:
        """Put the parameters and optimizer state back to the reference, in place (outside the timed runs)."""
        with torch.no_grad():
            for p, saved in self.reference:
                p.copy_(saved["param"])
                p.grad = None
                for key, live in self.optimizer.state[p].items():
                    if isinstance(live, torch.Tensor):
                        live.copy_(saved[key])
        self.model.train()


def make_task(device: torch.device, batch_size: int, hidden: int = 2048, n_batches: int = 10) -> Task:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(512, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, 10),
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=START_LR, foreach=True)
    criterion = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(1)
    batches = [
        (
            torch.randn(batch_size, 512, generator=g).to(device),
            torch.randint(0, 10, (batch_size,), generator=g).to(device),
        )
        for _ in range(n_batches)
    ]
    loader = DataLoader(_Batches(batches), batch_size=None)
    task = Task(model, optimizer, criterion, loader, device, [])
    bare_loop(task, 2, [START_LR, START_LR])  # Adam's state exists before every measured run
    task.reference = [
        (p, {"param": p.detach().clone(), **{k: v.detach().clone() for k, v in optimizer.state[p].items()}})
        for p in model.parameters()
    ]
    task.reset()
    return task


def schedule(n: int, end_lr: float = END_LR) -> list[float]:
    return [lr_at(i, START_LR, end_lr, n, "exp") for i in range(n)]


# -- the three ways to run the same steps ----------------------------------------------------------------
def bare_loop(task: Task, n: int, lrs: list[float], losses: list[torch.Tensor] | None = None) -> None:
    """The physical limit: the same steps and learning rates, nothing else (no loss read back)."""
    model, opt, crit = task.model, task.optimizer, task.criterion
    model.train()
    it = iter(task.loader)
    for i in range(n):
        for group in opt.param_groups:
            group["lr"] = lrs[i]
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(task.loader)
            x, y = next(it)
        opt.zero_grad(set_to_none=True)
        loss = crit(model(x), y)
        loss.backward()
        opt.step()
        if losses is not None:
            losses.append(loss.detach())


def run_ours(task: Task, n: int, memory_cache: bool, end_lr: float = END_LR, cache_dir: str | None = None) -> Any:
    finder = LRFinder(task.model, task.optimizer, task.criterion, memory_cache=memory_cache, cache_dir=cache_dir)
    return finder.range_test(task.loader, start_lr=START_LR, end_lr=end_lr, num_iter=n, use_amp=False)


def run_tlf(task: Task, n: int, end_lr: float = END_LR) -> Any:
    finder = torch_lr_finder.LRFinder(task.model, task.optimizer, task.criterion, device=task.device)
    finder.range_test(task.loader, start_lr=START_LR, end_lr=end_lr, num_iter=n)
    finder.reset()
    return finder.history


def run_variant(task: Task, name: str, n: int, cache_dir: str | None) -> int:
    """Run one variant; returns the number of steps it recorded (to check that none stopped early)."""
    if name == "bare":
        bare_loop(task, n, schedule(n))
        return n
    if name == "ours":
        return len(run_ours(task, n, True).lr)
    if name == "ours_disk":
        return len(run_ours(task, n, False, cache_dir=cache_dir).lr)
    if name == "tlf":
        return len(run_tlf(task, n)["lr"])
    raise ValueError(name)


def _clock(device: torch.device) -> float:
    """Process CPU time on CPU; wall time on CUDA (where the CPU mostly waits for the GPU)."""
    return time.perf_counter() if device.type == "cuda" else time.process_time()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _quiet() -> Any:
    """Progress bars (ours and torch-lr-finder's) and prints go to /dev/null, their cost still paid."""
    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null), contextlib.redirect_stdout(null):
        yield


# -- time --------------------------------------------------------------------------------------------------
def measure_time(
    task: Task, variants: list[str], n: int, rounds: int, rounds_others: int, cache_dir: str
) -> dict[str, Any]:
    """Paired rounds: the bare loop and ours in every round, the other variants in the first ones."""
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    wall: dict[str, list[float]] = {v: [] for v in variants}
    faults: dict[str, list[float]] = {v: [] for v in variants}
    pairs: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}  # (cpu, wall) / bare's
    for r in range(rounds + 1):  # round 0 warms up (caches, allocator, lazy imports) with a few steps
        these = [v for v in variants if v in ("bare", "ours") or r <= rounds_others]
        order = these if r % 2 else these[::-1]
        for name in order:
            task.reset()
            gc.collect()
            _sync(task.device)
            with _quiet():
                f0 = _minor_faults()
                c0, w0 = time.process_time(), time.perf_counter()
                steps = run_variant(task, name, n if r else 5, cache_dir)
                _sync(task.device)
                c1, w1 = time.process_time(), time.perf_counter()
                f1 = _minor_faults()
            if steps != (n if r else 5):
                raise RuntimeError(f"{name} stopped after {steps} of {n} steps: the timing sweep must not diverge")
            if r:
                cpu[name].append(c1 - c0)
                wall[name].append(w1 - w0)
                faults[name].append((f1 - f0) / n)
        if r:
            for v in these:
                pairs[v].append((cpu[v][-1] / cpu["bare"][-1], wall[v][-1] / wall["bare"][-1]))
            print(f"  round {r}/{rounds}: " + ", ".join(f"{v} {wall[v][-1]:.2f}s" for v in these), flush=True)
    task.reset()
    out = {}
    for name in variants:
        rc = [c for c, _ in pairs[name]]
        rw = [w for _, w in pairs[name]]
        out[name] = {
            "cpu_ratio": statistics.median(rc),
            "cpu_ratio_min": min(rc),
            "cpu_ratio_max": max(rc),
            "wall_ratio": statistics.median(rw),
            "wall_ratio_min": min(rw),
            "wall_ratio_max": max(rw),
            "cpu_s": statistics.median(cpu[name]),
            "wall_s": statistics.median(wall[name]),
            "cpu_min_s": min(cpu[name]),
            "faults_per_step": statistics.median(faults[name]),
            "cpu_min_ratio": min(cpu[name]) / min(cpu["bare"]),
            "wall_min_ratio": min(wall[name]) / min(wall["bare"]),
            "rounds": len(rc),
        }
    return out


# -- memory (each variant in a fresh subprocess) -------------------------------------------------------------
def _minor_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _vm_hwm() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS)

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def memory_child(args: argparse.Namespace) -> None:
    """One variant in this fresh process; prints one JSON line."""
    torch.set_num_threads(1)
    device = torch.device(args.device)
    with _quiet():  # code pages and lazy imports of this variant's first call (~0.8 MB once) are not state
        run_variant(make_task(device, 4, hidden=16, n_batches=2), args.child_memory, 3, args.cache_dir)
    gc.collect()
    task = make_task(device, args.batch_size)
    with _quiet():
        bare_loop(task, args.num_iter, schedule(args.num_iter))  # the training step's transients enter the baseline
    task.reset()
    gc.collect()
    _sync(device)
    restore_peak: list[int] = []
    if args.child_pass == "restore":  # a second process: the reset below spoils the run's own peak
        real_restore = lr_snapshot.Snapshot.restore

        def measured_restore(self: Any) -> None:  # our restore alone, from a peak reset just before it
            if not _reset_hwm():
                real_restore(self)
                return
            for t in self.tensors:  # restore frees the sweep's gradients first (a lower start, nothing hidden)
                t.grad = None
            gc.collect()
            _reset_hwm()
            before = _vm_hwm()
            real_restore(self)
            restore_peak.append(_vm_hwm() - before)

        lr_snapshot.Snapshot.restore = measured_restore  # type: ignore[method-assign]
    if device.type == "cuda":
        gpu_base = torch.cuda.max_memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    base = _vm_hwm()
    with _quiet():
        steps = run_variant(task, args.child_memory, args.num_iter, args.cache_dir)
    _sync(device)
    peak = max(_vm_hwm(), base) if args.child_pass == "peak" else None
    out = {
        "variant": args.child_memory,
        "steps": steps,
        "state_bytes": task.state_bytes,
        "rss_extra": (peak - base) if peak is not None else None,
        "restore_peak": restore_peak[-1] if restore_peak else None,
        "gpu_extra": (
            torch.cuda.max_memory_allocated(device) - gpu_base if device.type == "cuda" and peak is not None else None
        ),
    }
    print(json.dumps(out))


def measure_memory(args: argparse.Namespace, variants: list[str], n: int, jobs: int = 2) -> dict[str, Any]:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    todo = [(name, p) for name in variants for p in ("peak", "restore") if p == "peak" or name.startswith("ours")]
    running: list[tuple[str, subprocess.Popen[str]]] = []
    out: dict[str, dict[str, Any]] = {}

    def collect(name: str, proc: subprocess.Popen[str]) -> None:
        stdout, stderr = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"memory child {name} failed:\n{stderr[-3000:]}")
        data = json.loads(stdout.strip().splitlines()[-1])
        merged = out.setdefault(name, {})
        merged.update({k: v for k, v in data.items() if v is not None})

    for name, pass_ in todo:
        if len(running) >= jobs:
            collect(*running.pop(0))
        cmd = [
            sys.executable,
            __file__,
            "--child-memory",
            name,
            "--child-pass",
            pass_,
            "--device",
            args.device,
            "--num-iter",
            str(n),
            "--batch-size",
            str(args.batch_size),
            "--cache-dir",
            args.cache_dir,
        ]
        running.append(
            (
                name,
                subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env),
            )
        )
    for item in running:
        collect(*item)
    for name in variants:
        print(f"  memory {name}: {json.dumps(out.get(name))}", flush=True)
    return out


# -- early stop ------------------------------------------------------------------------------------------
class _StepCounter:
    def __init__(self, model: torch.nn.Module) -> None:
        self.n = 0
        self.handle = model.register_forward_hook(self)

    def __call__(self, *args: Any) -> None:
        self.n += 1


def first_crossing(losses: list[float], smooth_f: float = 0.05, diverge_th: float = 5.0) -> int | None:
    """The first step where our stop rule (lr_finder.monitor) says stop, from a full run's raw losses."""
    st = lr_monitor.init()
    for i, loss in enumerate(losses):
        st = lr_monitor.update(st, loss, smooth_f=smooth_f, diverge_th=diverge_th, adaptive_stop=True)
        if st.stop_reason is not None:
            return i
    return None


def measure_components(task: Task, n: int, reps: int = 5, tiny_steps: int = 300) -> dict[str, float]:
    """Our overhead from its parts, each the fastest of ``reps`` runs (noise from other processes only ever
    adds time, so the minimum is robust where a ratio of two noisy runs is not):

    - fixed: snapshot, restore and free on the benchmark model (``memory_cache=True``);
    - per step: a range test minus the bare loop on a tiny model, where a step is almost all overhead
      (the work our loop adds per step does not grow with the model: nothing in it walks the parameters).
    """
    fixed = []
    for _ in range(reps):
        task.reset()
        gc.collect()
        c0 = time.process_time()
        snap = lr_snapshot.capture(task.model, task.optimizer)
        snap.restore()
        snap.close()
        del snap
        fixed.append(time.process_time() - c0)
    task.reset()
    tiny = make_task(task.device, 4, hidden=16, n_batches=2)
    lrs = schedule(tiny_steps)
    bare_t, ours_t = [], []
    for _ in range(reps):
        for name in ("bare", "ours"):
            tiny.reset()
            gc.collect()
            with _quiet():
                c0 = time.process_time()
                if name == "bare":
                    bare_loop(tiny, tiny_steps, lrs)
                else:
                    run_ours(tiny, tiny_steps, True)
                (bare_t if name == "bare" else ours_t).append(time.process_time() - c0)
    return {
        "fixed_s": min(fixed),
        "per_step_s": max(0.0, (min(ours_t) - min(bare_t)) / tiny_steps),
        "tiny_bare_step_s": min(bare_t) / tiny_steps,
    }


def measure_early_stop(task: Task, n: int, cache_dir: str) -> dict[str, Any]:
    lrs = schedule(n, DIVERGE_END_LR)
    task.reset()
    losses: list[torch.Tensor] = []
    _sync(task.device)
    c0 = _clock(task.device)
    bare_loop(task, n, lrs, losses)
    _sync(task.device)
    bare_cpu = _clock(task.device) - c0
    raw = [float(v) for v in losses]
    crossing = first_crossing(raw)
    out: dict[str, Any] = {"num_iter": n, "crossing": crossing, "bare_cpu_s": bare_cpu}
    runs = [("ours", lambda: run_ours(task, n, True, end_lr=DIVERGE_END_LR))]
    if torch_lr_finder is not None:
        runs.append(("tlf", lambda: run_tlf(task, n, end_lr=DIVERGE_END_LR)))
    for name, run in runs:
        task.reset()
        counter = _StepCounter(task.model)
        _sync(task.device)
        c0 = _clock(task.device)
        with _quiet():
            result = run()
        _sync(task.device)
        cpu_s = _clock(task.device) - c0
        counter.handle.remove()
        steps = counter.n  # forward passes = optimizer steps run (no validation loader)
        entry: dict[str, Any] = {"steps_run": steps, "saved": n - steps, "cpu_s": cpu_s}
        if name == "ours":
            entry["stop_reason"] = result.stop_reason
            entry["late_by"] = None if crossing is None else steps - 1 - crossing
            rec = list(result.raw_loss)
            entry["losses_match_reference"] = rec == raw[: len(rec)]
        out[name] = entry
    task.reset()
    return out


# -- the report ---------------------------------------------------------------------------------------------
def _mb(b: float) -> str:
    return f"{b / 1e6:+.1f} MB"


def render(
    args: argparse.Namespace,
    timing: dict[str, Any],
    memory: dict[str, Any],
    early: dict[str, Any],
    info: dict[str, Any],
) -> tuple[str, dict[str, bool | None]]:
    cuda = args.device == "cuda"
    clock = "wall time" if cuda else "CPU time"
    tlf_label = LABELS["tlf"].format(info["tlf_version"])
    state_bytes = info["state_bytes"]
    lines = [
        f"## Range-test overhead on {info['device_name']}",
        "",
        f"{info['params'] / 1e6:.2f}M-parameter MLP + Adam (one copy of model+optimizer state = "
        f"{state_bytes / 1e6:.1f} MB), batch {args.batch_size}, {args.num_iter} steps, fp32, "
        f"{torch.get_num_threads()} thread(s); torch {torch.__version__}, "
        f"Python {platform.python_version()}; "
        f"glibc malloc {'fixed (32 MiB mmap threshold, no trim)' if args.malloc == 'fixed' else 'default'}; "
        f"{args.rounds} interleaved rounds of the bare loop and ours ({args.rounds_others} with the others), "
        f"median of paired ratios [min-max]; memory runs of "
        f"{min(args.num_iter, 30)} steps. "
        f"Generated by `{info['command']}`.",
        "",
        f"| run | {clock} / bare loop |" + f" {'CPU' if cuda else 'wall'} time / bare loop | page faults / step "
        "| peak host memory above baseline | copies of the state |"
        + (" peak GPU memory above baseline | copies on the GPU |" if cuda else "")
        + " restore peak |",
        "|---|---|---|---|---|---|" + ("---|---|" if cuda else "") + "---|",
    ]
    for name in VARIANTS:
        if name not in timing:
            continue
        t, m = timing[name], memory.get(name, {})
        main_key, other_key = ("wall", "cpu") if cuda else ("cpu", "wall")
        lo, hi = t[main_key + "_ratio_min"], t[main_key + "_ratio_max"]
        ratio = f"{t[main_key + '_ratio']:.3f} [{lo:.3f}-{hi:.3f}]"
        other = f"{t[other_key + '_ratio']:.3f}"
        rss = m.get("rss_extra")
        row = [
            tlf_label if name == "tlf" else LABELS[name],
            "1 (reference)" if name == "bare" else ratio,
            "1" if name == "bare" else other,
            f"{t['faults_per_step']:.0f}",
            "n/a" if rss is None else _mb(rss),
            "n/a" if rss is None else f"{rss / state_bytes:.3f}",
        ]
        if cuda:
            gpu = m.get("gpu_extra")
            row += ["n/a" if gpu is None else _mb(gpu), "n/a" if gpu is None else f"{gpu / state_bytes:.3f}"]
        rp = m.get("restore_peak")
        row.append("n/a" if rp is None else _mb(rp))
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"Median seconds per run ({clock}): "
        + ", ".join(f"{n} {timing[n][('wall' if cuda else 'cpu') + '_s']:.2f}" for n in VARIANTS if n in timing)
        + ".",
        "",
    ]
    comp = timing.get("components")
    estimate = None
    if comp:
        bare_min = timing["bare"]["cpu_min_s"]
        added = comp["fixed_s"] + args.num_iter * comp["per_step_s"]
        estimate = 1 + added / bare_min
        lines += [
            f"From its parts (each the fastest of 5 runs, CPU time): snapshot + restore + free "
            f"{comp['fixed_s'] * 1e3:.0f} ms, {comp['per_step_s'] * 1e6:.0f} us per step (a tiny model's "
            f"step costs {comp['tiny_bare_step_s'] * 1e6:.0f} us bare), so {args.num_iter} steps add "
            f"{added * 1e3:.0f} ms to a fastest bare run of {bare_min:.2f} s: ours / bare = {estimate:.4f}.",
            "",
        ]

    ours_t, ours_m, disk_m = timing.get("ours", {}), memory.get("ours", {}), memory.get("ours_disk", {})
    key = "wall_ratio" if cuda else "cpu_ratio"
    limit = 1.05 if cuda else 1.02
    checks: dict[str, bool | None] = {
        f"time: ours / bare <= {limit} ({clock}, memory_cache=True, median of paired ratios)": (
            ours_t[key] <= limit if ours_t else None
        ),
        "memory: ours, memory_cache=True <= 1 copy above baseline (+1 MiB allowance for Python's own "
        "small allocations, which vary by 0-0.25 MB from run to run)": (
            ours_m["rss_extra"] <= state_bytes + (1 << 20) if "rss_extra" in ours_m else None
        ),
        "memory: ours, memory_cache=False <= 0.1 copy above baseline": (
            disk_m["rss_extra"] <= 0.1 * state_bytes if "rss_extra" in disk_m else None
        ),
        "memory: disk restore adds <= 0.1 copy (restore peak)": (
            disk_m["restore_peak"] <= 0.1 * state_bytes if "restore_peak" in disk_m else None
        ),
    }
    if estimate is not None:
        checks[f"time from its parts: ours / bare <= {limit}"] = estimate <= limit
    if cuda:
        checks["GPU: no extra copy of the state on the GPU (< 0.05 copy)"] = (
            ours_m["gpu_extra"] < 0.05 * state_bytes if "gpu_extra" in ours_m else None
        )
    lines += ["### Early stop on a diverging sweep", ""]
    if early:
        n, c = early["num_iter"], early["crossing"]
        lines += [
            f"Sweep {START_LR:g} -> {DIVERGE_END_LR:g} over {n} steps; our stop rule's threshold is first "
            "crossed "
            f"at step {c} (0-based, from a reference bare run's losses).",
            "",
            f"| run | steps run | iterations saved | stopped after the crossing by | {clock}, s | stop reason |",
            "|---|---|---|---|---|---|",
            f"| bare training loop | {n} | 0 | - | {early['bare_cpu_s']:.2f} | - |",
        ]
        for name in ("ours", "tlf"):
            if name not in early:
                continue
            e = early[name]
            late = e.get("late_by")
            lines.append(
                f"| {tlf_label if name == 'tlf' else 'lr_finder'} | {e['steps_run']} | {e['saved']} | "
                f"{'-' if late is None else f'{late} step(s)'} | {e['cpu_s']:.2f} | "
                f"{e.get('stop_reason') or (TLF_RULE if name == 'tlf' else '-')} |"
            )
        lines.append("")
        late = early.get("ours", {}).get("late_by")
        checks["early stop: within 3 steps of the threshold crossing"] = None if late is None else 0 <= late <= 3
        if "ours" in early:
            lines.append(f"Our recorded losses equal the reference run's: {early['ours']['losses_match_reference']}.")
            lines.append("")
    lines += ["### Targets", ""]
    for name, ok in checks.items():
        lines.append(f"- {name}: {'met' if ok else 'not measured' if ok is None else 'NOT met'}")
    lines.append("")
    return "\n".join(lines), checks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true", help="30 steps, fewer rounds: one to two minutes on CPU")
    p.add_argument("--num-iter", type=int, default=None, help="steps per run (default 100; 30 with --quick)")
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="paired rounds of bare loop and ours (default 8; 4 with --quick)",
    )
    p.add_argument(
        "--rounds-others",
        type=int,
        default=None,
        help="of them, rounds that also run memory_cache=False and torch-lr-finder (default 4; 2 quick)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="default 32 on CPU, 8192 on CUDA")
    p.add_argument(
        "--out",
        default=None,
        help="markdown file for the table (default benchmarks/results/"
        "overhead.md on CPU, overhead_cuda.md on CUDA; '-' to write none)",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    p.add_argument("--no-tlf", action="store_true", help="skip torch-lr-finder")
    p.add_argument("--cache-dir", default=None, help="folder for memory_cache=False snapshots (default: temp)")
    p.add_argument(
        "--malloc",
        choices=["fixed", "default"],
        default="fixed",
        help="fixed (the default): the timing runs under glibc malloc with its mmap threshold at 32 MiB, no "
        "trimming, so large tensors come from a warm heap (as with jemalloc or tcmalloc) and the page faults "
        "of a training step do not depend on what ran before; default: glibc's adaptive settings",
    )
    p.add_argument("--child-memory", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-pass", default="peak", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.num_iter = args.num_iter or (30 if args.quick else 100)
    args.rounds = args.rounds or (4 if args.quick else 8)
    args.rounds_others = min(args.rounds, args.rounds_others or (2 if args.quick else 4))
    args.batch_size = args.batch_size or (8192 if args.device == "cuda" else 32)
    torch.set_num_threads(1)
    if args.child_memory:
        memory_child(args)
        return 0
    fixed = {k: str(v) for k, v in MALLOC_FIXED.items()}
    if args.malloc == "fixed" and any(os.environ.get(k) != v for k, v in fixed.items()):
        given = argv if argv is not None else sys.argv[1:]  # the same run, re-executed under that malloc
        return subprocess.run([sys.executable, __file__, *given], env={**os.environ, **fixed}).returncode
    if args.device == "cuda" and not torch.cuda.is_available():
        print("overhead.py: --device cuda but no CUDA device is available; nothing measured")
        return 0
    import tempfile

    tmp = tempfile.TemporaryDirectory(prefix="lr_finder_bench_")
    args.cache_dir = args.cache_dir or tmp.name
    variants = [v for v in VARIANTS if not (v == "tlf" and (args.no_tlf or torch_lr_finder is None))]
    device = torch.device(args.device)
    t0 = time.perf_counter()
    task = make_task(device, args.batch_size)
    info = {
        "params": sum(p.numel() for p in task.model.parameters()),
        "state_bytes": task.state_bytes,
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
        f"load average {os.getloadavg()[0]:.1f} at start)",
        "tlf_version": _version("torch-lr-finder") if torch_lr_finder else "-",
        "command": "python benchmarks/overhead.py"
        + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:])),
    }
    print(f"timing {variants} x {args.rounds} rounds of {args.num_iter} steps on {args.device} ...", flush=True)
    timing = measure_time(task, variants, args.num_iter, args.rounds, args.rounds_others, args.cache_dir)
    print("early stop ...", flush=True)
    early = measure_early_stop(task, args.num_iter, args.cache_dir)
    if device.type == "cpu":
        print("components ...", flush=True)
        timing["components"] = measure_components(task, args.num_iter)
    memory: dict[str, Any] = {}
    if not args.no_memory:
        print("memory (fresh subprocesses) ...", flush=True)
        memory = measure_memory(args, variants, min(args.num_iter, 30))
    text, checks = render(args, timing, memory, early, info)
    text += f"\nTotal benchmark time: {time.perf_counter() - t0:.0f} s.\n"
    print()
    print(text)
    out = args.out or str(
        ROOT / "benchmarks" / "results" / ("overhead_cuda.md" if args.device == "cuda" else "overhead.md")
    )
    if out != "-":
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
        print(f"written to {out}")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
