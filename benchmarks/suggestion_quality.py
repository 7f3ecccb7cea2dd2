"""What is a suggested learning rate worth? Regret, safety and stability of every suggestion rule, ours and
the peers', on a tuning split and a held-out split of small CPU tasks.

For each task of :mod:`quality_tasks` (data shipped offline; each task is marked ``tuning`` or ``held-out``
in the registry, fixed when it was written and before any rule was scored on it):

* ground truth: the task is trained for its fixed budget at every LR of a log grid (4 per decade, 1e-5..10,
  25 LRs) on each of 2 seeds, with ``OneCycleLR(max_lr=lr)`` or at a constant LR (the task's protocol); the
  validation loss at the end is ``L``. ``L*`` is the best grid point of the seed-mean loss, ``L0`` the
  seed-mean untrained loss. Cached per task in ``results/ground_truth.json`` (resumable);
* every method gets the same sweep (start 1e-7, end 10, 100 iterations), one per seed; the pick ``eta_s``
  of seed ``s`` is trained on seed ``s`` (the whole user pipeline, replicated per seed) and scored by the
  normalized regret ``r_s = clip((L_s(eta_s) - L*) / (L0 - L*), 0, 1)`` (1 when there is no pick); the
  task's regret is the mean over seeds. Trainings at picks are cached in ``results/eval_cache.json``, the
  sweeps' curves and the peers' picks in ``results/sweeps.json``, so re-scoring a changed analysis costs
  only the trainings at new picks;
* methods: the package's own analysis (``lr_finder.analyze`` on ``history["raw_loss"]``, as
  ``LRFinder.get_suggested_lr`` calls it) for every method of ``lr_finder.suggestion.METHODS``;
  ``LRFinder.verify()`` after the range test (its pick, and its extra training steps); the real
  ``torch-lr-finder`` (``plot(suggest_lr=True)``: steepest gradient), the real Lightning
  ``Tuner(trainer).lr_find(...).suggestion()``, and fastai's ``minimum/10`` and ``valley`` (written from
  their description in :mod:`candidates`, run on a fastai-like sweep);
* safety: the share of picks above the good band (the seed-mean regret <= 0.05 around ``eta*``, half a
  grid step of slack) and below it, and the regret of twice the pick (a user's rounding up);
* stability: how far the pick moves, in decades, across the seeds and across ``num_iter`` in {50, 100, 200}
  (the worst seed), median over tasks.

* constants: the default's divisor, and a fallback for curves without a descent whose sweep diverged, are
  chosen by leave-one-task-out cross-validation on the tuning split only (regret interpolated from the
  grid); the choice is then trained at its picks on both splits like every other method.

Prints the summary for the held-out and the tuning split side by side, the safety and stability tables,
``verify()``'s cost, the targets met or not, the cross-validation and the per-task table; writes it to
``results/suggestion_quality.md``.

Run: ``python benchmarks/suggestion_quality.py`` (``--quick`` for a smoke run, ``--truth-only`` to fill
the ground-truth cache, ``--refresh`` to recompute every cache).
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

import lr_finder.suggestion as suggestion  # noqa: E402
from lr_finder import LRFinder  # noqa: E402
from lr_finder.history import History  # noqa: E402
from lr_finder.suggestion import DEFAULT_METHOD, METHODS  # noqa: E402

RESULTS = HERE / "results"
START_LR, END_LR, NUM_ITER = 1e-7, 10.0, 100
GOOD = 0.05  # a suggestion within this regret counts as good
SWEEP_SEEDS = (0, 1)
NUM_ITERS = (50, 100, 200)
QUICK_TASKS = ("digits_mlp_sgdm", "diabetes_mlp_sgd", "breast_cancer_mlp_adamw")
SLACK = 10 ** (1 / 8)  # half a grid step: the good band is only known on the grid
#: The issue's targets for the default on the held-out split.
TARGETS = {"mean": 0.03, "worst": 0.20, "share": 0.90}

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
    seed_loss: dict[int, list[float]] = field(default_factory=dict)  # each seed's loss on the grid

    def regret(self, loss: float) -> float:
        if not math.isfinite(loss):
            return 1.0
        return float(np.clip((loss - self.l_star) / (self.l0 - self.l_star), 0.0, 1.0))

    def interpolated_regret(self, seed: int, eta: float | None) -> float:
        """A stand-in for training at ``eta``: the seed's grid regrets interpolated in log LR (the seed mean
        when the seed's own are not known; 1 with no pick)."""
        if eta is None or not _valid(eta):
            return 1.0
        regrets = [self.regret(v) for v in self.seed_loss.get(seed, self.mean_loss)]
        return float(np.interp(math.log10(eta), np.log10(self.grid), regrets))

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
    return Truth(grid, mean, mean[best], grid[best], float(np.mean(list(l0s.values()))), l0s, per_seed)


