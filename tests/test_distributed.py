"""The range test under torch.distributed: 2 processes, gloo on CPU, loopback only.

One launch for the whole file (importing torch and DDP dominates the cost): the fixture starts this file
as a script once per rank, in a ``torchrun``-style environment (MASTER_ADDR=127.0.0.1, a free MASTER_PORT,
RANK, WORLD_SIZE, LOCAL_RANK), and runs the single-process reference meanwhile. Each worker runs every
scenario in one process group, the faults included (a rank that fell out of step would hang or garble the
next scenario), writes what it saw to ``result_rank{r}.json`` and ends with an uncaught fault, so that both
processes must exit with an error. A short process-group timeout and a hard timeout on the processes turn
a hang into a failure.
"""

from __future__ import annotations

import json
import math
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import spawn
import torch
from spawn import PG_TIMEOUT_S, WORLD, caught, scenario

from lr_finder import LRFinder
from lr_finder import distributed as lf_dist
from lr_finder.settings import RangeTestSettings
from lr_finder.training import LocalSteps, Trainer

NUM_ITER = 40
RANGE: dict[str, Any] = {"start_lr": 1e-4, "end_lr": 10.0, "show_progress": False}

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()), reason="needs gloo"
)


def plain_mlp() -> torch.nn.Module:
    """No BatchNorm, no dropout: DDP on 2 x 16 samples equals one process on the 32 (up to rounding)."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))


class Flaky:
    """A re-iterable loader whose ``fail_at``-th batch (counted over all passes) raises ``OSError``."""

    def __init__(self, loader: Any, fail_at: int | None) -> None:
        self.loader = loader
        self.fail_at = fail_at
        self.n = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            self.n += 1
            if self.n == self.fail_at:
                raise OSError(f"could not read batch {self.n}")
            yield batch


# -- the worker (one per rank, in the spawned processes) ---------------------------------------------
def _worker(out: Path) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset

    from tasks import assert_same_state, state_of

    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=PG_TIMEOUT_S))
    rank = dist.get_rank()
    result: dict[str, Any] = {"rank": rank}
    x, y = torch.load(out / "digits.pt")  # loaded by the parent: no scikit-learn import per rank
    ds = TensorDataset(x[:512], y[:512])
    val = Subset(TensorDataset(x, y), range(512, 640))

    def bn_mlp(seed: int) -> torch.nn.Module:  # BatchNorm: DDP broadcasts its buffers before every forward
        torch.manual_seed(seed)
        return torch.nn.Sequential(
            torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Dropout(0.1),
            torch.nn.Linear(32, 10),
        )

    def setup(model: torch.nn.Module, momentum: float = 0.9):
        ddp = DDP(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=momentum)
        return ddp, opt, state_of(ddp, opt)

    def restored(before: dict[str, Any], ddp: torch.nn.Module, opt: torch.optim.Optimizer) -> bool:
        assert_same_state(before, state_of(ddp, opt))
        return True

    def history(h: Any) -> dict[str, Any]:
        return {"lr": list(h.lr), "loss": list(h.loss), "raw": list(h.raw_loss), "stop": h.stop_reason}

    def sharded(data: Any, batch_size: int) -> DataLoader:
        return DataLoader(data, batch_size=batch_size, sampler=DistributedSampler(data, shuffle=False))

    def ce_loss(fail_at: int | None = None, nan_at: int | None = None):
        """Cross-entropy as a ``loss_fn``; on rank 1, call ``fail_at`` raises and call ``nan_at`` is NaN."""
        calls = [0]

        def loss_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
            calls[0] += 1
            inputs, targets = batch
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            if rank == 1 and calls[0] == fail_at:
                raise ValueError(f"boom in the loss on rank {rank} at call {calls[0]}")
            if rank == 1 and calls[0] == nan_at:
                return loss * math.nan
            return loss

        return loss_fn

    def equivalence() -> dict[str, Any]:
        ddp, opt, before = setup(plain_mlp())
        finder = LRFinder(ddp, opt, torch.nn.CrossEntropyLoss())
        h = finder.range_test(sharded(ds, 16), num_iter=NUM_ITER, **RANGE)
        lr = finder.plot(save_path=out / f"rank{rank}" / "lr_finder_plot.png")
        return {
            **history(h), "suggestion": lr, "restored": restored(before, ddp, opt),
            "world_size": h.settings.get("world_size"),
        }

    def bn_accumulation_validation() -> dict[str, Any]:
        ddp, opt, before = setup(bn_mlp(1))
        finder = LRFinder(ddp, opt, torch.nn.CrossEntropyLoss())
        h = finder.range_test(
            sharded(ds, 8), num_iter=12, accumulation_steps=2, val_loader=sharded(val, 32), **RANGE
        )
        return {**history(h), "suggestion": finder.suggestion().lr, "restored": restored(before, ddp, opt)}

    def nan_on_one_rank() -> dict[str, Any]:
        ddp, opt, before = setup(plain_mlp(), momentum=0.0)
        finder = LRFinder(ddp, opt, None, loss_fn=ce_loss(nan_at=7))
        h = finder.range_test(sharded(ds, 16), num_iter=NUM_ITER, **RANGE)
        return {**history(h), "restored": restored(before, ddp, opt)}

    def fault(loader_fail_at: int | None, loss_fail_at: int | None, accumulation: int) -> dict[str, Any]:
        ddp, opt, before = setup(bn_mlp(2))
        loader = Flaky(sharded(ds, 16), loader_fail_at if rank == 1 else None)
        finder = LRFinder(ddp, opt, None, loss_fn=ce_loss(fail_at=loss_fail_at))
        kwargs = {"num_iter": NUM_ITER, "accumulation_steps": accumulation, **RANGE}
        err = caught(lambda: finder.range_test(loader, **kwargs))
        return {**err, "steps": len(finder.history.lr), "restored": restored(before, ddp, opt)}

    scenario(result, "equivalence", equivalence)
    scenario(result, "bn_accum_val", bn_accumulation_validation)
    scenario(result, "nan", nan_on_one_rank)
    scenario(result, "loader_fault", lambda: fault(loader_fail_at=7, loss_fail_at=None, accumulation=1))
    scenario(result, "micro_fault", lambda: fault(loader_fail_at=None, loss_fail_at=7, accumulation=2))

    def snapshot_fault() -> dict[str, Any]:  # rank 1 alone cannot write its disk snapshot
        ddp, opt, before = setup(plain_mlp())
        blocker = out / "not_a_folder"
        blocker.write_text("a file where rank 1's cache_dir should be")
        cache_dir = blocker / "cache" if rank == 1 else out / f"cache{rank}"
        finder = LRFinder(ddp, opt, torch.nn.CrossEntropyLoss(), memory_cache=False, cache_dir=cache_dir)
        err = caught(lambda: finder.range_test(sharded(ds, 16), num_iter=NUM_ITER, **RANGE))
        return {**err, "steps": len(finder.history.lr), "restored": restored(before, ddp, opt)}

    scenario(result, "snapshot_fault", snapshot_fault)
    dist.barrier()  # the group still works after the faults: no rank fell out of step

    # Last: rank 1 raises in its loss at step 5, uncaught; both processes must exit with an error.
    ddp, opt, before = setup(plain_mlp())
    finder = LRFinder(ddp, opt, None, loss_fn=ce_loss(fail_at=6))
    result["crash_start"] = time.time()
    try:
        finder.range_test(sharded(ds, 16), num_iter=NUM_ITER, **RANGE)
    except Exception as exc:
        result["crash"] = {
            "type": type(exc).__name__, "message": str(exc), "steps": len(finder.history.lr),
            "restored": restored(before, ddp, opt),
        }
        raise
    finally:
        (out / f"result_rank{rank}.json").write_text(json.dumps(result))


# -- the launcher ------------------------------------------------------------------------------------
def _single_process_reference(x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """The same test in one process on the global batches.

    ``DistributedSampler(shuffle=False)`` gives rank r the samples r, r + 2, ...: together the two
    per-rank batches of 16 are the global batch of 32 consecutive samples.
    """
    model = plain_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    data = torch.utils.data.TensorDataset(x[:512], y[:512])
    loader = torch.utils.data.DataLoader(data, batch_size=16 * WORLD, shuffle=False)
    finder = LRFinder(model, opt, torch.nn.CrossEntropyLoss())
    h = finder.range_test(loader, num_iter=NUM_ITER, **RANGE)
    return {"lr": list(h.lr), "raw": list(h.raw_loss), "suggestion": finder.suggestion().lr}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tasks import digits_tensors

    out = tmp_path_factory.mktemp("ddp")
    x, y = digits_tensors(640)
    torch.save((x, y), out / "digits.pt")
    started = time.monotonic()
    procs = spawn.start(__file__, out)
    reference = _single_process_reference(x, y)  # meanwhile
    outputs, exits = spawn.wait(procs, started)
    results = spawn.results(out, outputs)
    return {
        "out": out, "results": results, "reference": reference, "outputs": outputs, "exits": exits,
        "codes": [p.returncode for p in procs],
    }


def test_ranks_record_the_same_curve_and_suggestion(runs: dict[str, Any]) -> None:
    r0, r1 = runs["results"]
    for name in ("equivalence", "bn_accum_val"):
        a, b = r0[name], r1[name]
        assert len(a["lr"]) >= 10, a
        for key in ("lr", "loss", "raw", "stop", "suggestion"):
            assert a[key] == b[key], (name, key)  # exact: every rank holds the same all-reduced sums
        assert a["suggestion"] is not None
    assert r0["equivalence"]["world_size"] == WORLD


def test_suggestion_matches_one_process_on_the_global_batches(runs: dict[str, Any]) -> None:
    ddp, single = runs["results"][0]["equivalence"], runs["reference"]
    n = min(len(single["lr"]), len(ddp["lr"]))
    assert n >= 20 and abs(len(single["lr"]) - len(ddp["lr"])) <= 1
    assert ddp["lr"][:n] == pytest.approx(single["lr"][:n], rel=1e-12)
    assert ddp["raw"][: n // 2] == pytest.approx(single["raw"][: n // 2], rel=1e-4)
    assert single["suggestion"] is not None
    assert abs(math.log(ddp["suggestion"] / single["suggestion"])) < math.log(1.25), (ddp, single)


def test_only_rank_0_writes_files(runs: dict[str, Any]) -> None:
    out = runs["out"]
    names = sorted(p.name for p in (out / "rank0").iterdir())
    assert names == ["best_lr.txt", "lr_finder_log.csv", "lr_finder_plot.png", "lr_finder_summary.json"]
    assert not (out / "rank1").exists()


def test_every_rank_is_restored_bit_for_bit(runs: dict[str, Any]) -> None:
    for res in runs["results"]:
        for name in ("equivalence", "bn_accum_val", "nan", "loader_fault", "micro_fault", "crash"):
            assert res[name]["restored"] is True, (res["rank"], name)


def test_nan_on_one_rank_stops_every_rank_at_the_same_step(runs: dict[str, Any]) -> None:
    r0, r1 = runs["results"]
    assert r0["nan"] == r1["nan"]
    assert r0["nan"]["stop"].startswith("non-finite loss") and len(r0["nan"]["lr"]) == 6


@pytest.mark.parametrize(
    ("name", "own_error", "steps"),
    [
        # rank 1's loader fails on batch 7, prefetched during step 5, which stops before its backward pass
        ("loader_fault", "OSError", 5),
        # rank 1's loss fails on call 7, the first of step 3's two micro-batches (the other rank runs both)
        ("micro_fault", "ValueError", 3),
    ],
)
def test_a_failing_rank_stops_every_rank(runs: dict[str, Any], name: str, own_error: str, steps: int) -> None:
    r0, r1 = runs["results"]
    assert r1[name]["type"] == own_error, r1[name]  # the failing rank gets its own error, unchanged
    assert r0[name]["type"] == "RuntimeError" and "rank 1" in r0[name]["message"], r0[name]
    assert r0[name]["steps"] == r1[name]["steps"] == steps


def test_a_rank_whose_snapshot_fails_stops_every_rank_before_training(runs: dict[str, Any]) -> None:
    r0, r1 = runs["results"]
    assert r1["snapshot_fault"]["type"] == "StorageError", r1["snapshot_fault"]
    assert r0["snapshot_fault"]["type"] == "RuntimeError" and "rank 1" in r0["snapshot_fault"]["message"]
    assert r0["snapshot_fault"]["steps"] == r1["snapshot_fault"]["steps"] == 0
    assert r0["snapshot_fault"]["restored"] and r1["snapshot_fault"]["restored"]


def test_a_rank_that_raises_makes_every_process_exit_promptly(runs: dict[str, Any]) -> None:
    r0, r1 = runs["results"]
    assert all(code != 0 for code in runs["codes"]), runs["outputs"]
    assert r1["crash"]["type"] == "ValueError" and "boom" in r1["crash"]["message"]
    assert r0["crash"]["type"] == "RuntimeError" and "rank 1" in r0["crash"]["message"]  # not a timeout
    assert r0["crash"]["steps"] == r1["crash"]["steps"] == 5
    started = min(r0["crash_start"], r1["crash_start"])
    assert max(runs["exits"]) - started < PG_TIMEOUT_S, "a rank waited for the process-group timeout"
    assert "boom" in runs["outputs"][1] and "rank 1" in runs["outputs"][0]


def test_single_process_needs_no_process_group() -> None:
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = Trainer.build(model, opt, None, None, torch.device("cpu"), None, RangeTestSettings())
    assert not lf_dist.is_active() and lf_dist.is_main()
    steps = lf_dist.steps_for(trainer)
    assert type(steps) is LocalSteps and steps.world == 1


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
