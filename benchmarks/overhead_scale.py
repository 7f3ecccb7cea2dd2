"""How the cost of a range test grows with the model: 1M to 400M parameters, in one process.

For each size, a 2-layer MLP (``Linear(h, h)``, ReLU, ``Linear(h, 10)``) with Adam, its gradients and Adam
moments present (so the state is 4 copies of the parameters), times with the public API:

* ``bare``: the training steps alone (the same steps and LRs, nothing else);
* ``memory`` / ``disk``: ``range_test`` with ``memory_cache=True`` / ``False``; what it adds beyond its steps
  is the snapshot's capture + restore + discard, each timed alone (the fastest of the repetitions, robust
  where it is not), and, as a cross-check, the whole test's time minus ``bare`` (noisy on a shared machine);
* ``floor``: cloning every state tensor into fresh memory and copying it back, the least any exact
  snapshot of this state can cost in RAM.

Each time is the fastest of ``--reps`` runs (noise from other processes only ever adds time). Peak memory
is the resident high-water mark (reset through ``/proc/self/clear_refs`` before each run) above that of the
bare steps, whose own temporaries (Adam's, the gradients) are not the range test's doing.
Prints a table, writes ``results/overhead_scale.md`` (and the numbers as ``.json``) after every size and,
with ``--plot``, ``docs/overhead_scale.png``; a size that needs more free RAM than there is stops the run.

    python benchmarks/overhead_scale.py                   # 1M..400M (needs ~14 GB free RAM at 400M)
    python benchmarks/overhead_scale.py --sizes 1e6,1e7   # a quick look
    python benchmarks/overhead_scale.py --plot --replot   # redraw table and plot from the saved numbers
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from lr_finder import LRFinder  # noqa: E402
from lr_finder import state as lr_state  # noqa: E402

HERE = Path(__file__).resolve().parent
SIZES = (1e6, 1e7, 5e7, 1e8, 2e8, 4e8)
STEPS = 3
#: Copies of the state (16 bytes a parameter: weights, grads, two Adam moments) a size needs in RAM at once:
#: the model's, the memory snapshot's or the floor's clone, and slack for the steps' temporaries.
NEEDED_COPIES = 2.2
BATCH = 8


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
    loader: DataLoader

    @property
    def params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def state_tensors(self) -> list[torch.Tensor]:
        out = []
        for p in self.model.parameters():
            out.append(p.data)
            if p.grad is not None:
                out.append(p.grad)
            out.extend(v for v in self.optimizer.state[p].values() if isinstance(v, torch.Tensor) and v.dim())
        return out

    @property
    def state_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.state_tensors())


def make_task(params: float, device: torch.device) -> Task:
    h = int(round((-11 + math.sqrt(121 + 4 * params)) / 2))  # h*h + h (first layer) + 10*h + 10 ~ params
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, 10)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-7, foreach=False)
    g = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(BATCH, h, generator=g).to(device), torch.randint(0, 10, (BATCH,), generator=g).to(device))
        for _ in range(2)
    ]
    task = Task(model, optimizer, DataLoader(_Batches(batches), batch_size=None))
    bare(task, 1)  # gradients and Adam moments exist before anything is measured
    return task


def bare(task: Task, n: int) -> None:
    crit = torch.nn.CrossEntropyLoss()
    it = iter(task.loader)
    for i in range(n):
        for group in task.optimizer.param_groups:
            group["lr"] = 1e-7 * 10 ** (i / max(1, n - 1))
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(task.loader)
            x, y = next(it)
        task.optimizer.zero_grad(set_to_none=False)  # keep the gradient tensors: they are part of the state
        crit(task.model(x), y).backward()
        task.optimizer.step()


def range_test(task: Task, memory_cache: bool, cache_dir: str) -> None:
    finder = LRFinder(task.model, task.optimizer, torch.nn.CrossEntropyLoss(), memory_cache=memory_cache,
                      cache_dir=None if memory_cache else cache_dir)
    h = finder.range_test(task.loader, start_lr=1e-7, end_lr=1e-6, num_iter=STEPS, use_amp=False,
                          show_progress=False)
    assert h.num_steps == STEPS, h.stop_reason


def floor(task: Task) -> None:
    """Copy every state tensor into fresh host memory (pinned, from a GPU) and back, then free it: the least
    an exact snapshot in RAM can cost (on a GPU, the device's copy bandwidth both ways)."""
    tensors = task.state_tensors()
    cuda = tensors[0].is_cuda
    saved = [torch.empty(t.shape, dtype=t.dtype, pin_memory=cuda).copy_(t, non_blocking=cuda) for t in tensors]
    _sync(cuda)
    with torch.no_grad():
        for t, s in zip(tensors, saved, strict=True):
            t.copy_(s, non_blocking=cuda)
    _sync(cuda)
    del saved


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def timed(fn: Callable[[], object], reps: int) -> tuple[float, int]:
    """Fastest wall time of ``reps`` calls, and the largest resident peak above the start of a call."""
    best, peak = math.inf, 0
    for _ in range(reps):
        gc.collect()
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        _sync(cuda)
        if cuda:  # on a GPU the memory that matters is the device's: no second copy of the state there
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            _reset_hwm()
            base = _rss()
        t0 = time.perf_counter()
        fn()
        _sync(cuda)
        best = min(best, time.perf_counter() - t0)
        peak = max(peak, (torch.cuda.max_memory_allocated() if cuda else _hwm()) - base)
    return best, peak


def parts(task: Task, memory_cache: bool, cache_dir: str, reps: int) -> dict[str, float]:
    """The snapshot alone: capture, restore and discard, each the fastest of ``reps``."""
    out = {"capture": math.inf, "restore": math.inf, "discard": math.inf}
    pinned = lr_state.PinnedPool()  # kept across repetitions, as a finder keeps it across its tests
    for _ in range(reps):
        gc.collect()
        cuda = task.state_tensors()[0].is_cuda
        _sync(cuda)
        t0 = time.perf_counter()
        snap = lr_state.capture(task.model, task.optimizer, memory_cache=memory_cache,
                                cache_dir=None if memory_cache else cache_dir, pinned=pinned)
        _sync(cuda)  # on CUDA the copy runs on a side stream: count it until it has landed
        t1 = time.perf_counter()
        snap.restore()
        t2 = time.perf_counter()
        snap.discard()
        del snap  # the memory goes back here (no reference cycles keep the buffer alive)
        t3 = time.perf_counter()
        for key, value in zip(out, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            out[key] = min(out[key], value)
    return out


def measure(params: float, reps: int, cache_dir: str, device: torch.device) -> dict[str, float]:
    task = make_task(params, device)
    row: dict[str, float] = {"params": task.params, "state_gb": task.state_bytes / 1e9}
    row["bare"], bare_peak = timed(lambda: bare(task, STEPS), reps)
    row["floor"], row["floor_peak"] = timed(lambda: floor(task), reps)
    for name, mem in (("memory", True), ("disk", False)):
        total, peak = timed(lambda mem=mem: range_test(task, mem, cache_dir), reps)
        row[name] = total
        row[f"{name}_extra"] = max(0.0, total - row["bare"])
        row[f"{name}_peak"] = max(0, peak - bare_peak)  # beyond the training step's own temporaries
        for key, value in parts(task, mem, cache_dir, reps).items():
            row[f"{name}_{key}"] = value
    return row  # the task is freed with this frame, before the next size is built


def snapshot(row: dict[str, float], mode: str) -> float:
    """What the snapshot costs a range test: capture + restore + free, each the fastest of its repetitions."""
    return row[f"{mode}_capture"] + row[f"{mode}_restore"] + row[f"{mode}_discard"]


def render(rows: list[dict[str, float]], threads: int, device: str = "cpu") -> str:
    gb = 1e9
    lines = [
        f"Range test cost by model size (2-layer MLP + Adam, grads and moments present; {STEPS} steps, batch "
        f"{BATCH}, {device}, {threads} CPU threads; fastest of the repetitions; memory peaks on a GPU are the "
        "device's).",
        "",
        "| parameters | state | bare steps | floor (copy out + back) | memory mode: snapshot (x floor) "
        "| capture / restore / free | range test - bare steps | peak above the bare steps | disk mode: snapshot "
        "(x floor) | capture / restore / free | range test - bare steps | peak above the bare steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['params'] / 1e6:.0f}M | {r['state_gb']:.2f} GB | {r['bare']:.2f} s | {r['floor']:.2f} s "
            f"({r['state_gb'] / r['floor']:.1f} GB/s) "
            f"| {snapshot(r, 'memory'):.2f} s ({snapshot(r, 'memory') / r['floor']:.2f}x) "
            f"| {r['memory_capture']:.2f} / {r['memory_restore']:.2f} / {r['memory_discard']:.2f} s "
            f"| {r['memory_extra']:.2f} s | {r['memory_peak'] / gb:.2f} GB "
            f"| {snapshot(r, 'disk'):.2f} s ({snapshot(r, 'disk') / r['floor']:.2f}x) "
            f"| {r['disk_capture']:.2f} / {r['disk_restore']:.2f} / {r['disk_discard']:.2f} s "
            f"| {r['disk_extra']:.2f} s | {r['disk_peak'] / 1e6:.0f} MB |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, float]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), dpi=100, layout="constrained")
    a, b = fig.subplots(1, 2)
    x = [r["params"] for r in rows]
    for name, color in (("memory", "#1f77b4"), ("disk", "#d62728")):
        a.plot(x, [snapshot(r, name) / r["floor"] for r in rows], "o-", color=color, label=f"{name} mode")
        peaks = [r[f"{name}_peak"] / 1e9 for r in rows]
        most = f"at most {max(peaks) * 1e3:,.0f} MB" if max(peaks) >= 1e-3 else "under 1 MB"
        b.plot(x, peaks, "o-", color=color, label=f"{name} mode ({most})")
    b.plot(x, [r["state_gb"] for r in rows], "k--", linewidth=1, label="one copy of the state")
    a.axhline(1.0, color="0.3", linewidth=1, linestyle=":", label="floor: clone + copy back")
    a.set(xscale="log", xlabel="parameters", ylabel="snapshot time / floor", title="capture + restore + free",
          ylim=(0, None))
    b.set(xscale="log", xlabel="parameters", ylabel="GB", title="peak memory above the bare steps", ylim=(0, None))
    for ax in (a, b):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(f"{s:g}" for s in SIZES), help="parameter counts")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", action="store_true", help="write docs/overhead_scale.png")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", default=str(HERE / "results" / "overhead_scale.md"))
    parser.add_argument("--replot", action="store_true", help="redraw the table and plot from --out's .json")
    args = parser.parse_args(argv)
    if args.replot:
        write(json.loads(Path(args.out).with_suffix(".json").read_text()), args)
        return 0
    torch.set_num_threads(args.threads)
    logging.getLogger("lr_finder").setLevel(logging.WARNING)
    rows: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="lr_finder_scale_") as cache_dir:
        for size in (float(s) for s in args.sizes.split(",")):
            need, free = size * 16 * NEEDED_COPIES, _available()
            if args.device == "cpu" and free is not None and free < need:
                print(f"stopped before {size:g} parameters: about {need / 1e9:.1f} GB of free RAM needed, "
                      f"{free / 1e9:.1f} GB available", flush=True)
                break
            rows.append(measure(size, args.reps, cache_dir, torch.device(args.device)))
            print(render(rows[-1:], args.threads, args.device).splitlines()[-1], flush=True)
            write(rows, args)  # after every size: a run stopped by a larger one keeps what it measured
    print("\n" + render(rows, args.threads, args.device))
    return 0


def write(rows: list[dict[str, float]], args: argparse.Namespace) -> None:
    Path(args.out).write_text(render(rows, args.threads, args.device))
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    if args.plot:
        plot(rows, HERE.parent / "docs" / "overhead_scale.png")


def _available() -> int | None:
    """``MemAvailable`` in bytes (Linux), else ``None``."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


if __name__ == "__main__":
    sys.exit(main())