# ------------------------------------------------------------------------------------------------
# sweeps: ours, a fastai-like one, torch-lr-finder's and Lightning's, all from 1e-7 to 10; cached
# ------------------------------------------------------------------------------------------------


def _num(v: float) -> float | None:
    return float(f"{v:.6g}") if math.isfinite(v) else None


class SweepCache:
    """Sweep curves, peers' picks and ``verify()`` results per task (keyed on the task's fingerprint),
    persisted as JSON; every entry is recomputed when missing."""

    def __init__(self, path: Path, refresh: bool = False) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() and not refresh else {}
        self.dirty = False

    def slot(self, task: qt.QualityTask) -> dict[str, Any]:
        slot = self.data.get(task.name)
        if slot is None or slot.get("fingerprint") != task.fingerprint():
            slot = self.data[task.name] = {"fingerprint": task.fingerprint(), "entries": {}}
        return slot["entries"]  # type: ignore[no-any-return]

    def get(self, task: qt.QualityTask, name: str, make: Callable[[], Any]) -> Any:
        entries = self.slot(task)
        if name not in entries:
            entries[name] = make()
            self.dirty = True
        return entries[name]

    def save(self) -> None:
        for name in [n for n in self.data if n not in qt.TASKS]:
            del self.data[name]
        if self.dirty:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, separators=(",", ":"), sort_keys=True))
            tmp.replace(self.path)
            self.dirty = False


def as_entry(h: History) -> dict[str, Any]:
    return {
        "lr": [float(f"{v:.10g}") for v in h.lr],
        "loss": [_num(v) for v in h.loss],
        "raw": [_num(v) for v in h.raw_loss],
    }


def as_history(entry: dict[str, Any], num_iter: int) -> History:
    """A cached sweep as the History it came from; one that ended before ``num_iter`` steps stopped early
    (a divergence, a NaN or a spike), which the analysis reads."""
    nan = math.nan
    return History(
        [nan if v is None else v for v in entry["lr"]],
        [nan if v is None else v for v in entry["loss"]],
        [nan if v is None else v for v in entry["raw"]],
        "stopped early" if len(entry["lr"]) < num_iter else None,
    )


def _finder(task: qt.QualityTask, seed: int) -> LRFinder:
    model, opt = qt.build(task, seed)
    return LRFinder(model, opt, task.criterion(), device="cpu")


def our_sweep(task: qt.QualityTask, seed: int, num_iter: int, **kw: Any) -> History:
    return _finder(task, seed).range_test(
        qt.train_loader(task, seed), start_lr=START_LR, end_lr=END_LR, num_iter=num_iter, show_progress=False, **kw
    )


def fastai_sweep(task: qt.QualityTask, seed: int, num_iter: int) -> History:
    """fastai's recorder: an EMA with beta 0.98, a stop at 4x the best smoothed loss."""
    return our_sweep(task, seed, num_iter, smooth_f=0.02, diverge_th=4.0, adaptive_stop=False)


def verify_run(task: qt.QualityTask, seed: int) -> dict[str, Any]:
    """The range test then ``LRFinder.verify()`` with its defaults, as a user calls them."""
    finder = _finder(task, seed)
    loader = qt.train_loader(task, seed)
    finder.range_test(loader, start_lr=START_LR, end_lr=END_LR, num_iter=NUM_ITER, show_progress=False)
    v = finder.verify(loader)
    return {"lr": v.lr, "suggested": v.suggested if math.isfinite(v.suggested) else None, "steps": v.extra_steps}


