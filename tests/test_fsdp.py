"""The range test on FSDP2 (``fully_shard``) models: 2 processes, gloo on CPU, loopback only.

One launch for the whole file, as in ``test_distributed.py``: the fixture starts this file as a script once
per rank in a ``torchrun``-style environment; each worker runs every scenario in one process group (the
faults included: a rank that fell out of step would hang the next scenario) and writes what it saw to
``result_rank{r}.json``. A short process-group timeout and a hard timeout on the processes turn a hang into
a failure.

The model is the tutorials' layout: ``fully_shard`` on each hidden layer, then on the root, which keeps the
output layer's parameters itself (so the root's own parameters stay unsharded after a forward pass with no
backward, the case a restore must handle).
"""

from __future__ import annotations

import json
import math
import os
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

NUM_ITER = 30
RANGE: dict[str, Any] = {"start_lr": 1e-4, "end_lr": 10.0, "show_progress": False}

pytestmark = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()), reason="needs gloo"
)


def mlp(seed: int = 0, widths: tuple[int, int] = (33, 17)) -> torch.nn.Module:
    """Odd widths by default, so that the shards are uneven (FSDP pads them)."""
    torch.manual_seed(seed)
    a, b = widths
    return torch.nn.Sequential(
        torch.nn.Linear(64, a), torch.nn.ReLU(), torch.nn.Linear(a, b), torch.nn.ReLU(), torch.nn.Linear(b, 10)
    )


# -- the worker (one per rank, in the spawned processes) ---------------------------------------------
def _local_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """This rank's shards of everything a range test changes, as plain tensors (no collective)."""
    from torch.distributed.tensor import DTensor

    def local(t: torch.Tensor) -> torch.Tensor:
        return (t.to_local() if isinstance(t, DTensor) else t).detach().clone()

    out: dict[str, Any] = {}
    for name, p in model.named_parameters():
        out[f"param.{name}"] = local(p)
        out[f"grad.{name}"] = None if p.grad is None else local(p.grad)
        out[f"grad_type.{name}"] = type(p.grad).__name__
        out[f"type.{name}"] = type(p).__name__
    for name, b in model.named_buffers():
        out[f"buffer.{name}"] = local(b)
    for name, m in model.named_modules():
        out[f"training.{name}"] = m.training
    for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"]):
        for key, value in optimizer.state.get(p, {}).items():
            out[f"opt.{i}.{key}"] = local(value) if isinstance(value, torch.Tensor) else value
            out[f"opt_type.{i}.{key}"] = type(value).__name__
    for i, g in enumerate(optimizer.param_groups):
        out.update({f"group.{i}.{k}": v for k, v in g.items() if k != "params"})
    return out


def _same(before: dict[str, Any], after: dict[str, Any]) -> bool:
    from tasks import assert_same_state

    assert_same_state(before, after)
    return True


