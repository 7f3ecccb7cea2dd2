"""What a user can get wrong, and what must still work: each refused before training, state untouched."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lr_finder import LRFinder
from lr_finder.errors import InputError, InputTypeError, RangeTestError
from lr_finder.settings import RangeTestSettings

from tasks import assert_same_state, digits_mlp, state_of

RT = {"show_progress": False}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"use_amp": "yes"}, r"use_amp='yes' must be True or False"),
        ({"show_progress": "no"}, r"show_progress='no' must be True or False"),
        ({"adaptive_stop": "no"}, r"adaptive_stop='no' must be True or False"),
        ({"non_blocking_transfer": "x"}, r"non_blocking_transfer='x' must be True or False"),
        ({"amp_dtype": "bf16"}, r"amp_dtype='bf16'.*pass torch.bfloat16"),
        ({"num_iter": 10.0}, r"num_iter=10.0 must be an int"),
    ],
)
def test_flags_of_the_wrong_type_are_refused_before_training(kwargs, match):
    task = digits_mlp()
    before = state_of(task.model, task.optimizer)
    f = LRFinder(task.model, task.optimizer, task.criterion)
    with pytest.raises(InputTypeError, match=match):
        f.range_test(task.loader, **{"num_iter": 5, **RT, **kwargs})
    assert f.history.num_steps == 0
    assert_same_state(before, state_of(task.model, task.optimizer))


def test_numpy_flags_and_torch_dtypes_are_read_by_the_settings():
    """settings imports neither numpy nor torch, yet takes their booleans and AMP dtypes (and refuses others)."""
    s = RangeTestSettings(use_amp=np.bool_(False), show_progress=np.True_, amp_dtype=torch.bfloat16)
    assert s.use_amp is False and s.show_progress is True and s.amp_dtype is torch.bfloat16
    assert RangeTestSettings(amp_dtype=torch.float16).to_dict()["amp_dtype"] == "float16"
    with pytest.raises(InputTypeError, match="amp_dtype=torch.float32 must be torch.float16, torch.bfloat16"):
        RangeTestSettings(amp_dtype=torch.float32)
    with pytest.raises(InputTypeError, match="use_amp=.*1.0.* must be True or False"):
        RangeTestSettings(use_amp=np.float64(1.0))


def test_memory_cache_must_be_a_flag():
    task = digits_mlp()
    with pytest.raises(InputTypeError, match=r"memory_cache='no' must be True or False"):
        LRFinder(task.model, task.optimizer, task.criterion, memory_cache="no")


def test_a_criterion_class_instead_of_an_instance_names_the_fix():
    task = digits_mlp()
    with pytest.raises(InputTypeError, match=r"criterion=CrossEntropyLoss is a class.*CrossEntropyLoss\(\)"):
        LRFinder(task.model, task.optimizer, torch.nn.CrossEntropyLoss)


def test_an_optimizer_built_for_another_model_is_refused():
    task, other = digits_mlp(seed=0), digits_mlp(seed=1)
    with pytest.raises(InputError, match="holds none of the model's .* parameters"):
        LRFinder(task.model, other.optimizer, task.criterion)


def test_trainable_parameters_missing_from_the_optimizer_are_named():
    task = digits_mlp()
    head_only = torch.optim.SGD(task.model[4].parameters(), lr=0.01)
    with pytest.warns(UserWarning, match=r"4 trainable parameter\(s\).*0\.weight, 0\.bias, 1\.weight, 1\.bias"):
        LRFinder(task.model, head_only, task.criterion)
    for p in list(task.model[0].parameters()) + list(task.model[1].parameters()):
        p.requires_grad_(False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # frozen on purpose: nothing to warn about
        LRFinder(task.model, head_only, task.criterion)


def test_a_loss_that_is_nan_from_the_first_step_raises_naming_it():
    task = digits_mlp()
    before = state_of(task.model, task.optimizer)

    def broken(out, y):
        return torch.nn.functional.cross_entropy(out, y) * float("nan")

    f = LRFinder(task.model, task.optimizer, broken)
    with pytest.raises(RangeTestError, match=r"the loss was nan at the first step \(lr=1e-07\).*NaN/inf"):
        f.range_test(task.loader, num_iter=10, **RT)
    assert f.history.num_steps == 0 and "non-finite" in f.history.stop_reason
    assert_same_state(before, state_of(task.model, task.optimizer))


def test_the_history_goes_where_a_dict_goes():
    pd = pytest.importorskip("pandas")
    task = digits_mlp()
    f = LRFinder(task.model, task.optimizer, task.criterion)
    h = f.range_test(task.loader, start_lr=1e-4, end_lr=1e-2, num_iter=8, **RT)
    frame = pd.DataFrame(h)
    assert list(frame.columns) == ["lr", "loss", "raw_loss"] and len(frame) == 8
    assert frame["lr"].tolist() == list(h["lr"])
    assert json.loads(json.dumps(h)) == {k: list(v) for k, v in dict(h).items()}
    assert h["lr"][-1] == pytest.approx(1e-2) and h["stop_reason"] is None
    with pytest.raises(TypeError, match="read-only"):
        h["lr"] = []


def test_a_val_loader_passed_positionally_says_it_is_keyword_only():
    task = digits_mlp()
    with pytest.raises(InputTypeError, match=r"start_lr got DataLoader.*val_loader is keyword-only"):
        LRFinder(task.model, task.optimizer, task.criterion).range_test(task.loader, task.loader)


class TakesAList(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(64, 10)

    def forward(self, parts):  # one argument: a list of two halves
        return self.lin(torch.cat(parts, dim=1))


def test_a_list_input_unpacked_into_a_one_argument_model_names_the_convention():
    x, y = torch.rand(64, 64), torch.randint(0, 10, (64,))
    loader = [([x[:, :32], x[:, 32:]], y)]
    model = TakesAList()
    f = LRFinder(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.CrossEntropyLoss())
    with pytest.raises(InputTypeError, match=r"model\(\*inputs\) with 2 inputs failed.*loss_fn="):
        f.range_test(loader, num_iter=3, **RT)
    fixed = LRFinder(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        None,
        loss_fn=lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1]),
    )
    assert fixed.range_test(loader, num_iter=3, **RT).num_steps == 3


class Reiterable:
    """An iterator object whose ``__iter__`` starts a fresh pass: it can be iterated again."""

    def __init__(self, batches: list) -> None:
        self.batches = batches
        self.i = 0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Reiterable:
        fresh = Reiterable(self.batches)
        return fresh

    def __next__(self):
        if self.i >= len(self.batches):
            raise StopIteration
        self.i += 1
        return self.batches[self.i - 1]


class OneShot(Reiterable):
    def __iter__(self) -> OneShot:
        return self


def test_an_iterator_that_can_start_over_is_not_one_shot():
    task = digits_mlp()
    batches = list(task.loader)[:3]
    f = LRFinder(task.model, task.optimizer, task.criterion)
    h = f.range_test(Reiterable(batches), start_lr=1e-4, end_lr=1e-2, num_iter=7, **RT)
    assert h.num_steps == 7  # cycled twice over three batches
    with pytest.raises(InputError, match="one-shot iterator with 3 batches"):
        f.range_test(OneShot(batches), num_iter=7, **RT)


def test_persistent_workers_order_after_the_finder_equals_without_it():
    x, y = torch.rand(96, 8), torch.randint(0, 3, (96,))

    def epochs(run_finder: bool) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 3)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, num_workers=1,
                            persistent_workers=True)
        if run_finder:
            LRFinder(model, opt, torch.nn.CrossEntropyLoss()).range_test(loader, num_iter=3, **RT)
        seen = [yb for _ in range(2) for _, yb in loader]
        del loader
        return seen

    without, with_finder = epochs(False), epochs(True)
    assert all(torch.equal(a, b) for a, b in zip(without, with_finder, strict=True))