def torch_lr_finder_suggestion(task: qt.QualityTask, seed: int, num_iter: int = NUM_ITER) -> float | None:
    """torch-lr-finder 0.2.2's own pick: ``plot(suggest_lr=True)``, the steepest gradient of its curve."""
    import matplotlib.pyplot as plt
    from torch_lr_finder import LRFinder as TLF

    model, opt = qt.build(task, seed)
    finder = TLF(model, opt, task.criterion(), device="cpu")
    fig, ax = plt.subplots()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            finder.range_test(qt.train_loader(task, seed), start_lr=START_LR, end_lr=END_LR, num_iter=num_iter)
            _, lr = finder.plot(ax=ax, suggest_lr=True)
    except RuntimeError as exc:  # too few points to suggest
        log.info("  torch-lr-finder on %s seed %d: %s", task.name, seed, exc)
        return None
    finally:
        plt.close(fig)
        finder.reset()
    return float(lr) if lr is not None and math.isfinite(lr) else None


def lightning_suggestion(task: qt.QualityTask, seed: int, num_iter: int = NUM_ITER) -> float | None:
    """Lightning's ``Tuner(trainer).lr_find(...).suggestion()`` on the task wrapped as a LightningModule."""
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
            num_training=num_iter, update_attr=False,
        )  # fmt: skip
    lr = None if result is None else result.suggestion()
    return float(lr) if lr is not None and math.isfinite(lr) else None



PEERS: dict[str, Callable[[qt.QualityTask, int, int], float | None]] = {
    "torch-lr-finder": torch_lr_finder_suggestion,
    "lightning": lightning_suggestion,
}



DEFAULT = f"lr_finder {DEFAULT_METHOD}"
VERIFY = "lr_finder verify()"
FASTAI_USED = ("fastai minimum/10", "fastai valley")


def method_names(peers: bool) -> list[str]:
    """Every scored method, the default first."""
    ours = [f"lr_finder {m}" for m in METHODS]
    ours.remove(DEFAULT)
    return [DEFAULT, VERIFY, *ours, *FASTAI_USED, *(PEERS if peers else ())]


def sweep_picks(
    task: qt.QualityTask, seed: int, n: int, sweeps: SweepCache, peers: Sequence[str]
) -> dict[str, float | None]:
    """Every method's pick from the sweeps of one (task, seed, num_iter); sweeps are run once, then cached."""
    h = as_history(sweeps.get(task, f"ours|{seed}|{n}", lambda: as_entry(our_sweep(task, seed, n))), n)
    row: dict[str, float | None] = {f"lr_finder {m}": suggestion.analyze_history(h, m).lr for m in METHODS}
    f = as_history(sweeps.get(task, f"fastai|{seed}|{n}", lambda: as_entry(fastai_sweep(task, seed, n))), n)
    x, y = cand.fastai_trim(f.lr, f.loss, n)
    row.update({name: cand.FASTAI[name](x, y) for name in FASTAI_USED})
    for name in peers:
        fn = PEERS[name]
        row[name] = sweeps.get(task, f"{name}|{seed}|{n}", lambda fn=fn: fn(task, seed, n))  # type: ignore[misc]
    return row


def task_picks(
    task: qt.QualityTask, seeds: Sequence[int], num_iters: Sequence[int], sweeps: SweepCache, args: argparse.Namespace
) -> tuple[dict[int, dict[int, dict[str, float | None]]], dict[int, dict[str, Any]]]:
    """picks[seed][num_iter][method], and ``verify()``'s result per seed (keyed on the pick it verified,
    so a changed default is verified again)."""
    picks: dict[int, dict[int, dict[str, float | None]]] = {}
    verified: dict[int, dict[str, Any]] = {}
    for s in seeds:
        picks[s] = {}
        for n in num_iters:
            peers = [] if args.no_peers else [p for p in PEERS if n == NUM_ITER or p in args.peer_stability]
            picks[s][n] = sweep_picks(task, s, n, sweeps, peers)
        pick = picks[s][NUM_ITER][DEFAULT]
        entry = sweeps.get(task, f"verify|{s}|{'none' if pick is None else key(pick)}", lambda s=s: verify_run(task, s))
        checked = entry["suggested"]
        if checked != pick and not (pick and checked and math.isclose(pick, checked, rel_tol=1e-5)):
            log.warning("  %s seed %d: verify() checked %s, the cached sweep picks %s", task.name, s,
                        entry["suggested"], pick)  # fmt: skip
        picks[s][NUM_ITER][VERIFY] = entry["lr"]
        verified[s] = entry
    return picks, verified


# ------------------------------------------------------------------------------------------------
# scoring
# ------------------------------------------------------------------------------------------------


