"""``lr_finder.integrations.lightning``: ``find_lr`` and ``LRFinderCallback`` with a real LightningModule,
LightningDataModule and Trainer on scikit-learn's digits (CPU, no logger, no checkpoints, no progress bar).

Each test checks the curve or the refusal, and that the module, its buffers and the RNGs come back bit for
bit, so that ``Trainer.fit`` afterwards trains exactly as it would have.
"""

from __future__ import annotations

import importlib
import logging
import random
import sys
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lr_finder.errors import InputError, InputTypeError

from tasks import assert_same_state, digits_tensors, state_of

pl = pytest.importorskip("lightning.pytorch")
pytestmark = pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")  # inside Lightning, not ours

from lr_finder.integrations.lightning import LRFinderCallback, find_lr  # noqa: E402

for _name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # its banner and tips, once per fit
    logging.getLogger(_name).setLevel(logging.ERROR)

X, Y = digits_tensors(512)
RT: dict[str, Any] = {"num_iter": 30, "show_progress": False}


def loader() -> DataLoader:
    return DataLoader(TensorDataset(X, Y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))


class Digits(pl.LightningModule):
    """An MLP with BatchNorm (buffers) and Dropout (RNG), configured in one of Lightning's optimizer forms."""

    def __init__(self, lr: float = 0.01, form: str = "optimizer", as_dict: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(),
                                        torch.nn.Dropout(0.1))
        self.head = torch.nn.Linear(32, 10)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.head(self.body(x)), y)
        self.log("train_loss", loss, prog_bar=True)
        self.log_dict({"step_loss": loss})
        return {"loss": loss} if self.hparams.as_dict else loss

    def configure_optimizers(self) -> Any:
        lr, form = self.hparams.lr, self.hparams.form
        groups = [{"params": self.body.parameters()}, {"params": self.head.parameters(), "lr": lr / 10}]
        opt = torch.optim.SGD(groups, lr=lr, momentum=0.9)
        warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, step / 10))  # factor 0 at first
        if form == "optimizer":
            return opt
        if form == "list":
            return [opt]
        if form == "lists":
            return [opt], [warmup]
        if form == "dict":
            return {"optimizer": opt, "lr_scheduler": {"scheduler": warmup, "interval": "step"}}
        if form == "dicts":
            return ({"optimizer": opt, "lr_scheduler": warmup},)
        if form == "two":
            return [opt, torch.optim.Adam(self.head.parameters())]
        if form == "none":
            return None
        raise ValueError(form)


class DigitsData(pl.LightningDataModule):
    def setup(self, stage: str) -> None:
        self.dataset = TensorDataset(X, Y)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))


def module_state(module: torch.nn.Module) -> dict[str, Any]:
    return state_of(module, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0))


def rng_state() -> tuple[Any, ...]:
    return random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state().tolist()


class Losses(pl.Callback):
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.values.append(float(outputs["loss"]))


