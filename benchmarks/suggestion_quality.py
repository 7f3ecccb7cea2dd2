"""What is a suggested learning rate worth? Regret of every suggestion rule, ours and the peers'.

For each task of :mod:`quality_tasks` (CPU, data shipped offline):

* ground truth: the task is trained for its fixed budget at every LR of a log grid (4 per decade, 1e-5..10)
  on each seed, with the specification's protocol (the LR is ``max_lr`` of ``OneCycleLR``) or at a
  constant LR for the ``*_const`` tasks; the held-out validation loss at the end is ``L``. ``L*`` is the
  best grid point of the seed-mean loss, ``L0`` the seed-mean untrained loss. Cached in
  ``results/ground_truth.json`` (``--refresh`` recomputes);
* every rule gets the same sweep (start 1e-7, end 10, 100 iterations), one per seed; the suggestion
  ``eta_s`` of seed ``s`` is then trained on seed ``s`` (the whole user pipeline, replicated per seed),
  and scored by the normalized regret ``r_s = clip((L_s(eta_s) - L*) / (L0 - L*), 0, 1)``; the task's
  regret is the mean over seeds (1 for a seed with no suggestion); also ``|log10(eta / eta*)|``.
  Trainings at suggested LRs are cached in ``results/eval_cache.json``;
* peers: the real ``torch-lr-finder`` (``plot(suggest_lr=True)``), the real Lightning
  ``Tuner(trainer).lr_find(...).suggestion()``, and fastai's rules (written from their description, run
  on a fastai-like sweep: EMA beta 0.98, stop at 4x the best loss, first tenth and last five points
  dropped);
* ours: every method of ``lr_finder.suggestion.METHODS`` through ``LRFinder.range_test`` and the shipped
  ``lr_finder.analyze`` on the raw loss (``history["raw_loss"]``, what the package reads; ``lr_finder
  <method>``), and on the EMA loss for comparison (``... (EMA input)``), plus the candidate rules of
  :mod:`candidates`, which run through the package's own pipeline.

Prints the task x method table, the per-method summary (mean / median / worst regret, tasks with
``r <= 0.05``), EMA-vs-raw input, leave-one-task-out selection among the candidates, and the stability
of the proposed default (spread in decades over 3 seeds and over ``num_iter`` in {50, 100, 200}); writes
the same as markdown to ``results/suggestion_quality.md``.

Run: ``python benchmarks/suggestion_quality.py`` (``--quick`` for a smoke run, ``--refresh`` to recompute
the caches).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # torch-lr-finder's progress bar
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import candidates as cand  # noqa: E402
import quality_tasks as qt  # noqa: E402

from lr_finder import LRFinder, analyze  # noqa: E402
from lr_finder.suggestion import DEFAULT_METHOD, METHODS  # noqa: E402

RESULTS = HERE / "results"
START_LR, END_LR, NUM_ITER = 1e-7, 10.0, 100
GOOD = 0.05  # a suggestion within this regret counts as good
SWEEP_SEEDS = (0, 1, 2)
NUM_ITERS = (50, 100, 200)
QUICK_TASKS = ("digits_mlp_sgdm", "diabetes_mlp_sgd", "breast_cancer_mlp_adamw")

log = logging.getLogger("suggestion_quality")


def key(lr: float) -> str:
    return f"{lr:.6e}"


# ------------------------------------------------------------------------------------------------
# caches: one JSON per kind, per task keyed on the task's fingerprint; entries "seed|lr" -> val loss
# ------------------------------------------------------------------------------------------------


class TrainCache:
    """Validation losses of finished trainings, persisted as JSON (``inf`` stored as ``null``)."""

    def __init__(self, path: Path, refresh: bool = False) -> None:
        self.path = path
        self.data: dict[str, Any] = {}
        if path.exists() and not refresh:
            self.data = json.loads(path.read_text())
        self.dirty = False

    def _slot(self, task: qt.QualityTask) -> dict[str, Any]:
        slot = self.data.get(task.name)
        if slot is None or slot.get("fingerprint") != task.fingerprint():
            slot = {"fingerprint": task.fingerprint(), "summary": task.summary, "runs": {}}
            self.data[task.name] = slot
        return slot

    def get(self, task: qt.QualityTask, seed: int, lr: float | None) -> float | None:
        v = self._slot(task)["runs"].get(f"{seed}|{'init' if lr is None else key(lr)}", "missing")
        if v == "missing":
            return None
        return math.inf if v is None else float(v)

    def put(self, task: qt.QualityTask, seed: int, lr: float | None, value: float) -> None:
        self._slot(task)["runs"][f"{seed}|{'init' if lr is None else key(lr)}"] = (
            None if not math.isfinite(value) else round(value, 6)
        )
        self.dirty = True

    def loss(self, task: qt.QualityTask, seed: int, lr: float | None) -> float:
        """The validation loss after training at ``lr`` (``None``: untrained), computed once."""
        v = self.get(task, seed, lr)
        if v is None:
            lr_used = None if lr is None else float(key(lr))
            v = qt.untrained_loss(task, seed) if lr_used is None else qt.train(task, seed, lr_used)
            self.put(task, seed, lr, v)
            v = self.get(task, seed, lr)  # the stored (rounded) value, so cold and warm runs agree
            assert v is not None
        return v

    def save(self) -> None:
        stale = [name for name in self.data if name not in qt.TASKS]  # tasks removed from the zoo
        for name in stale:
            del self.data[name]
        if self.dirty or stale:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True))
            tmp.replace(self.path)
            self.dirty = False


@dataclass
class Truth:
    """Ground truth of one task: seed-mean loss on the grid, the best LR and loss, the untrained loss."""

    grid: list[float]
    mean_loss: list[float]
    l_star: float
    eta_star: float
    l0: float
    per_seed_l0: dict[int, float]

    def regret(self, loss: float) -> float:
        if not math.isfinite(loss):
            return 1.0
        return float(np.clip((loss - self.l_star) / (self.l0 - self.l_star), 0.0, 1.0))

    def good_band(self, threshold: float = GOOD) -> tuple[float, float] | None:
        """The contiguous run of grid LRs around ``eta*`` with seed-mean regret <= ``threshold``."""
        r = [self.regret(v) for v in self.mean_loss]
        i = self.grid.index(self.eta_star)
        if r[i] > threshold:
            return None
        lo = hi = i
        while lo > 0 and r[lo - 1] <= threshold:
            lo -= 1
        while hi < len(r) - 1 and r[hi + 1] <= threshold:
            hi += 1
        return self.grid[lo], self.grid[hi]


def ground_truth(task: qt.QualityTask, seeds: Sequence[int], cache: TrainCache, grid: list[float]) -> Truth:
    t0 = time.perf_counter()
    fresh = sum(cache.get(task, s, lr) is None for s in seeds for lr in [None, *grid])
    per_seed = {s: [cache.loss(task, s, lr) for lr in grid] for s in seeds}
    l0s = {s: cache.loss(task, s, None) for s in seeds}
    cache.save()
    mean = [float(np.mean([per_seed[s][i] for s in seeds])) for i in range(len(grid))]
    best = int(np.argmin(mean))
    if fresh:
        log.info("  ground truth %s: %d trainings in %.1fs", task.name, fresh, time.perf_counter() - t0)
    if best in (0, len(grid) - 1):
        log.warning("  %s: the best grid LR %.1e is at the edge of the grid", task.name, grid[best])
    return Truth(grid, mean, mean[best], grid[best], float(np.mean(list(l0s.values()))), l0s)


# ------------------------------------------------------------------------------------------------
# sweeps: ours, a fastai-like one, torch-lr-finder's and Lightning's; all start 1e-7, end 10
# ------------------------------------------------------------------------------------------------


@dataclass
class Sweeps:
    """Suggestions of every method for one (task, seed)."""

    lrs: dict[str, float | None] = field(default_factory=dict)
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)


def our_sweep(task: qt.QualityTask, seed: int, num_iter: int, **kw: Any) -> Any:
    model, opt = qt.build(task, seed)
    finder = LRFinder(model, opt, task.criterion(), device="cpu")
    return finder.range_test(
        qt.train_loader(task, seed),
        start_lr=START_LR,
        end_lr=END_LR,
        num_iter=num_iter,
        show_progress=False,
        **kw,
    )


def our_methods(h: Any) -> dict[str, float | None]:
    """The package's methods as shipped (on the raw loss, as ``get_suggested_lr`` reads it; and on the
    EMA loss for comparison), and the candidates."""
    out: dict[str, float | None] = {}
    for m in METHODS:
        out[f"lr_finder {m}"] = analyze(h.lr, h.raw_loss, m).lr
        out[f"lr_finder {m} (EMA input)"] = analyze(h.lr, h.loss, m).lr
    for name, rule in cand.CANDIDATES.items():
        out[name] = rule(h.lr, h.loss, h.raw_loss)
    return out


def fastai_methods(task: qt.QualityTask, seed: int) -> dict[str, float | None]:
    h = our_sweep(task, seed, NUM_ITER, smooth_f=0.02, diverge_th=4.0, adaptive_stop=False)
    x, y = cand.fastai_trim(h.lr, h.loss, NUM_ITER)
    return {name: rule(x, y) for name, rule in cand.FASTAI.items()}


def torch_lr_finder_suggestion(task: qt.QualityTask, seed: int) -> float | None:
    import matplotlib.pyplot as plt
    from torch_lr_finder import LRFinder as TLF

    model, opt = qt.build(task, seed)
    finder = TLF(model, opt, task.criterion(), device="cpu")
    fig, ax = plt.subplots()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            finder.range_test(qt.train_loader(task, seed), start_lr=START_LR, end_lr=END_LR, num_iter=NUM_ITER)
            _, lr = finder.plot(ax=ax, suggest_lr=True)
    except RuntimeError as exc:  # too few points to suggest
        log.info("  torch-lr-finder on %s seed %d: %s", task.name, seed, exc)
        return None
    finally:
        plt.close(fig)
        finder.reset()
    return float(lr) if lr is not None and math.isfinite(lr) else None


def lightning_suggestion(task: qt.QualityTask, seed: int) -> float | None:
    import lightning.pytorch as pl
    from lightning.pytorch.tuner import Tuner

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # Lightning sets its levels on import
        logging.getLogger(name).setLevel(logging.ERROR)

    class Wrapped(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model, _ = qt.build(task, seed)
            self.crit = task.criterion()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            return self.crit(self.model(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return task.optimizer(self.model, 1e-3)

    module = Wrapped()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=tmp,
        )  # fmt: skip
        result = Tuner(trainer).lr_find(
            module, train_dataloaders=qt.train_loader(task, seed), min_lr=START_LR, max_lr=END_LR,
            num_training=NUM_ITER, update_attr=False,
        )  # fmt: skip
    lr = None if result is None else result.suggestion()
    return float(lr) if lr is not None and math.isfinite(lr) else None


PEERS: dict[str, Callable[[qt.QualityTask, int], float | None]] = {
    "torch-lr-finder": torch_lr_finder_suggestion,
    "lightning": lightning_suggestion,
}


def all_suggestions(task: qt.QualityTask, seed: int, peers: bool) -> dict[str, float | None]:
    out = our_methods(our_sweep(task, seed, NUM_ITER))
    out.update(fastai_methods(task, seed))
    if peers:
        for name, fn in PEERS.items():
            out[name] = fn(task, seed)
    return out


# ------------------------------------------------------------------------------------------------
# scoring
# ------------------------------------------------------------------------------------------------


@dataclass
class Score:
    regret: float  # mean over seeds
    lrs: list[float | None]
    dlog: float  # mean |log10(eta / eta*)| over seeds with a suggestion (nan when none)
    nones: int

    @property
    def lr(self) -> float | None:
        """Geometric mean of the seeds' suggestions."""
        good = [x for x in self.lrs if x]
        return float(10 ** np.mean(np.log10(good))) if good else None


