"""``lr_finder.integrations.transformers.find_lr`` with a real Hugging Face ``Trainer``, offline.

A tiny BERT built from a config (no download) classifies scikit-learn's digits, pooled to 4x4 and read as
16 tokens. Each test checks what the trainer would have done (its optimizer, loss, accumulation, clipping,
precision) and that the trainer, its model and the RNGs are left exactly as they were.
"""

from __future__ import annotations

import importlib
import os
import random
import sys
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the hub, whatever a test does
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lr_finder.errors import InputError, InputTypeError  # noqa: E402

from tasks import assert_same_state, digits_tensors, state_of  # noqa: E402

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
transformers.logging.set_verbosity_error()

from lr_finder.integrations.transformers import find_lr  # noqa: E402

RT: dict[str, Any] = {"num_iter": 60, "start_lr": 1e-4, "end_lr": 1.0}


def digit_records(n: int = 256) -> list[dict[str, torch.Tensor]]:
    """``{"input_ids", "labels"}`` per digit: a [CLS] token (18), its 16 pooled grey levels (1..17), and the
    label as a token of its own: a cue a one-layer BERT picks up within a short sweep, so that the curve
    really descends (on the grey levels alone its loss stays at ln 10 for the few dozen steps a test takes,
    and "no descent" would be the right answer)."""
    x, y = digits_tensors(n)
    pooled = torch.nn.functional.avg_pool2d((x * 16).reshape(-1, 1, 8, 8), 2).round().long().reshape(-1, 16)
    ids = torch.cat([torch.full((len(x), 1), 18), y[:, None] + 1, pooled[:, 1:] + 1], dim=1)
    return [{"input_ids": i, "labels": label} for i, label in zip(ids, y, strict=True)]


RECORDS = digit_records()


def tiny_bert() -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=20, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32, num_labels=10,
    )
    return transformers.BertForSequenceClassification(config)


def make_trainer(
    tmp_path: Any, cls: Any = None, optimizers: Any = (None, None), model: Any = None, **args: Any
) -> Any:
    options = dict(
        use_cpu=True, report_to=[], per_device_train_batch_size=32, max_steps=6, logging_steps=1,
        save_strategy="no", disable_tqdm=True, learning_rate=1e-3, weight_decay=0.01, seed=0,
    )
    options.update(args)
    training_args = transformers.TrainingArguments(str(tmp_path / "out"), **options)
    return (cls or transformers.Trainer)(
        model=model if model is not None else tiny_bert(), args=training_args, train_dataset=RECORDS,
        optimizers=optimizers,
    )


def model_state(model: torch.nn.Module) -> dict[str, Any]:
    """Parameters, buffers, gradients, requires_grad and train/eval modes (an optimizer with nothing in it)."""
    return state_of(model, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0))


def rng_state() -> tuple[Any, ...]:
    return random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state().tolist()


def train_losses(trainer: Any) -> list[float]:
    trainer.train()
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def test_find_lr_uses_the_optimizer_the_trainer_builds_and_leaves_the_trainer_as_found(tmp_path):
    trainer = make_trainer(tmp_path, gradient_accumulation_steps=2)
    before, rng = model_state(trainer.model), rng_state()
    prepared = len(trainer.accelerator._dataloaders)

    finder = find_lr(trainer, **RT)

    # the optimizer create_optimizer builds: AdamW from TrainingArguments, decay and no-decay groups
    assert type(finder.optimizer) is torch.optim.AdamW
    assert [g["weight_decay"] for g in finder.optimizer.param_groups] == [0.01, 0.0]
    biases = {id(p) for n, p in trainer.model.named_parameters() if n.endswith("bias")}
    assert biases <= {id(p) for p in finder.optimizer.param_groups[1]["params"]}
    settings = finder.history.settings
    assert settings["accumulation_steps"] == 2 and settings["param_group_ratios"] == [1.0, 1.0]
    assert settings["show_progress"] is False  # disable_tqdm=True
    assert len(finder.history.lr) >= 12
    lr = finder.get_suggested_lr()
    assert lr is not None and 1e-7 <= lr <= 10.0
    # nothing changed: the model bit for bit, no optimizer or scheduler left behind, RNGs, the accelerator
    assert_same_state(before, model_state(trainer.model))
    assert trainer.optimizer is None and trainer.lr_scheduler is None
    assert rng_state() == rng
    assert len(trainer.accelerator._dataloaders) == prepared