def _worker(out: Path) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset

    from lr_finder import distributed as lf_dist
    from lr_finder.settings import RangeTestSettings
    from lr_finder.sharding import reset_sharded
    from lr_finder.snapshot import capture
    from lr_finder.training import Trainer

    def tensors_in(obj: Any) -> list[torch.Tensor]:
        if isinstance(obj, torch.Tensor):
            return [obj]
        values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else []
        return [t for v in values for t in tensors_in(v)]

    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=PG_TIMEOUT_S))
    rank = dist.get_rank()
    result: dict[str, Any] = {"rank": rank}
    x, y = torch.load(out / "digits.pt")  # loaded by the parent: no scikit-learn import per rank
    ds = TensorDataset(x[:512], y[:512])
    val = Subset(TensorDataset(x, y), range(512, 640))

    class Collectives(TorchDispatchMode):
        """Every collective issued while active, by op name (c10d and functional collectives alike)."""

        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            if func.namespace in ("c10d", "_c10d_functional"):
                self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    def sharded_mlp(seed: int = 0, mp: Any = None) -> torch.nn.Module:
        model = mlp(seed)
        kwargs = {} if mp is None else {"mp_policy": mp}
        for layer in (model[0], model[2]):
            fully_shard(layer, **kwargs)
        return fully_shard(model, **kwargs)

    def loader(data: Any, batch_size: int) -> DataLoader:
        return DataLoader(data, batch_size=batch_size, sampler=DistributedSampler(data, shuffle=False))

    def train(model: torch.nn.Module, opt: torch.optim.Optimizer, steps: int, batches: Any = None) -> list[float]:
        losses = []
        for _, (xb, yb) in zip(range(steps), batches or loader(ds, 16), strict=False):
            opt.zero_grad()  # the last step's gradients stay, as they would mid-training
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    def history(h: Any) -> dict[str, Any]:
        return {"lr": list(h.lr), "loss": list(h.loss), "raw": list(h.raw_loss), "stop": h.stop_reason}

    def ce_loss(fail_at: int | None = None):
        """Cross-entropy as a ``loss_fn``; on rank 1, call ``fail_at`` raises (after the forward pass)."""
        calls = [0]

        def loss_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
            calls[0] += 1
            inputs, targets = batch
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            if rank == 1 and calls[0] == fail_at:
                raise ValueError(f"boom in the loss on rank {rank} at call {calls[0]}")
            return loss

        return loss_fn

    def curve() -> dict[str, Any]:
        """The same model and data sharded and under DDP: both curves, and the restored state."""
        model = sharded_mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        train(model, opt, 2)  # momentum buffers and gradients exist, as they would mid-training
        before = _local_state(model, opt)
        finder = LRFinder(model, opt, torch.nn.CrossEntropyLoss())
        h = finder.range_test(loader(ds, 16), num_iter=NUM_ITER, **RANGE)
        lr = finder.suggestion().lr
        finder.save(out / f"rank{rank}")
        checked = finder.verify(loader(ds, 16), factors=(0.5, 1.0), steps=5)  # short runs, in lock-step too
        fsdp = {**history(h), "suggestion": lr, "restored": _same(before, _local_state(model, opt)),
                "verified": [checked.lr, [t.score for t in checked.trials]]}
        ddp = DDP(mlp())
        ddp_opt = torch.optim.SGD(ddp.parameters(), lr=0.01, momentum=0.9)
        train(ddp, ddp_opt, 2)
        ddp_finder = LRFinder(ddp, ddp_opt, torch.nn.CrossEntropyLoss())
        ddp_h = ddp_finder.range_test(loader(ds, 16), num_iter=NUM_ITER, **RANGE)
        return {"fsdp": fsdp, "ddp": {**history(ddp_h), "suggestion": ddp_finder.suggestion().lr},
                "world_size": h.settings.get("world_size")}

    def snapshot_is_local() -> dict[str, Any]:
        """A snapshot holds this rank's shards only, issues no collective, and restores in place."""
        model = sharded_mlp()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        train(model, opt, 2)
        full = sum(p.numel() * p.element_size() for p in mlp().parameters())
        shards = [t.to_local() if hasattr(t, "to_local") else t for p in model.parameters()
                  for t in (p, p.grad, *opt.state[p].values())]  # value, gradient, step, exp_avg, exp_avg_sq
        local = sum(t.numel() * t.element_size() for t in shards)
        with Collectives() as seen:
            reset_sharded(model)
            snap = capture(model, opt)
            disk = capture(model, opt, memory_cache=False, cache_dir=out / "snapshot_cache")
        captured_ops = seen.ops
        before = _local_state(model, opt)
        storages = [p.to_local().untyped_storage().data_ptr() for p in model.parameters()]
        restored_ops, restored = [], []
        for saved in (snap, disk):
            train(model, opt, 1)
            with Collectives() as seen:
                saved.restore()
            restored_ops += seen.ops
            restored.append(_same(before, _local_state(model, opt)))
        disk_nbytes = os.path.getsize(disk.store.path)  # the raw bytes of every saved tensor
        disk.close()
        opt.state.clear()  # gradients and optimizer state gone: restored as new DTensors of the same layout
        opt.zero_grad(set_to_none=True)
        snap.restore()
        restored.append(_same(before, _local_state(model, opt)))
        train(model, opt, 1)  # and FSDP and Adam take them as their own
        same_storage = storages == [p.to_local().untyped_storage().data_ptr() for p in model.parameters()]
        with Collectives() as control:  # the counter does see a gather
            next(model.parameters()).full_tensor()
        return {
            "nbytes": sum(t.numel() * t.element_size() for t in tensors_in(snap.saved)),
            "disk_nbytes": disk_nbytes, "local_bytes": local, "full_param_bytes": full,
            "ops": captured_ops + restored_ops, "same_storage": same_storage, "control_ops": len(control.ops),
            "restored": restored == [True, True, True],
        }

    def collectives_per_step() -> dict[str, Any]:
        model = sharded_mlp()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        finder = LRFinder(model, opt, torch.nn.CrossEntropyLoss())
        with Collectives() as seen:
            h = finder.range_test(loader(ds, 16), num_iter=5, **RANGE)
        counts: dict[str, int] = {}
        for op in seen.ops:
            counts[op] = counts.get(op, 0) + 1
        def steps(m: torch.nn.Module) -> Any:
            settings = RangeTestSettings(use_amp=False)
            return lf_dist.steps_for(Trainer.build(m, opt, None, None, torch.device("cpu"), None, settings))

        per_micro_batch = {  # where the failure check runs before every micro-batch's backward pass
            "fsdp": steps(model).every_micro_batch,
            "ddp": steps(DDP(mlp())).every_micro_batch,  # no_sync: no collective to guard
        }
        return {"steps": len(h.lr), "counts": counts, "per_micro_batch": per_micro_batch}

    def disk_validation_then_training() -> dict[str, Any]:
        """Adam on disk, validation and accumulation; then training goes on exactly as without the test."""
        model, twin = sharded_mlp(), sharded_mlp()
        opt, twin_opt = (torch.optim.Adam(m.parameters(), lr=1e-3) for m in (model, twin))
        train(model, opt, 2)
        train(twin, twin_opt, 2)
        before = _local_state(model, opt)
        cache = out / "cache"
        own: list[str] = []
        base = ce_loss()

        def loss_fn(m: torch.nn.Module, batch: Any) -> torch.Tensor:
            if not own:  # during the sweep: where this rank's snapshot is, and what its folder holds
                folder = Path(finder._snapshot.store.path).parent
                own.extend([str(folder.relative_to(cache)), *(p.name for p in folder.iterdir())])
            return base(m, batch)

        finder = LRFinder(model, opt, None, loss_fn=loss_fn, memory_cache=False, cache_dir=cache)
        h = finder.range_test(loader(ds, 8), num_iter=8, accumulation_steps=2, val_loader=loader(val, 32), **RANGE)
        restored = _same(before, _local_state(model, opt))
        after = train(model, opt, 3)
        plain = train(twin, twin_opt, 3)
        return {
            **history(h), "restored": restored, "own": own, "left": sorted(map(str, cache.rglob("*"))),
            "after": after, "plain": plain, "same_after": _same(_local_state(twin, twin_opt), _local_state(model, opt)),
        }

    def fault(loss_fail_at: int, accumulation: int, memory_cache: bool) -> dict[str, Any]:
        model = sharded_mlp(3)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        train(model, opt, 1)
        before = _local_state(model, opt)
        finder = LRFinder(model, opt, None, loss_fn=ce_loss(fail_at=loss_fail_at), memory_cache=memory_cache)
        kwargs = {"num_iter": NUM_ITER, "accumulation_steps": accumulation, **RANGE}
        err = caught(lambda: finder.range_test(loader(ds, 16), **kwargs))
        restored = _same(before, _local_state(model, opt))
        return {**err, "steps": len(finder.history.lr), "restored": restored, "then": train(model, opt, 2)}

    def tensor_parallel() -> dict[str, Any]:
        """Tensor parallelism alone: both ranks see the same batches; the curve is one process's curve."""
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

        plan = {"0": ColwiseParallel(), "2": RowwiseParallel()}
        even = (32, 16)  # the tensor-parallel matmuls of torch 2.13 need even shards
        tp = parallelize_module(mlp(widths=even), init_device_mesh("cpu", (WORLD,)), plan)
        opt = torch.optim.SGD(tp.parameters(), lr=0.01, momentum=0.9)
        whole = DataLoader(ds, batch_size=32)  # no sampler: tensor-parallel ranks share each batch
        train(tp, opt, 1, whole)
        before = _local_state(tp, opt)
        h = LRFinder(tp, opt, torch.nn.CrossEntropyLoss()).range_test(whole, num_iter=NUM_ITER, **RANGE)
        restored = _same(before, _local_state(tp, opt))
        plain = mlp(widths=even)
        plain_opt = torch.optim.SGD(plain.parameters(), lr=0.01, momentum=0.9)
        train(plain, plain_opt, 1, whole)
        single = LRFinder(plain, plain_opt, torch.nn.CrossEntropyLoss()).range_test(whole, num_iter=NUM_ITER, **RANGE)
        return {"tp": history(h), "single": history(single), "restored": restored}

    def mixed_precision() -> dict[str, Any]:
        """A bf16 MixedPrecisionPolicy (with and without use_amp), and our bf16 autocast alone."""
        out_: dict[str, Any] = {}
        bf16 = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for name, policy, amp_kwargs in (
            ("policy", bf16, {"use_amp": False}),
            ("policy_and_use_amp", bf16, {"use_amp": True, "amp_dtype": torch.bfloat16}),
            ("autocast", None, {"use_amp": True, "amp_dtype": torch.bfloat16}),
        ):
            model = sharded_mlp(mp=policy)
            opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            train(model, opt, 1)
            before = _local_state(model, opt)
            h = LRFinder(model, opt, torch.nn.CrossEntropyLoss()).range_test(
                loader(ds, 16), num_iter=12, **amp_kwargs, **RANGE
            )
            out_[name] = {**history(h), "restored": _same(before, _local_state(model, opt)),
                          "dtype": str(next(model.parameters()).dtype)}
        return out_

    def refusals() -> dict[str, Any]:
        found: dict[str, Any] = {}
        try:
            from torch.distributed.fsdp import FullyShardedDataParallel

            fsdp1 = FullyShardedDataParallel(mlp(), device_id=torch.device("cpu"))
        except Exception as exc:  # FSDP1 on CPU needs a recent torch
            found["fsdp1"] = {"skipped": f"FullyShardedDataParallel unavailable on CPU here: {exc!r}"}
        else:
            fsdp1_finder = LRFinder(fsdp1, torch.optim.SGD(fsdp1.parameters(), lr=0.01), torch.nn.CrossEntropyLoss())
            found["fsdp1"] = caught(lambda: fsdp1_finder.range_test(loader(ds, 16), num_iter=5, **RANGE))
        return found

    scenario(result, "curve", curve)
    scenario(result, "snapshot", snapshot_is_local)
    scenario(result, "collectives", collectives_per_step)
    scenario(result, "disk", disk_validation_then_training)
    scenario(result, "loss_fault", lambda: fault(loss_fail_at=7, accumulation=1, memory_cache=True))
    scenario(result, "micro_fault_disk", lambda: fault(loss_fail_at=7, accumulation=2, memory_cache=False))
    scenario(result, "tensor_parallel", tensor_parallel)
    scenario(result, "mixed_precision", mixed_precision)
    scenario(result, "refusals", refusals)
    dist.barrier()  # the group still works after the faults: no rank fell out of step
    (out / f"result_rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


# -- the launcher ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from tasks import digits_tensors

    out = tmp_path_factory.mktemp("fsdp")
    x, y = digits_tensors(640)
    torch.save((x, y), out / "digits.pt")
    outputs, _ = spawn.wait(spawn.start(__file__, out), time.monotonic())
    results = spawn.results(out, outputs)
    return {"out": out, "results": results, "outputs": outputs}


def test_ranks_record_the_same_curve_and_suggestion(runs: dict[str, Any]) -> None:
    r0, r1 = runs["results"]
    a, b = r0["curve"]["fsdp"], r1["curve"]["fsdp"]
    assert len(a["lr"]) >= 15, a
    assert a == b  # exact: every rank holds the same all-reduced sums, verify()'s runs too
    assert a["suggestion"] is not None and r0["curve"]["world_size"] == WORLD
    assert len(a["verified"][1]) == 2 and all(math.isfinite(v) for v in a["verified"][1]), a["verified"]


def test_the_sharded_curve_is_the_ddp_curve(runs: dict[str, Any]) -> None:
    fsdp, ddp = runs["results"][0]["curve"]["fsdp"], runs["results"][0]["curve"]["ddp"]
    n = min(len(fsdp["lr"]), len(ddp["lr"]))
    assert n >= 15 and abs(len(fsdp["lr"]) - len(ddp["lr"])) <= 1
    assert fsdp["lr"][:n] == ddp["lr"][:n]
    # the same arithmetic in another order (reduce-scatter vs all-reduce of gradients): float rounding
    # only, until the divergence near the end amplifies it
    assert fsdp["raw"][: n - 3] == pytest.approx(ddp["raw"][: n - 3], rel=1e-5)
    assert abs(math.log(fsdp["suggestion"] / ddp["suggestion"])) < math.log(1.05), (fsdp, ddp)


def test_only_rank_0_writes_files(runs: dict[str, Any]) -> None:
    out = runs["out"]
    names = sorted(p.name for p in (out / "rank0").iterdir())
    assert names == ["best_lr.txt", "lr_finder_log.csv", "lr_finder_summary.json"]
    assert not (out / "rank1").exists()


def test_every_rank_is_restored_bit_for_bit(runs: dict[str, Any]) -> None:
    for res in runs["results"]:
        assert res["curve"]["fsdp"]["restored"] is True
        for name in ("snapshot", "disk", "loss_fault", "micro_fault_disk"):
            assert res[name]["restored"] is True, (res["rank"], name)


def test_the_snapshot_holds_one_copy_of_this_ranks_shards_and_gathers_nothing(runs: dict[str, Any]) -> None:
    for res in runs["results"]:
        snap = res["snapshot"]
        # parameters, gradients and Adam's state: this rank's shards, in memory and on disk alike
        assert snap["nbytes"] == snap["disk_nbytes"] == snap["local_bytes"], snap
        assert snap["local_bytes"] < 4 * snap["full_param_bytes"] * 0.6, snap  # about half of 4 copies
        assert snap["ops"] == [] and snap["same_storage"], snap  # no collective in capture or restore
        assert snap["control_ops"] > 0, snap  # which the counter would have seen


def test_one_scalar_all_reduce_per_step_besides_fsdps_own(runs: dict[str, Any]) -> None:
    for res in runs["results"]:
        c = res["collectives"]
        assert c["steps"] == 5
        # one all-reduce before the first step (its batches checked on every rank), then one per step
        assert c["counts"].get("c10d.allreduce_.default") == c["steps"] + 1, c
        assert c["per_micro_batch"] == {"fsdp": True, "ddp": False}, c
        assert set(c["counts"]) == {
            "c10d.allreduce_.default", "c10d._allgather_base_.default", "c10d._reduce_scatter_base_.default"
        }, c


def test_disk_snapshot_per_rank_and_training_continues_exactly(runs: dict[str, Any]) -> None:
    r0, r1 = runs["results"]
    for res in (r0, r1):
        d = res["disk"]
        assert len(d["own"]) > 1 and "/" not in d["own"][0], d["own"]  # a folder of its own in cache_dir
        assert d["left"] == [], d["left"]  # every rank deleted its own
        assert d["after"] == d["plain"] and d["same_after"] is True
    assert r0["disk"]["lr"] == r1["disk"]["lr"] and r0["disk"]["loss"] == r1["disk"]["loss"]
    assert r0["disk"]["own"][0] != r1["disk"]["own"][0]


@pytest.mark.parametrize(
    ("name", "steps"),
    [
        ("loss_fault", 6),  # rank 1's loss fails on call 7: step 7, after 6 recorded steps
        ("micro_fault_disk", 3),  # call 7 is the first micro-batch of step 4 (2 per step)
    ],
)
def test_a_failing_rank_stops_every_rank(runs: dict[str, Any], name: str, steps: int) -> None:
    r0, r1 = runs["results"]
    assert r1[name]["type"] == "ValueError" and "boom" in r1[name]["message"], r1[name]
    assert r0[name]["type"] == "RuntimeError" and "rank 1" in r0[name]["message"], r0[name]
    assert r0[name]["steps"] == r1[name]["steps"] == steps
    assert all(math.isfinite(v) for v in r0[name]["then"] + r1[name]["then"])  # and training goes on


def test_mixed_precision_policy_or_autocast_runs_and_restores(runs: dict[str, Any]) -> None:
    r0, r1 = runs["results"]
    for name in ("policy", "policy_and_use_amp", "autocast"):
        a, b = r0["mixed_precision"][name], r1["mixed_precision"][name]
        assert a == b and len(a["lr"]) == 12 and all(math.isfinite(v) for v in a["raw"]), (name, a)
        assert a["restored"] is True and a["dtype"] == "torch.float32", a  # the shards stay in fp32
    mp = r0["mixed_precision"]
    # the policy decides: our autocast stays off (on top, it would compute the loss in fp32, not bf16)
    assert mp["policy_and_use_amp"]["raw"] == mp["policy"]["raw"]
    # bf16 compute, two ways: the same curve to bf16 rounding, not bit for bit
    assert mp["policy"]["raw"][:6] == pytest.approx(mp["autocast"]["raw"][:6], rel=2e-2)
    assert mp["policy"]["raw"] != mp["autocast"]["raw"]


def test_tensor_parallel_curve_is_the_one_process_curve(runs: dict[str, Any]) -> None:
    r0, r1 = runs["results"]
    assert r0["tensor_parallel"]["tp"] == r1["tensor_parallel"]["tp"]
    tp, single = r0["tensor_parallel"]["tp"], r0["tensor_parallel"]["single"]
    n = min(len(tp["lr"]), len(single["lr"]))
    assert n >= 15 and abs(len(tp["lr"]) - len(single["lr"])) <= 1
    assert tp["raw"][: n - 3] == pytest.approx(single["raw"][: n - 3], rel=1e-5)
    assert r0["tensor_parallel"]["restored"] is True and r1["tensor_parallel"]["restored"] is True


def test_fsdp1_is_refused_saying_what_is_supported(runs: dict[str, Any]) -> None:
    for res in runs["results"]:
        found = res["refusals"]["fsdp1"]
        if "skipped" in found:
            pytest.skip(found["skipped"])
        assert found["type"] == "InputTypeError", found
        assert "FullyShardedDataParallel" in found["message"] and "fully_shard" in found["message"], found
        assert "DistributedDataParallel" in found["message"] and "\n" not in found["message"], found


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