def score(task: qt.QualityTask, truth: Truth, per_seed: dict[int, float | None], cache: TrainCache) -> Score:
    rs, dl, nones = [], [], 0
    for s, eta in per_seed.items():
        if eta is None or not (eta > 0 and math.isfinite(eta)):
            rs.append(1.0)
            nones += 1
            continue
        rs.append(truth.regret(cache.loss(task, s, eta)))
        dl.append(abs(math.log10(eta / truth.eta_star)))
    return Score(float(np.mean(rs)), list(per_seed.values()), float(np.mean(dl)) if dl else math.nan, nones)


def summarize(scores: dict[str, Score]) -> dict[str, float]:
    r = [s.regret for s in scores.values()]
    d = [s.dlog for s in scores.values() if math.isfinite(s.dlog)]
    return {
        "mean": float(np.mean(r)),
        "median": float(np.median(r)),
        "worst": float(np.max(r)),
        "good": sum(x <= GOOD for x in r),
        "n": len(r),
        "dlog": float(np.mean(d)) if d else math.nan,
        "nones": sum(s.nones for s in scores.values()),
    }


def leave_one_task_out(
    table: dict[str, dict[str, Score]], pool: Iterable[str]
) -> tuple[dict[str, float], dict[str, str]]:
    """For each task, pick the rule of ``pool`` with the best mean regret on the other tasks (ties: worst);
    score that rule on the held-out task. Returns the summary of those held-out regrets and the picks."""
    pool = list(pool)
    tasks = list(next(iter(table.values())).keys())
    held: dict[str, Score] = {}
    picks: dict[str, str] = {}
    for t in tasks:

        def fit(m: str, t: str = t) -> tuple[float, float]:
            rs = [table[m][u].regret for u in tasks if u != t]
            return float(np.mean(rs)), float(np.max(rs))

        best = min(pool, key=fit)
        picks[t] = best
        held[t] = table[best][t]
    return summarize(held), picks


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------