def test_training_after_find_lr_gives_the_losses_it_would_have_given(tmp_path):
    found = make_trainer(tmp_path)
    find_lr(found, **RT)
    after_finder = train_losses(found)
    untouched = train_losses(make_trainer(tmp_path))
    assert after_finder == untouched  # exact: same weights, optimizer built fresh, same dropout and shuffling
    # the comparison can fail: one extra random draw before training changes the dropout masks
    shifted = make_trainer(tmp_path)
    torch.rand(1)
    assert train_losses(shifted) != untouched


def test_the_suggestion_is_applied_through_the_training_arguments(tmp_path):
    trainer = make_trainer(tmp_path)
    lr = find_lr(trainer, **RT).get_suggested_lr()
    assert lr is not None
    trainer.args.learning_rate = lr
    trainer.train()
    assert trainer.optimizer.param_groups[0]["initial_lr"] == pytest.approx(lr)


class ScaledLossTrainer(transformers.Trainer):
    """A subclass with its own loss, written against the older ``compute_loss`` signature."""

    calls = 0

    def compute_loss(self, model, inputs, return_outputs=False):  # type: ignore[override]
        ScaledLossTrainer.calls += 1
        return 10.0 * model(**inputs).loss


def test_the_loss_is_the_trainers_compute_loss(tmp_path):
    ScaledLossTrainer.calls = 0
    plain = find_lr(make_trainer(tmp_path), num_iter=12, end_lr=1e-3)
    scaled = find_lr(make_trainer(tmp_path, cls=ScaledLossTrainer), num_iter=12, end_lr=1e-3)
    assert ScaledLossTrainer.calls == 12
    # the same first batch and weights: the subclass's loss is ten times the model's
    assert scaled.history.raw_loss[0] == pytest.approx(10 * plain.history.raw_loss[0], rel=1e-5)


def test_label_smoothing_goes_through_the_trainers_label_smoother(tmp_path):
    trainer = make_trainer(tmp_path, label_smoothing_factor=0.1)
    smoother, calls = trainer.label_smoother, []

    def counted(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(kwargs.get("num_items_in_batch"))
        return smoother(*args, **kwargs)

    trainer.label_smoother = counted
    find_lr(trainer, num_iter=6, end_lr=1e-3)
    assert calls == [None] * 6  # once per step, each micro-batch its own mean


def test_a_given_optimizer_is_swept_and_restored_with_its_scheduler_untouched(tmp_path):
    model = tiny_bert()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model(**{k: torch.stack([r[k] for r in RECORDS[:8]]) for k in ("input_ids", "labels")}).loss.backward()
    optimizer.step()  # momentum buffers to restore
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5)
    trainer = make_trainer(tmp_path, optimizers=(optimizer, scheduler), model=model)
    before, epoch = state_of(model, optimizer), scheduler.last_epoch

    finder = find_lr(trainer, **RT)

    assert finder.optimizer is optimizer
    assert trainer.optimizer is optimizer and trainer.lr_scheduler is scheduler
    assert_same_state(before, state_of(model, optimizer))
    assert scheduler.last_epoch == epoch and not optimizer._optimizer_step_pre_hooks