@dataclass
class Score:
    """One method on one task: regrets (mean over seeds; 1 for a seed with no pick), picks, band sides."""

    regret: float
    regret2x: float
    lrs: list[float | None]
    above: int  # picks above the good band
    below: int  # picks below it
    nones: int

    @property
    def lr(self) -> float | None:
        """Geometric mean of the seeds' picks."""
        good = [x for x in self.lrs if x]
        return float(10 ** np.mean(np.log10(good))) if good else None


def _valid(eta: float | None) -> bool:
    return eta is not None and eta > 0 and math.isfinite(eta)


def score(task: qt.QualityTask, truth: Truth, per_seed: dict[int, float | None], cache: TrainCache) -> Score:
    rs, r2, above, below, nones = [], [], 0, 0, 0
    band = truth.good_band()
    for s, eta in per_seed.items():
        if eta is None or not _valid(eta):
            rs.append(1.0)
            r2.append(1.0)
            nones += 1
            continue
        rs.append(truth.regret(cache.loss(task, s, eta)))
        r2.append(truth.interpolated_regret(s, 2 * eta))
        if band is not None:
            above += eta > band[1] * SLACK
            below += eta < band[0] / SLACK
    return Score(float(np.mean(rs)), float(np.mean(r2)), list(per_seed.values()), above, below, nones)


def summarize(scores: Sequence[Score]) -> dict[str, float]:
    r = [s.regret for s in scores]
    r2 = [s.regret2x for s in scores]
    picked = sum(len(s.lrs) - s.nones for s in scores)
    return {
        "n": len(r),
        "mean": float(np.mean(r)),
        "median": float(np.median(r)),
        "worst": float(np.max(r)),
        "good": sum(x <= GOOD for x in r),
        "share": float(np.mean([x <= GOOD for x in r])),
        "nones": sum(s.nones for s in scores),
        "above": sum(s.above for s in scores) / picked if picked else math.nan,
        "below": sum(s.below for s in scores) / picked if picked else math.nan,
        "mean2x": float(np.mean(r2)),
        "worst2x": float(np.max(r2)),
    }


def spread(lrs: Iterable[float | None]) -> float:
    """Max minus min of log10 LR (inf when any pick is missing)."""
    vals = list(lrs)
    if any(v is None for v in vals):
        return math.inf
    logs = [math.log10(v) for v in vals if v is not None]
    return max(logs) - min(logs)


def stability(
    picks: dict[str, dict[int, dict[int, dict[str, float | None]]]], method: str, num_iters: Sequence[int]
) -> tuple[list[float], list[float]]:
    """Per task: the pick's spread across seeds (num_iter 100), and across num_iter (the worst seed; nan
    where the method was not run at every num_iter)."""
    over_seeds, over_iters = [], []
    for per_seed in picks.values():
        over_seeds.append(spread(per_seed[s][NUM_ITER][method] for s in per_seed))
        ns = [n for n in num_iters if method in next(iter(per_seed.values()))[n]]
        worst = max(spread(per_seed[s][n][method] for n in ns) for s in per_seed) if len(ns) > 1 else math.nan
        over_iters.append(worst)
    return over_seeds, over_iters


# ------------------------------------------------------------------------------------------------
# the default's constant, chosen by cross-validation on the tuning split only
# ------------------------------------------------------------------------------------------------

#: The default's family: the LR of the loss minimum over a divisor ``d`` at the reference sweep density,
#: scaled with the sweep's density within [0.4 d, 2 d] (the package ships the cross-validated choice,
#: ``suggestion.BACKOFF_DIVISOR``).
DIVISORS = (2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 14.0, 20.0)

#: ... and, when the descent test finds no descent but the sweep diverged (stopped before ``num_iter``), a
#: fallback to the LR where it stopped over ``k`` (``None``: no fallback; the package ships
#: ``suggestion.NO_DESCENT_DIVISOR``).
FALLBACKS = (None, 10.0, 20.0, 40.0)

Rule = Callable[[History, int], "float | None"]