def fmt_lr(lr: float | None) -> str:
    return "none" if lr is None else f"{lr:.1e}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def spread(lrs: Iterable[float | None]) -> float:
    """Max minus min of log10 LR (inf when any suggestion is missing)."""
    vals = list(lrs)
    if any(v is None for v in vals):
        return math.inf
    logs = [math.log10(v) for v in vals if v is not None]
    return max(logs) - min(logs)


def stability_methods(default: str) -> list[str]:
    """Rules whose regret is also measured at num_iter 50 and 200."""
    return list(
        dict.fromkeys([default, "raw:min/5", f"lr_finder {DEFAULT_METHOD} (EMA input)", "lr_finder steepest"])
    )


MAIN_COLUMNS = (
    "torch-lr-finder",
    "lightning",
    "fastai valley",
    "fastai minimum/10",
    "fastai steep",
    "fastai slide",
    "lr_finder steepest",
    "lr_finder valley",
    "lr_finder minimum",
)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 tasks, 2 seeds, no num_iter stability: a smoke run")
    p.add_argument("--refresh", action="store_true", help="recompute the ground truth and the evaluation cache")
    p.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    p.add_argument("--no-peers", action="store_true", help="skip torch-lr-finder and Lightning")
    p.add_argument("--results", default=str(RESULTS), help="folder of the caches and the markdown table")
    p.add_argument("--default", default=cand.PROPOSED_DEFAULT, help="the rule whose stability is reported")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 3, 2 with --quick)")
    p.add_argument("--grid", default="1e-5,10,4", help="ground-truth grid: LO,HI,POINTS_PER_DECADE")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("lr_finder").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")

    names = args.tasks.split(",") if args.tasks else list(QUICK_TASKS if args.quick else qt.TASKS)
    tasks = [qt.TASKS[n] for n in names]
    seeds = tuple(range(args.seeds)) if args.seeds else SWEEP_SEEDS[:2] if args.quick else SWEEP_SEEDS
    num_iters = (NUM_ITER,) if args.quick else NUM_ITERS
    results = Path(args.results)
    gt_cache = TrainCache(results / "ground_truth.json", args.refresh)
    ev_cache = TrainCache(results / "eval_cache.json", args.refresh)
    lo, hi, per_decade = args.grid.split(",")
    grid = qt.lr_grid(float(lo), float(hi), int(per_decade))
    t_start = time.perf_counter()

    truths: dict[str, Truth] = {}
    for task in tasks:
        truths[task.name] = ground_truth(task, seeds, gt_cache, grid)
    t_truth = time.perf_counter() - t_start

    # suggestions[task][method][seed]; stability[task][seed][num_iter][method] for our rules
    suggestions: dict[str, dict[str, dict[int, float | None]]] = {}
    stability: dict[str, dict[int, dict[int, dict[str, float | None]]]] = {}
    t_sweep = 0.0
    for task in tasks:
        t0 = time.perf_counter()
        per: dict[str, dict[int, float | None]] = {}
        stability[task.name] = {}
        for s in seeds:
            found = all_suggestions(task, s, not args.no_peers)
            for m, lr in found.items():
                per.setdefault(m, {})[s] = lr
            stability[task.name][s] = {NUM_ITER: found}
            for n in num_iters:
                if n != NUM_ITER:
                    stability[task.name][s][n] = our_methods(our_sweep(task, s, n))
        suggestions[task.name] = per
        dt = time.perf_counter() - t0
        t_sweep += dt
        log.info("  sweeps %s: %.1fs", task.name, dt)

    t0 = time.perf_counter()
    methods = list(next(iter(suggestions.values())).keys())
    table: dict[str, dict[str, Score]] = {m: {} for m in methods}
    for task in tasks:
        for m in methods:
            table[m][task.name] = score(task, truths[task.name], suggestions[task.name][m], ev_cache)
        ev_cache.save()
    # regret of a few rules at the other sweep lengths (does the suggestion stay good, not only close?)
    by_iter: dict[int, dict[str, dict[str, Score]]] = {}
    for n in num_iters:
        if n == NUM_ITER:
            continue
        by_iter[n] = {}
        for m in stability_methods(args.default):
            by_iter[n][m] = {
                t.name: score(t, truths[t.name], {s: stability[t.name][s][n][m] for s in seeds}, ev_cache)
                for t in tasks
            }
        ev_cache.save()
    t_eval = time.perf_counter() - t0
    total = time.perf_counter() - t_start
    summary = {m: summarize(table[m]) for m in methods}

    out = report(args, tasks, truths, table, summary, stability, by_iter, seeds, num_iters)
    out += (
        f"\nRuntime: {total:.0f}s (ground truth {t_truth:.0f}s, sweeps {t_sweep:.0f}s, "
        f"evaluation {t_eval:.0f}s); "
        f"torch {torch.__version__}, 1 thread.\n"
    )
    print(out)
    if not args.quick and not args.tasks:
        (results / "suggestion_quality.md").write_text(out)
    return {
        "summary": summary,
        "table": table,
        "truths": truths,
        "suggestions": suggestions,
        "stability": stability,
    }