def fit(
    module: Any, *callbacks: Any, datamodule: Any = None, seed: bool = True, **options: Any
) -> tuple[list[float], Any]:
    """``Trainer.fit`` for 8 steps (from a fixed seed with ``seed``); the per-step losses and the trainer."""
    losses = Losses()
    if seed:
        pl.seed_everything(0, verbose=False)
    trainer = pl.Trainer(
        max_steps=8, accelerator="cpu", devices=1, enable_progress_bar=False, logger=False,
        enable_checkpointing=False, enable_model_summary=False, callbacks=[*callbacks, losses], **options,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        if datamodule is not None:
            trainer.fit(module, datamodule=datamodule)
        else:
            trainer.fit(module, loader())
    return losses.values, trainer


@pytest.mark.parametrize("form", ["optimizer", "list", "lists", "dict", "dicts"])
def test_every_form_of_configure_optimizers_is_swept_and_the_module_restored(form):
    module = Digits(form=form, as_dict=form != "list")
    before, rng = module_state(module), rng_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # self.log outside a Trainer would warn
        finder = find_lr(module, loader(), **RT)
    history = finder.history
    assert len(history.lr) >= 15 and history.lr[0] == pytest.approx(1e-7)
    # the groups keep the ratio configure_optimizers gave them, not the warm-up's factor 0
    assert history.settings["param_group_ratios"] == pytest.approx([1.0, 0.1])
    assert min(history.loss) < 0.9 * history.loss[0]
    lr = finder.get_suggested_lr()
    assert lr is not None and 1e-7 <= lr <= 1.0
    assert_same_state(before, module_state(module))
    assert rng_state() == rng
    assert "log" not in vars(module) and "log_dict" not in vars(module)


def test_fit_after_find_lr_gives_the_losses_it_would_have_given():
    module = Digits()  # seeds torch: each fit below starts from the same weights and RNG state
    find_lr(module, datamodule=DigitsData(), **RT)
    after_finder, _ = fit(module, seed=False)
    untouched, _ = fit(Digits(), seed=False)
    assert after_finder == untouched and len(untouched) == 8
    # the comparison can fail: one extra random draw changes the shuffling and the dropout masks
    shifted = Digits()
    torch.rand(1)
    assert fit(shifted, seed=False)[0] != untouched


def test_the_callback_trains_with_the_suggestion_as_if_it_had_been_set_by_hand():
    callback = LRFinderCallback(**RT)
    module = Digits(form="dict")
    losses, trainer = fit(module, callback, datamodule=DigitsData())
    assert callback.lr is not None and callback.finder is not None
    assert module.hparams.lr == callback.lr
    # the trainer's optimizer and warm-up scheduler were built again from the new LR
    assert trainer.optimizers[0].param_groups[0]["initial_lr"] == pytest.approx(callback.lr)
    assert trainer.lr_scheduler_configs[0].scheduler.optimizer is trainer.optimizers[0]
    by_hand, _ = fit(Digits(form="dict", lr=callback.lr), datamodule=DigitsData())
    assert losses == by_hand


def test_the_callback_reads_accumulation_precision_and_clipping_from_the_trainer():
    callback = LRFinderCallback(update_attr=False, num_iter=12, end_lr=1e4)
    fit(Digits(), callback, accumulate_grad_batches=2, precision="bf16-mixed", gradient_clip_val=1e-7)
    settings = callback.finder.history.settings
    assert settings["accumulation_steps"] == 2 and settings["amp_dtype"] == "bfloat16"
    assert settings["show_progress"] is False
    # clipped to norm 1e-7 before each step, even lr 1e4 barely moves the weights: no divergence
    assert callback.finder.history.stop_reason is None


class NoOptimizer(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(64, 10)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])


class NoStep(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(64, 10)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Manual(Digits):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False


class NeedsTrainer(Digits):
    def configure_optimizers(self) -> Any:
        steps = self.trainer.estimated_stepping_batches
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        return [opt], [torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=steps)]


class SkipsBatches(Digits):
    """Skips the 4th batch it is given (before any forward pass, so that no RNG is drawn), or every batch."""

    def __init__(self, skip_all: bool = False) -> None:
        super().__init__()
        self.skip_all = skip_all

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        return None if self.skip_all or batch_idx == 3 else super().training_step(batch, batch_idx)


@pytest.mark.parametrize(
    ("module", "kwargs", "error", "match"),
    [
        (NoOptimizer(), {"train_dataloaders": loader()}, InputError, "does not define configure_optimizers"),
        (NoStep(), {"train_dataloaders": loader()}, InputError, "does not define training_step"),
        (Digits(form="two"), {"train_dataloaders": loader()}, InputError, "returned 2 optimizers"),
        (Digits(form="none"), {"train_dataloaders": loader()}, InputError, "returned 0 optimizers"),
        (Manual(), {"train_dataloaders": loader()}, InputError, "manual optimization"),
        (NeedsTrainer(), {"train_dataloaders": loader()}, InputError, "LRFinderCallback"),
        (Digits(), {}, InputError, "no training data"),
        (Digits(), {"train_dataloaders": [loader(), loader()]}, InputError, "2 train loaders"),
        (Digits(), {"train_dataloaders": loader(), "datamodule": DigitsData()}, InputError, "not both"),
        (Digits(), {"datamodule": loader()}, InputTypeError, "LightningDataModule"),
        (torch.nn.Linear(64, 10), {"train_dataloaders": loader()}, InputTypeError, "LightningModule"),
    ],
)
def test_bad_input_is_refused_before_training_and_changes_nothing(module, kwargs, error, match):
    before, rng = module_state(module), rng_state()
    with pytest.raises(error, match=match):
        find_lr(module, **kwargs, **RT)
    assert_same_state(before, module_state(module))
    assert rng_state() == rng