def _with_divisor(d: float, k: float | None) -> Rule:
    """The package's own ``backoff`` analysis run with divisor ``d``; with ``k``, a curve without a descent
    whose sweep stopped early gets the LR where it stopped over ``k`` (the package's ``NO_DESCENT_DIVISOR``),
    without ``k`` no fallback."""

    def rule(h: History, num_iter: int) -> float | None:
        names = ("BACKOFF_DIVISOR", "BACKOFF_BOUNDS", "NO_DESCENT_DIVISOR")
        saved = [getattr(suggestion, name) for name in names]
        suggestion.BACKOFF_DIVISOR, suggestion.BACKOFF_BOUNDS = d, (0.4 * d, 2.0 * d)
        suggestion.NO_DESCENT_DIVISOR = k if k is not None else saved[2]
        try:
            stopped = k is not None and 0 < len(h.lr) < num_iter
            return suggestion.analyze(h.lr, h.raw_loss, "backoff", diverged_at=h.lr[-1] if stopped else None).lr
        finally:
            for name, value in zip(names, saved, strict=True):
                setattr(suggestion, name, value)

    return rule


def family() -> dict[str, Rule]:
    return {
        f"backoff /{d:g}" + ("" if k is None else f", else stop /{k:g}"): _with_divisor(d, k)
        for d in DIVISORS
        for k in FALLBACKS
    }


def family_regrets(run: Run, sweeps: SweepCache) -> dict[str, dict[str, float]]:
    """rule -> tuning task -> mean over seeds of the interpolated regret of the rule's pick (num_iter 100)."""
    rules = family()
    out: dict[str, dict[str, float]] = {r: {} for r in rules}
    for t in run.tasks:
        if t.split != qt.TUNING:
            continue
        truth = run.truths[t.name]
        for s in run.seeds:
            h = as_history(sweeps.slot(t)[f"ours|{s}|{NUM_ITER}"], NUM_ITER)
            for r, rule in rules.items():
                value = truth.interpolated_regret(s, rule(h, NUM_ITER)) / len(run.seeds)
                out[r][t.name] = out[r].get(t.name, 0.0) + value
    return out


def leave_one_task_out(table: dict[str, dict[str, float]]) -> tuple[list[float], dict[str, str], str]:
    """For each tuning task, the rule with the best mean regret on the other tuning tasks (ties: the lower
    worst), scored on the task left out; also the rule chosen on all of them."""

    def fit(rule: str, leave: str | None) -> tuple[float, float]:
        rs = [v for t, v in table[rule].items() if t != leave]
        return float(np.mean(rs)), float(np.max(rs))

    tasks = list(next(iter(table.values())))
    held, picks = [], {}
    for t in tasks:
        best = min(table, key=lambda r: fit(r, t))
        picks[t] = best
        held.append(table[best][t])
    return held, picks, min(table, key=lambda r: fit(r, None))


# ------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="3 tasks, num_iter 100 only: a smoke run")
    p.add_argument("--refresh", action="store_true", help="recompute every cache (ground truth, trainings, sweeps)")
    p.add_argument("--tasks", default=None, help="comma-separated task names (default: all)")
    p.add_argument("--no-peers", action="store_true", help="skip torch-lr-finder and Lightning")
    p.add_argument(
        "--peer-stability", default="torch-lr-finder", help="peers also run at num_iter 50 and 200 (comma-separated)"
    )
    p.add_argument("--results", default=str(RESULTS), help="folder of the caches and the markdown report")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default 2)")
    p.add_argument("--truth-only", action="store_true", help="compute (and cache) the ground truth, then stop")
    p.add_argument("--grid", default="1e-5,10,4", help="ground-truth grid: LO,HI,POINTS_PER_DECADE")
    return p.parse_args(argv)


