"""The suggestion-quality benchmark: its machinery on one tiny task, its pure parts, and the default's pick on
a few real tasks against the committed ground truth."""

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
    args = ["--quick", "--tasks", tiny_task.name, "--results", str(tmp_path), "--no-peers", "--grid", "1e-4,1,1",
            "--seeds", "1"]  # fmt: skip
    out = bench.main(args)
    run, summary = out["run"], out["summary"]
    for name in (bench.DEFAULT, bench.VERIFY, "lr_finder steepest", "fastai valley"):
        s = summary[name]
        assert 0.0 <= s["mean"] <= s["worst"] <= 1.0 and s["n"] == 1
        assert 0.0 <= s["above"] + s["below"] <= 1.0 or s["nones"] == 1
    truth = run.truths[tiny_task.name]
    assert truth.l_star <= min(truth.mean_loss) and truth.l0 > truth.l_star
    assert truth.eta_star in truth.grid
    for m, lr in run.picks[tiny_task.name][0][bench.NUM_ITER].items():
        assert lr is None or (lr > 0 and math.isfinite(lr)), (m, lr)
    assert run.verified[tiny_task.name][0]["steps"] > 0
    gt = json.loads((tmp_path / "ground_truth.json").read_text())
    assert gt[tiny_task.name]["fingerprint"] == tiny_task.fingerprint()
    assert len(gt[tiny_task.name]["runs"]) == len(truth.grid) + 1
    printed = capsys.readouterr().out
    assert "## Regret, held-out and tuning split" in printed and "## Safety" in printed and "## Stability" in printed

    # A warm run trains nothing: every loss, curve and verification comes from the caches.
    def no_training(*a, **k):
        raise AssertionError("a warm run must not train")

    for name in ("train", "untrained_loss", "build"):
        monkeypatch.setattr(quality_tasks, name, no_training)
    again = bench.main(args)
    assert {m: round(s["mean"], 9) for m, s in again["summary"].items()} == {
        m: round(s["mean"], 9) for m, s in summary.items()
    }


@pytest.mark.parametrize("peer", ["torch-lr-finder", pytest.param("lightning", marks=pytest.mark.slow)])
def test_peer_wrappers_return_an_lr_in_the_sweep(tiny_task, peer):
    pytest.importorskip({"torch-lr-finder": "torch_lr_finder", "lightning": "lightning"}[peer])
    lr = bench.PEERS[peer](tiny_task, 0, 30)
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


def test_regret_band_and_safety_summary():
    truth = bench.Truth([1e-3, 1e-2, 1e-1], [1.0, 0.5, 2.0], 0.5, 1e-2, 2.5, {0: 2.5})
    assert truth.regret(0.5) == 0 and truth.regret(1.5) == pytest.approx(0.5) and truth.regret(math.inf) == 1
    assert truth.good_band(0.3) == (1e-3, 1e-2)
    assert truth.interpolated_regret(0, 10**-1.5) == pytest.approx(0.5 * truth.regret(0.5) + 0.5 * truth.regret(2.0))
    assert truth.interpolated_regret(0, 1e-4) == truth.regret(1.0) and truth.interpolated_regret(0, None) == 1
    scores = [
        bench.Score(0.0, 0.5, [1e-2, 2e-2], above=0, below=0, nones=0),
        bench.Score(0.4, 1.0, [1.0, None], above=1, below=0, nones=1),
    ]
    s = bench.summarize(scores)
    assert s["mean"] == pytest.approx(0.2) and s["worst"] == pytest.approx(0.4) and s["good"] == 1
    assert s["above"] == pytest.approx(1 / 3) and s["below"] == 0 and s["nones"] == 1
    assert s["mean2x"] == pytest.approx(0.75)
    assert bench.spread([1e-3, 1e-2]) == pytest.approx(1.0) and bench.spread([1e-3, None]) == math.inf


def test_every_task_is_in_one_split_and_the_held_out_split_is_substantial():
    splits = [t.split for t in quality_tasks.TASKS.values()]
    assert set(splits) == {quality_tasks.TUNING, quality_tasks.HELD_OUT}
    assert len(splits) >= 30 and splits.count(quality_tasks.HELD_OUT) >= 15


@pytest.mark.parametrize("name", ["digits_mlp_sgdm", "gratings_cnn_bn_rmsprop_const", "digits_rows_lstm_adam_const"])
def test_default_pick_on_a_real_task_is_in_the_benchmarks_good_band(name):
    """The default method's pick on a real small task (an MLP, a CNN with BatchNorm under RMSprop at a
    constant LR, an LSTM) lies in the band of LRs whose trained loss is within 5% (normalized regret) of
    the best, from the committed ground truth (one grid step, a quarter decade, of slack: the band is only
    known on the grid)."""
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