def test_a_batch_whose_training_step_returns_none_is_skipped_as_lightning_skips_it(caplog):
    batches = DataLoader(TensorDataset(X, Y), batch_size=32)  # in order: the 4th batch is samples 96-127
    kept = DataLoader(TensorDataset(torch.cat([X[:96], X[128:]]), torch.cat([Y[:96], Y[128:]])), batch_size=32)
    module = SkipsBatches()
    before = module_state(module)
    with caplog.at_level(logging.WARNING, logger="lr_finder"):
        skipping = find_lr(module, batches, num_iter=10, show_progress=False)
    assert "returned None (skip) for 1 batch" in caplog.text
    assert_same_state(before, module_state(module))
    assert "log" not in vars(module)
    # no step and no point for the skipped batch: the curve of a loader without it, the same length
    reference = find_lr(Digits(), kept, num_iter=10, show_progress=False)
    assert skipping.history.raw_loss == reference.history.raw_loss and skipping.history.num_steps == 10
    assert skipping.history.settings["skipped_batches"] == 1
    assert reference.history.settings["skipped_batches"] == 0


def test_a_training_step_that_skips_every_batch_is_refused_and_the_module_restored():
    module = SkipsBatches(skip_all=True)
    before = module_state(module)
    with pytest.raises(InputError, match="returned None for every batch"):
        find_lr(module, loader(), **RT)
    assert_same_state(before, module_state(module))


def test_find_lr_verifies_the_suggestion_on_the_same_loader_when_asked():
    module = Digits()
    before, rng = module_state(module), rng_state()
    plain = find_lr(module, loader(), **RT)
    assert plain.verification is None  # off by default
    finder = find_lr(module, loader(), verify=True, **RT)
    assert finder.history.raw_loss == plain.history.raw_loss  # the same range test first
    checked = finder.verification
    assert checked is not None and checked.extra_steps > 0 and len(checked.trials) >= 2
    assert checked.lr is not None
    assert_same_state(before, module_state(module))
    assert rng_state() == rng
    with pytest.raises(InputTypeError, match="verify"):
        find_lr(module, loader(), verify="yes", **RT)


def test_the_callback_applies_the_verified_lr_when_asked():
    callback = LRFinderCallback(verify=True, **RT)
    module = Digits(form="dict")
    losses, trainer = fit(module, callback, datamodule=DigitsData())
    checked = callback.finder.verification
    assert checked is not None and checked.lr is not None
    assert callback.lr == checked.lr and module.hparams.lr == checked.lr
    assert trainer.optimizers[0].param_groups[0]["initial_lr"] == pytest.approx(checked.lr)
    by_hand, _ = fit(Digits(form="dict", lr=checked.lr), datamodule=DigitsData())
    assert losses == by_hand


@pytest.mark.filterwarnings("ignore:You.re resuming from a checkpoint that ended before the epoch ended")
def test_a_resumed_fit_skips_the_search_and_trains_at_the_checkpoints_lr(tmp_path):
    module = Digits(form="dict")
    _, first = fit(module)
    path = tmp_path / "last.ckpt"
    first.save_checkpoint(path)
    resumed, callback = Digits(form="dict"), LRFinderCallback(**RT)
    trainer = pl.Trainer(
        max_steps=12, accelerator="cpu", devices=1, enable_progress_bar=False, logger=False,
        enable_checkpointing=False, enable_model_summary=False, callbacks=[callback],
    )
    with pytest.warns(UserWarning, match="resumes from .*the LR range test is skipped"):
        trainer.fit(resumed, loader(), ckpt_path=path)
    assert callback.finder is None and callback.lr is None
    assert resumed.hparams.lr == 0.01  # nothing written that the run does not train with
    assert trainer.optimizers[0].param_groups[0]["initial_lr"] == 0.01 and trainer.global_step == 12