@dataclass
class Run:
    """Everything measured: per task its truth, picks[seed][num_iter][method], verify() per seed, scores."""

    tasks: list[qt.QualityTask]
    seeds: tuple[int, ...]
    num_iters: tuple[int, ...]
    methods: list[str]
    truths: dict[str, Truth]
    picks: dict[str, dict[int, dict[int, dict[str, float | None]]]]
    verified: dict[str, dict[int, dict[str, Any]]]
    table: dict[str, dict[str, Score]]  # method -> task -> score, at num_iter 100
    by_iter: dict[int, dict[str, Score]]  # num_iter -> task -> the default's score
    cv: dict[str, Any] = field(default_factory=dict)  # the cross-validated choice of the default's divisor

    def split(self, which: str) -> list[str]:
        return [t.name for t in self.tasks if t.split == which]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    args.peer_stability = [p for p in args.peer_stability.split(",") if p]
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("lr_finder").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")

    names = args.tasks.split(",") if args.tasks else list(QUICK_TASKS if args.quick else qt.TASKS)
    tasks = [qt.TASKS[n] for n in names]
    seeds = tuple(range(args.seeds)) if args.seeds else SWEEP_SEEDS
    num_iters = (NUM_ITER,) if args.quick else NUM_ITERS
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    gt_cache = TrainCache(results / "ground_truth.json", args.refresh)
    ev_cache = TrainCache(results / "eval_cache.json", args.refresh)
    sweeps = SweepCache(results / "sweeps.json", args.refresh)
    lo, hi, per_decade = args.grid.split(",")
    grid = qt.lr_grid(float(lo), float(hi), int(per_decade))
    t_start = time.perf_counter()
    truths = {t.name: ground_truth(t, seeds, gt_cache, grid) for t in tasks}
    if args.truth_only:
        return {"truths": truths}

    methods = method_names(not args.no_peers)
    run = Run(tasks, seeds, num_iters, methods, truths, {}, {}, {m: {} for m in methods}, {})
    for task in tasks:
        t0 = time.perf_counter()
        run.picks[task.name], run.verified[task.name] = task_picks(task, seeds, num_iters, sweeps, args)
        sweeps.save()
        per = run.picks[task.name]
        for m in methods:
            run.table[m][task.name] = score(task, truths[task.name], {s: per[s][NUM_ITER][m] for s in seeds}, ev_cache)
        for n in num_iters:
            run.by_iter.setdefault(n, {})[task.name] = score(
                task, truths[task.name], {s: per[s][n][DEFAULT] for s in seeds}, ev_cache
            )
        ev_cache.save()
        log.info("  %s: %.1fs", task.name, time.perf_counter() - t0)

    if not args.quick and len(run.split(qt.TUNING)) >= 3:
        cross_validate(run, ev_cache, sweeps)
    out = report(run, args)
    out += f"\nRuntime: {time.perf_counter() - t_start:.0f}s; torch {torch.__version__}, 1 thread.\n"
    print(out)
    if not args.quick and not args.tasks:
        (results / "suggestion_quality.md").write_text(out)
    return {"run": run, "summary": {m: summarize(list(run.table[m].values())) for m in methods}}


def cross_validate(run: Run, ev_cache: TrainCache, sweeps: SweepCache) -> None:
    """Choose the divisor on the tuning split (leave one task out, interpolated regret), then add the rule
    chosen on the whole tuning split to the run as a method, trained at its picks like every other."""
    table = family_regrets(run, sweeps)
    held, picks, chosen = leave_one_task_out(table)
    name = f"CV choice: {chosen}"
    run.cv = {"table": table, "held": held, "picks": picks, "chosen": chosen, "name": name}
    extra = {name: chosen}
    if ", else stop /" in chosen:  # the fallback alone, on the shipped divisor
        fallback = chosen[chosen.index(", else") :]
        extra[f"candidate: backoff /5{fallback}"] = f"backoff /5{fallback}"
    rules = family()
    for label, rule_name in extra.items():
        rule = rules[rule_name]
        run.methods.append(label)
        run.table[label] = {}
        for t in run.tasks:
            per = run.picks[t.name]
            for s in run.seeds:
                for n in run.num_iters:
                    per[s][n][label] = rule(as_history(sweeps.slot(t)[f"ours|{s}|{n}"], n), n)
            picked = {s: per[s][NUM_ITER][label] for s in run.seeds}
            run.table[label][t.name] = score(t, run.truths[t.name], picked, ev_cache)
    ev_cache.save()


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------


def fmt_lr(lr: float | None) -> str:
    return "none" if lr is None else f"{lr:.1e}"


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def label(m: str) -> str:
    return f"**{m} (default)**" if m == DEFAULT else m


def split_summaries(run: Run) -> dict[str, dict[str, dict[str, float]]]:
    """summary[split][method], for the splits that have tasks."""
    out = {}
    for which in (qt.HELD_OUT, qt.TUNING):
        names = run.split(which)
        if names:
            out[which] = {m: summarize([run.table[m][t] for t in names]) for m in run.methods}
    return out


def regret_section(run: Run, sums: dict[str, dict[str, dict[str, float]]]) -> str:
    header, cols = ["method"], list(sums)
    for which in cols:
        n = next(iter(sums[which].values()))["n"]
        header += [f"{which} ({n}): mean r", "median", "worst", "r<=0.05", "no pick"]
    rows = []
    for m in run.methods:
        row = [label(m)]
        for which in cols:
            s = sums[which][m]
            row += [f"{s['mean']:.3f}", f"{s['median']:.3f}", f"{s['worst']:.3f}", f"{s['good']}/{s['n']}",
                    s["nones"]]  # fmt: skip
        rows.append(row)
    return "## Regret, held-out and tuning split\n\n" + md_table(header, rows) + "\n"