def report(
    args: argparse.Namespace,
    tasks: list[qt.QualityTask],
    truths: dict[str, Truth],
    table: dict[str, dict[str, Score]],
    summary: dict[str, dict[str, float]],
    stability: dict[str, dict[int, dict[int, dict[str, float | None]]]],
    by_iter: dict[int, dict[str, dict[str, Score]]],
    seeds: Sequence[int],
    num_iters: Sequence[int],
) -> str:
    default = args.default
    parts: list[str] = []
    parts.append(
        "# Suggestion quality\n\n"
        f"`python benchmarks/suggestion_quality.py{' --quick' if args.quick else ''}` - "
        f"{len(tasks)} tasks, seeds {list(seeds)}; sweep {START_LR:g} -> {END_LR:g}, {NUM_ITER} iterations. "
        "Cell: normalized regret r (0 = as good as the best grid LR, 1 = no better than untrained, "
        "or diverged) "
        "and the suggested LR (geometric mean over seeds). Proposed default: "
        f"`{default}`; the package's current default: `{DEFAULT_METHOD}`.\n"
    )
    cols = [c for c in MAIN_COLUMNS if c in table] + [default]
    header = ["task", "eta* (L*, L0)", "good band r<=0.05"] + cols
    rows = []
    for t in tasks:
        tr = truths[t.name]
        band = tr.good_band()
        row = [
            t.name,
            f"{tr.eta_star:.1e} ({tr.l_star:.3f}, {tr.l0:.3f})",
            "-" if band is None else f"{band[0]:.1e}..{band[1]:.1e}",
        ]
        for c in cols:
            sc = table[c][t.name]
            row.append(f"{sc.regret:.2f} @{fmt_lr(sc.lr)}" + (f" ({sc.nones} none)" if sc.nones else ""))
        rows.append(row)
    parts.append("## Regret per task\n\n" + md_table(header, rows) + "\n")

    order = sorted(summary, key=lambda m: (summary[m]["mean"], summary[m]["worst"]))
    srows = [
        [
            f"**{m}**" if m == default else m,
            f"{summary[m]['mean']:.3f}",
            f"{summary[m]['median']:.3f}",
            f"{summary[m]['worst']:.3f}",
            f"{summary[m]['good']}/{summary[m]['n']}",
            f"{summary[m]['dlog']:.2f}",
            summary[m]["nones"],
        ]
        for m in order
    ]
    parts.append(
        "## Per method (best mean first)\n\n"
        + md_table(["method", "mean r", "median r", "worst r", "r<=0.05", "mean |log10(eta/eta*)|", "none"], srows)
        + "\n"
    )

    # EMA vs raw input, rule by rule
    pairs = []
    for m in table:
        if m.startswith("ema:"):
            raw = "raw:" + m[4:]
            if raw in table:
                pairs.append((m[4:], m, raw))
    for name in METHODS:
        pairs.append((f"lr_finder {name}", f"lr_finder {name} (EMA input)", f"lr_finder {name}"))
    erows = [
        [
            rule,
            f"{summary[e]['mean']:.3f} / {summary[e]['worst']:.3f} / {summary[e]['good']}",
            f"{summary[r]['mean']:.3f} / {summary[r]['worst']:.3f} / {summary[r]['good']}",
        ]
        for rule, e, r in pairs
    ]
    parts.append(
        "## EMA vs raw loss as the rules' input (mean / worst / count r<=0.05)\n\n"
        + md_table(["rule", "EMA (history['loss'])", "raw (history['raw_loss'])"], erows)
        + "\n"
    )

    # leave-one-task-out selection
    pools = {
        "all candidates": list(cand.CANDIDATES),
        "raw-loss candidates": [m for m in cand.CANDIDATES if m.startswith("raw")],
        "EMA-loss candidates": [m for m in cand.CANDIDATES if m.startswith("ema")],
        "raw: min/c, c in 2..10": [m for m in cand.CANDIDATES if m.startswith("raw:min/")],
        "package methods (EMA and raw)": [m for m in table if m.startswith("lr_finder ")],
    }
    lrows = []
    for pool_name, pool in pools.items():
        if len(tasks) < 3 or not pool:
            continue
        s, picks = leave_one_task_out(table, pool)
        counts: dict[str, int] = {}
        for v in picks.values():
            counts[v] = counts.get(v, 0) + 1
        picked = ", ".join(f"`{k}` x{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        lrows.append([pool_name, f"{s['mean']:.3f}", f"{s['worst']:.3f}", f"{s['good']}/{s['n']}", picked])
    if lrows:
        parts.append(
            "## Leave-one-task-out selection\n\nFor each task, the rule of the pool with the best mean "
            "regret on the other tasks is picked and scored on the held-out task.\n\n"
            + md_table(["pool", "mean r", "worst r", "r<=0.05", "rules picked"], lrows)
            + "\n"
        )

    # stability: spread of the suggestion over seeds and over num_iter
    def spreads(m: str) -> tuple[list[float], list[float]]:
        ss, its = [], []
        for t in tasks:
            st = stability[t.name]
            ss.append(spread(st[s][NUM_ITER][m] for s in seeds))
            its.append(max(spread(st[s][n][m] for n in num_iters) for s in seeds) if len(num_iters) > 1 else math.nan)
        return ss, its

    ss, its = spreads(default)
    strow = [
        [t.name, f"{a:.2f}", f"{b:.2f}"]
        + [" ".join(fmt_lr(stability[t.name][s][n][default]) for n in num_iters) for s in seeds]
        for t, a, b in zip(tasks, ss, its, strict=True)
    ]
    strow.append(
        [
            "**median / worst**",
            f"{np.median(ss):.2f} / {max(ss):.2f}",
            f"{np.median(its):.2f} / {max(its):.2f}",
        ]
        + [""] * len(seeds)
    )
    parts.append(
        f"## Stability of `{default}` (spread = max - min of log10 LR, in decades)\n\n"
        + md_table(
            ["task", "over seeds (num_iter=100)", "over num_iter (worst seed)"]
            + [f"seed {s}: num_iter {'/'.join(map(str, num_iters))}" for s in seeds],
            strow,
        )
        + "\n"
    )
    crow = []
    for m in dict.fromkeys(stability_methods(default) + [f"lr_finder {x}" for x in METHODS]):
        if m not in stability[tasks[0].name][seeds[0]][NUM_ITER]:
            continue
        a, b = spreads(m)
        row = [m, f"{np.median(a):.2f} / {max(a):.2f}", f"{np.median(b):.2f} / {max(b):.2f}"]
        for n in num_iters:
            if n == NUM_ITER:
                sm = summary[m]
            elif m in by_iter.get(n, {}):
                sm = summarize(by_iter[n][m])
            else:
                row.append("-")
                continue
            row.append(f"{sm['mean']:.3f} / {sm['worst']:.3f} / {sm['good']}")
        crow.append(row)
    parts.append(
        "## Stability and regret across num_iter (spread: median / worst over tasks; regret: mean / worst / "
        "count r<=0.05)\n\n"
        + md_table(
            ["method", "spread over seeds", "spread over num_iter"] + [f"regret, num_iter={n}" for n in num_iters],
            crow,
        )
        + "\n"
    )
    return "\n".join(parts)


if __name__ == "__main__":
    main()
