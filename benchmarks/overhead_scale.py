"""What a whole ``range_test`` call costs beyond its training steps as the model grows, through the public API.

    python benchmarks/overhead_scale.py                         # 100M parameters, 5 repetitions
    python benchmarks/overhead_scale.py --sizes 1e6,1e7 --reps 3  # a quick look
    python benchmarks/overhead_scale.py --sizes 1e6,1e7,1e8 --plot  # also docs/overhead_scale.png
    python benchmarks/overhead_scale.py --replot                # table (and --plot) again from the .json
    python benchmarks/overhead_scale.py --device cuda --out benchmarks/results/overhead_scale_cuda.md

Per size, a 2-layer MLP (``Linear(h, h)``, ReLU, ``Linear(h, 10)``, fp32, ``--device``) with Adam (``foreach=False``);
one real training step before anything is timed, so the gradients and both Adam moments exist and the
state is 16 bytes a parameter. Each of ``--reps`` repetitions times every case once, in the order
``bare, memory (+ second finder), disk, floor``, reversed in every other repetition, and every case
starts from the same state:

* ``bare``: the same 2 training steps as the sweep (same batches, same LRs, ``zero_grad()`` like the
  finder), nothing else; the state is cloned before and copied back after, untimed;
* ``memory`` / ``disk``: a fresh ``LRFinder(..., memory_cache=True / False)``, ``range_test(num_iter=2,
  show_progress=False)`` and ``close()``: the whole call a user pays (snapshot, sweep, restore, free);
* ``memory, second finder``: another fresh memory-mode finder's whole call right after the first (the
  case of ``verify()`` or a notebook: a second snapshot in the same process);
* ``floor``: clone every state tensor (weights, gradients, Adam ``exp_avg``/``exp_avg_sq``/``step``) into
  fresh host memory (pinned, from a GPU), copy it back, drop the clones: the least an exact snapshot in
  RAM can cost. On a GPU every case ends with a synchronisation and memory peaks are the device's.

Columns: ``time`` is the case's wall time, median and (min-max) over the repetitions; ``case - bare`` the
same for the case's time minus that of the bare steps of the same repetition, and ``(case - bare) / floor``
that over the floor of the same repetition: 1.0 means the call costs beyond its steps what cloning the
state does (at small sizes fixed costs dominate it); ``peak memory above bare`` is the median over the
repetitions of the resident high-water mark during the case above its start (reset through Linux
``/proc/self/clear_refs``) minus the same for the bare steps of that repetition (so the steps' own
temporaries do not count); ``minor faults`` is the median of the process's minor page faults during the
case (``getrusage``): fresh pages touched.
Before the sizes, one memory-mode and one disk-mode call on a tiny model load what a first call loads
(imports, lazy initialisation), which no size should pay. The machine may be shared: read the paired
ratios more than the seconds, and the load average printed with each size.
Writes ``results/overhead_scale.md`` and the raw per-repetition numbers as ``.json`` after every size.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from lr_finder import LRFinder, lr_schedule  # noqa: E402

HERE = Path(__file__).resolve().parent
START_LR, END_LR, STEPS, BATCH = 1e-7, 1e-6, 2, 8
CASES = ("bare", "memory", "memory, second finder", "disk", "floor")
ORDER = (("bare",), ("memory", "memory, second finder"), ("disk",), ("floor",))  # a second finder follows the first


class Task:
    def __init__(self, params: float, device: str = "cpu") -> None:
        h = int(round((-11 + math.sqrt(121 + 4 * params)) / 2))  # h*h + h + 10*h + 10 ~ params
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(torch.nn.Linear(h, h), torch.nn.ReLU(), torch.nn.Linear(h, 10)).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=START_LR, foreach=False)
        g = torch.Generator().manual_seed(1)
        batches = [(torch.randn(BATCH, h, generator=g).to(device),
                    torch.randint(0, 10, (BATCH,), generator=g).to(device)) for _ in range(STEPS)]
        self.loader = DataLoader(batches, batch_size=None)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.bare()  # gradients and Adam moments exist before anything is timed

    def tensors(self) -> list[torch.Tensor]:
        """Every state tensor, in a fixed order: each parameter, its gradient, its Adam state."""
        out = []
        for p in self.model.parameters():
            out += [p.detach()] + ([p.grad] if p.grad is not None else [])
            out += [v for v in self.optimizer.state[p].values() if isinstance(v, torch.Tensor)]
        return out

    def bare(self) -> None:
        crit = torch.nn.CrossEntropyLoss()
        for (x, y), lr in zip(self.loader, lr_schedule(START_LR, END_LR, STEPS), strict=True):
            for group in self.optimizer.param_groups:
                group["lr"] = float(lr)
            self.optimizer.zero_grad()
            crit(self.model(x), y).backward()
            self.optimizer.step()

    def clone(self) -> list[torch.Tensor]:
        """Copies in fresh host memory (pinned, from a GPU: never a second copy on the device)."""
        cuda = self.tensors()[0].is_cuda
        out = [torch.empty(t.shape, dtype=t.dtype, pin_memory=cuda).copy_(t, non_blocking=cuda) for t in self.tensors()]
        _sync()
        return out

    def put_back(self, saved: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for t, s in zip(self.tensors(), saved, strict=True):
                t.copy_(s, non_blocking=True)
        _sync()

    def floor(self) -> None:
        self.put_back(self.clone())  # the clones are dropped when this returns

    def finder(self, memory_cache: bool, cache_dir: str) -> None:
        finder = LRFinder(self.model, self.optimizer, torch.nn.CrossEntropyLoss(), memory_cache=memory_cache,
                          cache_dir=cache_dir)
        history = finder.range_test(self.loader, START_LR, END_LR, num_iter=STEPS, use_amp=False,
                                    show_progress=False)
        finder.close()
        assert history.num_steps == STEPS, history.stop_reason


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _hwm_and_rss() -> tuple[int, int]:
    with open("/proc/self/status") as fh:
        fields = dict(line.split(":", 1) for line in fh)
    return int(fields["VmHWM"].split()[0]) * 1024, int(fields["VmRSS"].split()[0]) * 1024


def timed(fn: Callable[[], object]) -> dict[str, float]:
    """Wall seconds, resident peak above the start (on a GPU: the device's), and minor page faults of one call
    of ``fn``."""
    gc.collect()
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    _sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")  # the high-water mark starts again from the current resident size
    mem0 = torch.cuda.memory_allocated() if cuda else _hwm_and_rss()[1]
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    fn()
    _sync()
    seconds = time.perf_counter() - t0
    return {"s": seconds, "peak": (torch.cuda.max_memory_allocated() if cuda else _hwm_and_rss()[0]) - mem0,
            "minflt": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0}


def measure(params: float, reps: int, cache_dir: str, device: str) -> dict:
    task = Task(params, device)
    state_bytes = sum(t.numel() * t.element_size() for t in task.tensors())
    load = os.getloadavg()[0]

    def bare() -> dict[str, float]:
        saved = task.clone()
        out = timed(task.bare)
        task.put_back(saved)
        return out

    run: dict[str, Callable[[], dict[str, float]]] = {
        "bare": bare,
        "memory": lambda: timed(lambda: task.finder(True, cache_dir)),
        "memory, second finder": lambda: timed(lambda: task.finder(True, cache_dir)),
        "disk": lambda: timed(lambda: task.finder(False, cache_dir)),
        "floor": lambda: timed(task.floor),
    }
    rows = []
    for rep in range(reps):
        row = {}
        for unit in ORDER if rep % 2 == 0 else ORDER[::-1]:
            for case in unit:
                row[case] = run[case]()
        rows.append(row)
        print(f"  {params:g} rep {rep + 1}/{reps}: " + ", ".join(f"{c} {row[c]['s']:.2f} s" for c in CASES),
              flush=True)
    return {"params": task.params, "state_bytes": state_bytes, "threads": torch.get_num_threads(), "device": device,
            "load": [load, os.getloadavg()[0]], "reps": rows}


def _med(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def render(sizes: list[dict]) -> str:
    lines = [
        f"Whole `range_test` call ({STEPS} steps) beyond the bare steps, 2-layer MLP + Adam; median "
        "(min-max) over paired repetitions; see the docstring of `benchmarks/overhead_scale.py`.",
        "",
        "| parameters | state | case | time, s | case - bare, s | (case - bare) / floor | peak memory above bare "
        "| minor faults |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in sizes:
        reps = size["reps"]
        head = f"| {size['params'] / 1e6:.0f}M | {size['state_bytes'] / 1e9:.2f} GB"
        for case in CASES:
            times = [r[case]["s"] for r in reps]
            extra = [r[case]["s"] - r["bare"]["s"] for r in reps]
            ratio = [e / r["floor"]["s"] for e, r in zip(extra, reps, strict=True)]
            extra_s, ratio_s = ("", "") if case in ("bare", "floor") else (_med(extra), _med(ratio))
            peak = statistics.median(r[case]["peak"] - r["bare"]["peak"] for r in reps) / 1e9
            faults = statistics.median(r[case]["minflt"] for r in reps)
            lines.append(f"{head} | {case} | {_med(times)} | {extra_s} | {ratio_s} | {peak:.2f} GB | {faults:,.0f} |")
            head = "| |"
    lines.append("")
    lines += [f"- {s['params'] / 1e6:.0f}M: {len(s['reps'])} repetitions, {s.get('device', 'cpu')}, {s['threads']} "
              "threads, floor "
              f"{s['state_bytes'] / statistics.median(r['floor']['s'] for r in s['reps']) / 1e9:.1f} GB/s, "
              f"load average {s['load'][0]:.1f} before and {s['load'][1]:.1f} after" for s in sizes]
    return "\n".join(lines) + "\n"


def plot(sizes: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.6), dpi=100, layout="constrained")
    ax = fig.subplots()
    x = [s["params"] for s in sizes]
    for case in ("memory", "memory, second finder", "disk"):
        ratios = [[(r[case]["s"] - r["bare"]["s"]) / r["floor"]["s"] for r in s["reps"]] for s in sizes]
        mid = [statistics.median(v) for v in ratios]
        err = [[m - min(v) for m, v in zip(mid, ratios, strict=True)],
               [max(v) - m for m, v in zip(mid, ratios, strict=True)]]
        ax.errorbar(x, mid, yerr=err, fmt="o-", capsize=3, label=case)
    ax.axhline(1.0, color="0.3", linewidth=1, linestyle=":", label="floor: clone + copy back")
    ax.set(xscale="log", xlabel="parameters", ylabel="(range test - bare steps) / floor",
           title="whole call beyond its steps (median, min-max)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1e8", help="parameter counts, comma-separated")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", default=str(HERE / "results" / "overhead_scale.md"))
    parser.add_argument("--plot", action="store_true", help="also write docs/overhead_scale.png")
    parser.add_argument("--replot", action="store_true", help="table (and plot) from --out's .json, no run")
    args = parser.parse_args(argv)
    out = Path(args.out)
    sizes: list[dict] = json.loads(out.with_suffix(".json").read_text()) if args.replot else []
    torch.set_num_threads(args.threads)
    logging.getLogger("lr_finder").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="lr_finder_scale_") as cache_dir:
        if not args.replot:
            warm = Task(1e4, args.device)
            warm.finder(True, cache_dir)
            warm.finder(False, cache_dir)
        for params in [] if args.replot else [float(s) for s in args.sizes.split(",")]:
            t0 = time.perf_counter()
            sizes.append(measure(params, args.reps, cache_dir, args.device))
            print(f"  {params:g}: {time.perf_counter() - t0:.0f} s", flush=True)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.with_suffix(".json").write_text(json.dumps(sizes, indent=1) + "\n")
            out.write_text(render(sizes))
    out.write_text(render(sizes))  # again for --replot
    print("\n" + render(sizes))
    if args.plot:
        plot(sizes, HERE.parent / "docs" / "overhead_scale.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