def safety_section(run: Run, sums: dict[str, dict[str, dict[str, float]]]) -> str:
    header = ["method"]
    for which in sums:
        header += [f"{which}: picks above band", "below band", "r at 2x pick: mean", "worst"]
    rows = []
    for m in run.methods:
        row = [label(m)]
        for which in sums:
            s = sums[which][m]
            row += [f"{s['above']:.0%}", f"{s['below']:.0%}", f"{s['mean2x']:.3f}", f"{s['worst2x']:.3f}"]
        rows.append(row)
    return (
        "## Safety: which side of the good band the picks miss on, and what rounding up (2x) costs\n\n"
        "Share of all picks (task x seed) above the band of LRs with seed-mean regret <= 0.05 (the costly "
        "side: divergence) and below it (slower training), half a grid step of slack. The regret at twice "
        "the pick is interpolated from the seed's ground-truth grid (log LR), not trained.\n\n"
        + md_table(header, rows)
        + "\n"
    )


def stability_section(run: Run) -> str:
    rows = []
    for m in run.methods:
        seeds, iters = stability(run.picks, m, run.num_iters)
        finite = [x for x in iters if not math.isnan(x)]
        it = f"{np.median(finite):.2f} / {max(finite):.2f}" if finite else "-"
        rows.append([label(m), f"{np.median(seeds):.2f} / {max(seeds):.2f}", it])
    regrets = []
    which = qt.HELD_OUT if run.split(qt.HELD_OUT) else "all"
    for n in run.num_iters:
        s = summarize([run.by_iter[n][t] for t in run.split(qt.HELD_OUT) or [t.name for t in run.tasks]])
        regrets.append(f"{n}: {s['mean']:.3f} / {s['worst']:.3f} / {s['good']}/{s['n']}")
    return (
        "## Stability: how far the pick moves, in decades (median / worst over all tasks)\n\n"
        "Across the seeds at num_iter 100; across num_iter in "
        f"{{{', '.join(map(str, run.num_iters))}}} for the worst seed ('-': not run at every num_iter; a "
        "missing pick counts as inf).\n\n"
        + md_table(["method", "over seeds", "over num_iter"], rows)
        + f"\n\nThe default's regret on the {which} tasks (mean / worst / r<=0.05) by num_iter: {'; '.join(regrets)}.\n"
    )


def verify_section(run: Run) -> str:
    runs = [v for per in run.verified.values() for v in per.values()]
    steps = [v["steps"] for v in runs]
    unchecked = sum(v["suggested"] is None for v in runs)
    unstable = sum(v["suggested"] is not None and v["lr"] is None for v in runs)
    moved = sum(v["lr"] is not None and v["suggested"] is not None and v["lr"] != v["suggested"] for v in runs)
    return (
        "## `verify()`: cost\n\n"
        f"Extra training steps per range test: mean {np.mean(steps):.0f}, max {max(steps)} (the sweep itself: "
        f"{NUM_ITER}). Of {len(runs)} runs (task x seed), {unchecked} had no suggestion to verify, {unstable} "
        f"found no stable candidate, and {moved} moved the pick.\n"
    )


def targets_section(sums: dict[str, dict[str, dict[str, float]]]) -> str:
    if qt.HELD_OUT not in sums:
        return ""
    lines = []
    for m in [DEFAULT, VERIFY, *(x for x in sums[qt.HELD_OUT] if x.startswith(("CV choice", "candidate")))]:
        s = sums[qt.HELD_OUT][m]
        checks = [
            f"mean r {s['mean']:.3f} {'<=' if s['mean'] <= TARGETS['mean'] else '>'} {TARGETS['mean']}",
            f"worst r {s['worst']:.3f} {'<=' if s['worst'] <= TARGETS['worst'] else '>'} {TARGETS['worst']}",
            f"r<=0.05 on {s['share']:.0%} {'>=' if s['share'] >= TARGETS['share'] else '<'} {TARGETS['share']:.0%}",
            f"{s['nones']} seed(s) without a pick",
        ]
        met = s["mean"] <= TARGETS["mean"] and s["worst"] <= TARGETS["worst"] and s["share"] >= TARGETS["share"]
        peers = [p for p in sums[qt.HELD_OUT] if not p.startswith(("lr_finder", "CV choice", "candidate"))]
        beats = [
            p for p in peers
            if s["mean"] < sums[qt.HELD_OUT][p]["mean"] and s["worst"] <= sums[qt.HELD_OUT][p]["worst"]
            and s["good"] >= sums[qt.HELD_OUT][p]["good"]
        ]  # fmt: skip
        missed = sorted(set(peers) - set(beats))
        lines.append(
            f"- `{m}`: {'MET' if met else 'NOT met'} ({'; '.join(checks)}); better than every peer on mean, worst "
            f"and count: {'yes' if not missed else 'no (not than: ' + ', '.join(missed) + ')'}"
        )
    return "## Targets on the held-out split\n\n" + "\n".join(lines) + "\n"


