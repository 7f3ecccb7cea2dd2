"""Smoke test of the suggestion-quality benchmark's machinery on one tiny task (numbers not checked)."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

pytest.importorskip("sklearn")
pytest.importorskip("scipy")

import candidates  # noqa: E402
import quality_tasks  # noqa: E402
import suggestion_quality as bench  # noqa: E402


@pytest.fixture
def tiny_task(monkeypatch):
    task = replace(quality_tasks.TASKS["diabetes_mlp_sgd"], name="smoke_diabetes", steps=20)
    monkeypatch.setitem(quality_tasks.TASKS, task.name, task)
    return task


def test_benchmark_runs_caches_and_reports(tiny_task, tmp_path, monkeypatch, capsys):
    args = [
        "--quick",
        "--tasks",
        tiny_task.name,
        "--results",
        str(tmp_path),
        "--no-peers",
        "--grid",
        "1e-4,1,1",
        "--seeds",
        "1",
    ]
    out = bench.main(args)
    summary, table = out["summary"], out["table"]
    for name in ("lr_finder steepest", "fastai valley", candidates.PROPOSED_DEFAULT):
        s = summary[name]
        assert 0.0 <= s["mean"] <= s["worst"] <= 1.0 and s["n"] == 1
    truth = out["truths"][tiny_task.name]
    assert truth.l_star <= min(truth.mean_loss) and truth.l0 > truth.l_star
    assert truth.eta_star in truth.grid
    for m, per_seed in out["suggestions"][tiny_task.name].items():
        for lr in per_seed.values():
            assert lr is None or (lr > 0 and math.isfinite(lr)), (m, lr)
    gt = json.loads((tmp_path / "ground_truth.json").read_text())
    assert gt[tiny_task.name]["fingerprint"] == tiny_task.fingerprint()
    assert len(gt[tiny_task.name]["runs"]) == len(truth.grid) + 1
    printed = capsys.readouterr().out
    assert "## Per method" in printed and "EMA vs raw" in printed and "Stability of" in printed

    # A warm run trains nothing: the sweeps are deterministic and every loss comes from the caches.
    def no_training(*a, **k):
        raise AssertionError("a warm run must not train")

    monkeypatch.setattr(quality_tasks, "train", no_training)
    monkeypatch.setattr(quality_tasks, "untrained_loss", no_training)
    again = bench.main(args)
    assert {m: round(s.regret, 9) for m, s in again["table"]["lr_finder steepest"].items()} == {
        m: round(s.regret, 9) for m, s in table["lr_finder steepest"].items()
    }


@pytest.mark.parametrize("peer", ["torch-lr-finder", pytest.param("lightning", marks=pytest.mark.slow)])
def test_peer_wrappers_return_an_lr_in_the_sweep(tiny_task, peer):
    pytest.importorskip({"torch-lr-finder": "torch_lr_finder", "lightning": "lightning"}[peer])
    lr = bench.PEERS[peer](tiny_task, 0)
    assert lr is None or bench.START_LR <= lr <= bench.END_LR


def test_fastai_rules_from_their_description():
    lrs = np.logspace(-6, 1, 80)
    x = np.log10(lrs)
    losses = 2.0 - np.tanh(x + 3.0) + np.maximum(0.0, x + 1.0) ** 2 * 3
    pick = {name: rule(lrs, losses) for name, rule in candidates.FASTAI.items()}
    lmin = lrs[np.argmin(losses)]
    assert pick["fastai minimum/10"] == pytest.approx(lmin / 10)
    assert abs(np.log10(pick["fastai steep"]) + 3.0) < 0.1  # tanh is steepest at its centre
    assert 1e-6 < pick["fastai valley"] < lmin and 1e-6 < pick["fastai slide"] <= lmin


def test_regret_and_leave_one_task_out():
    truth = bench.Truth([1e-3, 1e-2, 1e-1], [1.0, 0.5, 2.0], 0.5, 1e-2, 2.5, {0: 2.5})
    assert truth.regret(0.5) == 0 and truth.regret(1.5) == pytest.approx(0.5) and truth.regret(math.inf) == 1
    assert truth.good_band(0.3) == (1e-3, 1e-2)
    s = lambda r: bench.Score(r, [1e-2], 0.0, 0)  # noqa: E731
    table = {"a": {"t1": s(0.0), "t2": s(0.0), "t3": s(0.9)}, "b": {"t1": s(0.1), "t2": s(0.1), "t3": s(0.1)}}
    summary, picks = bench.leave_one_task_out(table, ["a", "b"])
    assert picks == {"t1": "b", "t2": "b", "t3": "a"}
    assert summary["worst"] == pytest.approx(0.9)


@pytest.mark.parametrize("name", ["digits_mlp_sgdm", "digits_cnn_bn_adam_const", "wine_mlp_adam"])
def test_default_pick_on_a_real_task_is_in_the_benchmarks_good_band(name):
    """The issue's check: the default method's pick on a real small task lies in the band of LRs whose
    trained loss is within 5% (normalized regret) of the best, from the committed ground truth (one grid
    step, a quarter decade, of slack: the band is only known on the grid)."""
    from lr_finder import LRFinder

    task = quality_tasks.TASKS[name]
    cache = bench.TrainCache(BENCH / "results" / "ground_truth.json")
    assert all(cache.get(task, s, None) is not None for s in bench.SWEEP_SEEDS), "committed ground truth is missing"
    truth = bench.ground_truth(task, bench.SWEEP_SEEDS, cache, quality_tasks.lr_grid())
    lo, hi = truth.good_band(bench.GOOD)
    model, opt = quality_tasks.build(task, 0)
    finder = LRFinder(model, opt, task.criterion(), device="cpu")
    finder.range_test(quality_tasks.train_loader(task, 0), start_lr=bench.START_LR, end_lr=bench.END_LR,
                      num_iter=100, show_progress=False)
    lr = finder.get_suggested_lr()
    slack = 10**0.25
    assert lr is not None and lo / slack <= lr <= hi * slack, (lr, lo, hi)