class FixedLR(NoOptimizer):
    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_callback_refuses_a_module_without_an_lr_attribute_before_training():
    module = FixedLR()
    before = module_state(module)
    with pytest.raises(InputError, match="no 'lr' or 'learning_rate'"):
        fit(module, LRFinderCallback(**RT))
    assert_same_state(before, module_state(module))


def test_without_lightning_the_import_names_the_extra(monkeypatch):
    for name in [n for n in sys.modules if n == "lightning" or n.startswith("lightning.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "lr_finder.integrations.lightning")
    with pytest.raises(ImportError) as info:
        importlib.import_module("lr_finder.integrations.lightning")
    message = str(info.value)
    assert "pip install 'lr-finder[lightning]'" in message and "\n" not in message


def test_the_callback_refuses_a_sharding_strategy_before_training():
    """FSDP / DeepSpeed / model-parallel strategies wrap the model and optimizer only inside fit (and need a GPU
    to build a Trainer), so the check is run on a real strategy object in a stand-in for the Trainer."""
    import types

    from lightning.pytorch.strategies import FSDPStrategy

    module = FixedLR()
    before = module_state(module)
    trainer = types.SimpleNamespace(fast_dev_run=False, world_size=1, strategy=FSDPStrategy())
    with pytest.raises(InputError, match="FSDPStrategy"):
        LRFinderCallback(**RT).find(trainer, module)
    assert_same_state(before, module_state(module))


# -- LRFinderCallback inside a DDP fit: 2 processes, gloo on CPU (tests/spawn.py launches them) -----------------
class StateProbe(pl.Callback):
    """Put before and after the LRFinderCallback: the module's state when fit starts, and whether the range test
    left it so."""

    def __init__(self, before: StateProbe | None = None) -> None:
        self.before = before
        self.state: dict[str, Any] | None = None
        self.same: bool | None = None

    def on_fit_start(self, trainer: Any, module: Any) -> None:
        self.state = module_state(module)
        if self.before is not None:
            try:
                assert_same_state(self.before.state, self.state)
                self.same = True
            except AssertionError:
                self.same = False


def _ddp_worker(out: Any) -> None:
    import json
    import os

    from spawn import scenario

    def fit_with_the_callback() -> dict[str, Any]:
        before = StateProbe()
        after, callback, losses = StateProbe(before), LRFinderCallback(num_iter=20, show_progress=False), Losses()
        module = Digits(form="dict")
        trainer = pl.Trainer(
            max_steps=4, accelerator="cpu", devices=2, strategy="ddp", enable_progress_bar=False, logger=False,
            enable_checkpointing=False, enable_model_summary=False, callbacks=[before, callback, after, losses],
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            trainer.fit(module, datamodule=DigitsData())
        history = callback.finder.history
        return {
            "lr": callback.lr, "hparams_lr": module.hparams.lr, "world_size": history.settings["world_size"],
            "curve": list(history.raw_loss), "restored": after.same, "losses": losses.values,
            "initial_lr": trainer.optimizers[0].param_groups[0]["initial_lr"],
            "weights": [float(p.double().sum()) for p in module.parameters()],
        }

    result: dict[str, Any] = {}
    scenario(result, "fit", fit_with_the_callback)
    (out / f"result_rank{os.environ['RANK']}.json").write_text(json.dumps(result))


def test_the_callback_in_a_ddp_fit_runs_the_ranks_in_lock_step(tmp_path):
    import time

    import spawn

    started = time.monotonic()
    procs = spawn.start(__file__, tmp_path)
    outputs, _ = spawn.wait(procs, started)
    r0, r1 = (r["fit"] for r in spawn.results(tmp_path, outputs))
    assert r0["world_size"] == 2 and len(r0["curve"]) >= 15
    assert r0["curve"] == r1["curve"] and r0["lr"] == r1["lr"] is not None  # one curve, one suggestion
    assert r0["restored"] is True and r1["restored"] is True  # each rank its own state, bit for bit
    for r in (r0, r1):  # the fit then trained with the suggestion, in step
        assert r["hparams_lr"] == r["lr"] and r["initial_lr"] == pytest.approx(r["lr"])
        assert len(r["losses"]) == 4 and all(np.isfinite(r["losses"]))
    assert r0["weights"] == r1["weights"]


if __name__ == "__main__":
    from pathlib import Path

    _ddp_worker(Path(sys.argv[1]))