def test_max_grad_norm_clips_the_gradients_of_each_step(tmp_path):
    sweep = {"num_iter": 24, "end_lr": 1000.0}
    free = find_lr(make_trainer(tmp_path, max_grad_norm=0.0, optim="sgd"), **sweep)
    clipped = find_lr(make_trainer(tmp_path, max_grad_norm=1e-7, optim="sgd"), **sweep)
    assert free.history.stop_reason is not None  # plain SGD up to lr 1000 diverges
    # every step's gradient clipped to norm 1e-7: even lr 1000 moves the weights by 1e-4, and the loss stays
    assert clipped.history.stop_reason is None and len(clipped.history.lr) == sweep["num_iter"]
    assert np.ptp(clipped.history.raw_loss) < 0.05


def test_verify_after_find_lr_clips_as_the_sweep_did(tmp_path):
    trainer = make_trainer(tmp_path, max_grad_norm=1e-3, optim="sgd")
    finder = find_lr(trainer, num_iter=12, end_lr=1e-2)
    norms: list[float] = []

    def record(opt: Any, *_: Any) -> None:
        grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))))

    handle = finder.optimizer.register_step_pre_hook(record)
    try:
        finder.verify(trainer.get_train_dataloader(), lr=1.0, factors=(1.0,), steps=4)
    finally:
        handle.remove()
    assert len(norms) == 4 and max(norms) <= 1e-3 * (1 + 1e-4), norms  # what reaches the optimizer is clipped


class CountingLoaderTrainer(transformers.Trainer):
    calls = 0

    def get_train_dataloader(self):  # type: ignore[no-untyped-def]
        CountingLoaderTrainer.calls += 1
        return super().get_train_dataloader()


def test_verify_runs_right_after_the_sweep_on_the_same_loader_and_changes_nothing(tmp_path):
    trainer = make_trainer(tmp_path, cls=CountingLoaderTrainer)
    assert find_lr(trainer, num_iter=12, end_lr=1e-2).verification is None  # off by default
    CountingLoaderTrainer.calls = 0
    before, rng = model_state(trainer.model), rng_state()
    prepared = len(trainer.accelerator._dataloaders)
    finder = find_lr(trainer, verify=True, **RT)
    checked = finder.verification
    assert checked is not None and checked.extra_steps > 0 and len(checked.trials) >= 2
    assert CountingLoaderTrainer.calls == 1  # the sweep's loader, not a second one
    assert_same_state(before, model_state(trainer.model))
    assert rng_state() == rng and len(trainer.accelerator._dataloaders) == prepared
    assert trainer.optimizer is None and trainer.lr_scheduler is None


def test_bf16_maps_to_bf16_autocast(tmp_path):
    finder = find_lr(make_trainer(tmp_path, bf16=True), num_iter=8, end_lr=1e-3)
    assert finder.history.settings["amp_dtype"] == "bfloat16"
    assert finder.history.settings["use_amp"] is True


def test_keywords_override_what_the_trainer_says(tmp_path):
    finder = find_lr(make_trainer(tmp_path, gradient_accumulation_steps=2), num_iter=8, accumulation_steps=1)
    assert finder.history.settings["accumulation_steps"] == 1


def test_bad_input_is_refused_before_anything_changes(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.train_dataset = None
    before = model_state(trainer.model)
    with pytest.raises(InputError, match="train_dataset is None"):
        find_lr(trainer, **RT)
    assert_same_state(before, model_state(trainer.model))
    assert trainer.optimizer is None
    with pytest.raises(InputTypeError, match="must be a transformers.Trainer"):
        find_lr(trainer.model, **RT)
    trainer = make_trainer(tmp_path)
    before = model_state(trainer.model)
    with pytest.raises(InputError, match="end_lr"):  # a bad range_test option: nothing trained, nothing left
        find_lr(trainer, start_lr=1.0, end_lr=1e-3)
    assert_same_state(before, model_state(trainer.model))
    assert trainer.optimizer is None


def test_without_transformers_the_import_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "lr_finder.integrations.transformers")
    with pytest.raises(ImportError) as info:
        importlib.import_module("lr_finder.integrations.transformers")
    message = str(info.value)
    assert "pip install 'lr-finder[transformers]'" in message and "\n" not in message