def per_task_section(run: Run) -> str:
    cols = [m for m in run.methods if m != DEFAULT]
    header = ["task", "split", "eta* (L*, L0)", "good band", f"{DEFAULT_METHOD} (default)"] + cols
    rows = []
    for t in sorted(run.tasks, key=lambda t: (t.split != qt.HELD_OUT, t.name)):
        tr = run.truths[t.name]
        band = tr.good_band()
        row = [t.name, t.split, f"{tr.eta_star:.1e} ({tr.l_star:.3f}, {tr.l0:.3f})",
               "-" if band is None else f"{band[0]:.1e}..{band[1]:.1e}"]  # fmt: skip
        for m in [DEFAULT, *cols]:
            sc = run.table[m][t.name]
            row.append(f"{sc.regret:.2f} @{fmt_lr(sc.lr)}" + (f" ({sc.nones} none)" if sc.nones else ""))
        rows.append(row)
    return "## Per task (regret @ geometric-mean pick over seeds)\n\n" + md_table(header, rows) + "\n"


def cv_section(run: Run) -> str:
    if not run.cv:
        return ""
    table, held, picks = run.cv["table"], run.cv["held"], run.cv["picks"]
    rows = [[r, f"{np.mean(list(v.values())):.3f}", f"{np.max(list(v.values())):.3f}",
             f"{sum(x <= GOOD for x in v.values())}/{len(v)}"] for r, v in table.items()]  # fmt: skip
    counts: dict[str, int] = {}
    for r in picks.values():
        counts[r] = counts.get(r, 0) + 1
    chosen = ", ".join(f"`{r}` x{c}" for r, c in sorted(counts.items(), key=lambda kv: -kv[1]))
    return (
        "## The default's constants, cross-validated on the tuning split\n\n"
        "Regret on the tuning tasks interpolated from the ground-truth grid (a stand-in for training at each "
        "pick), the package's `backoff` with divisor d, and with a fallback for curves without a descent that "
        "diverged (the LR where the sweep stopped, over k):\n\n"
        + md_table(["rule", "mean r", "worst r", "r<=0.05"], rows)
        + f"\n\nLeave one tuning task out: mean {np.mean(held):.3f}, worst {np.max(held):.3f}, "
        f"{sum(x <= GOOD for x in held)}/{len(held)} within 0.05 (rules chosen: {chosen}). Chosen on the whole "
        f"tuning split: `{run.cv['chosen']}`, scored above (trained at its picks) as `{run.cv['name']}`.\n"
    )


def report(run: Run, args: argparse.Namespace) -> str:
    sums = split_summaries(run)
    counts = ", ".join(f"{len(run.split(w))} {w}" for w in (qt.HELD_OUT, qt.TUNING))
    head = (
        "# Suggestion quality\n\n"
        f"`python benchmarks/suggestion_quality.py{' --quick' if args.quick else ''}`: {len(run.tasks)} tasks "
        f"({counts}), seeds {list(run.seeds)}; sweep {START_LR:g} -> {END_LR:g}, {NUM_ITER} iterations. Regret r: "
        "0 = as good as the best of 25 grid LRs, 1 = no better than untrained, diverged, or no pick. The "
        "held-out tasks were never used to choose a rule or a constant.\n"
    )
    parts = [head, regret_section(run, sums), safety_section(run, sums), stability_section(run)]
    parts += [verify_section(run), targets_section(sums), cv_section(run), per_task_section(run)]
    return "\n".join(p for p in parts if p)


if __name__ == "__main__":
    main()
