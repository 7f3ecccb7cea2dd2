"""Batches to losses: device moves of nested batches, each batch/model style, each error and its fix."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict, defaultdict, namedtuple
from types import SimpleNamespace

import pytest
import torch

from lr_finder.batches import batch_size, check_loss, compute_loss, move_to_device

META = torch.device("meta")  # a second device on any machine: a moved tensor shows where it went
CPU = torch.device("cpu")
Pair = namedtuple("Pair", ["inputs", "targets"])


@dataclasses.dataclass
class Features:
    pixels: torch.Tensor
    name: str = "digits"


@dataclasses.dataclass(frozen=True)
class FrozenBatch:
    x: torch.Tensor
    y: torch.Tensor


class Movable:
    """An object with its own ``.to`` (like a Hugging Face ``BatchEncoding`` or a graph batch)."""

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t
        self.calls: list[dict] = []

    def to(self, device, non_blocking=False):
        self.calls.append({"device": device, "non_blocking": non_blocking})
        return Movable(self.t.to(device))


class OldStyleMovable:
    """A ``.to(device)`` that takes no ``non_blocking``."""

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t

    def to(self, device):
        return OldStyleMovable(self.t.to(device))


class InPlaceMovable:
    """A ``.to`` that moves in place and returns ``None``: the object itself must be kept."""

    def __init__(self, t: torch.Tensor) -> None:
        self.t = t

    def to(self, device, non_blocking=False):
        self.t = self.t.to(device)


# -- move_to_device -------------------------------------------------------------------------------------


def test_move_tensor_and_nested_containers_keep_structure_and_types():
    batch = {
        "x": torch.ones(2, 3),
        "pair": (torch.zeros(2), [torch.ones(1), "label", 3]),
        "nt": Pair(torch.ones(2), torch.zeros(2, dtype=torch.long)),
        "od": OrderedDict(a=torch.ones(1)),
    }
    moved = move_to_device(batch, META)
    assert moved["x"].device == META and moved["x"].shape == (2, 3)
    assert isinstance(moved["pair"], tuple) and isinstance(moved["pair"][1], list)
    assert moved["pair"][0].device == META and moved["pair"][1][0].device == META
    assert moved["pair"][1][1:] == ["label", 3]
    assert type(moved["nt"]) is Pair and moved["nt"].targets.device == META
    assert moved["nt"].targets.dtype == torch.long
    assert type(moved["od"]) is OrderedDict and moved["od"]["a"].device == META
    assert batch["x"].device == CPU  # the input is not modified


def test_move_same_device_is_free():
    x = torch.ones(3)
    assert move_to_device((x, [x]), CPU)[0] is x


def test_move_mapping_that_cannot_be_rebuilt_falls_back_to_dict():
    d = defaultdict(list, x=torch.ones(1))
    moved = move_to_device(d, META)
    assert moved == {"x": moved["x"]} and moved["x"].device == META


def test_move_dataclasses():
    moved = move_to_device([Features(torch.ones(2)), FrozenBatch(torch.ones(1), torch.zeros(1))], META)
    assert isinstance(moved[0], Features) and moved[0].pixels.device == META and moved[0].name == "digits"
    assert isinstance(moved[1], FrozenBatch) and moved[1].y.device == META


def test_move_objects_with_to():
    m = Movable(torch.ones(2))
    moved = move_to_device({"enc": m}, META, non_blocking=True)
    assert moved["enc"].t.device == META
    assert m.calls == [{"device": META, "non_blocking": True}]
    old = move_to_device(OldStyleMovable(torch.ones(1)), META)
    assert old.t.device == META
    inplace = InPlaceMovable(torch.ones(1))
    assert move_to_device(inplace, META) is inplace and inplace.t.device == META


def test_move_leaves_other_leaves_alone():
    import numpy as np

    arr = np.zeros(3)
    batch = ("text", b"bytes", 1.5, None, arr, str)
    moved = move_to_device(batch, META)
    assert moved[:4] == ("text", b"bytes", 1.5, None) and moved[4] is arr and moved[5] is str


# -- batch_size -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("batch", "expected"),
    [
        (torch.zeros(5, 3), 5),
        (torch.tensor(2.0), 1),
        ((torch.zeros(4, 2), torch.zeros(4)), 4),
        (((torch.zeros(6, 2), torch.zeros(6, 3)), torch.zeros(6)), 6),
        ({"input_ids": torch.zeros(7, 12), "labels": torch.zeros(7)}, 7),
        ({"ids": ["a", "b", "c"], "scale": torch.tensor(1.0), "x": torch.zeros(3, 2)}, 3),
        (Pair(torch.zeros(9, 1), torch.zeros(9)), 9),
        (Features(torch.zeros(8, 64)), 8),
        ({"meta": {"nested": [torch.zeros(2, 2)]}}, 2),
        (("no", "tensors"), 1),
        (object(), 1),
    ],
)
def test_batch_size(batch, expected):
    assert batch_size(batch) == expected


# -- compute_loss: every style --------------------------------------------------------------------------


def _linear(seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 3)


X = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
Y = torch.tensor([0, 1, 2, 1, 0])
CE = torch.nn.CrossEntropyLoss()


class TwoInputs(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(2, 3)
        self.b = torch.nn.Linear(2, 3)

    def forward(self, left, right):
        return self.a(left) + self.b(right)


class OwnLoss(torch.nn.Module):
    """Computes its own loss from keyword arguments, returning a dict or an object (Hugging Face style)."""

    def __init__(self, as_object: bool) -> None:
        super().__init__()
        self.lin = _linear()
        self.as_object = as_object

    def forward(self, pixels, labels=None):
        logits = self.lin(pixels)
        loss = None if labels is None else CE(logits, labels)
        if self.as_object:
            return SimpleNamespace(loss=loss, logits=logits)
        return {"loss": loss, "logits": logits}


def test_tuple_and_list_batches_use_the_criterion():
    model = _linear()
    expected = CE(model(X), Y)
    for batch in [(X, Y), [X, Y], Pair(X, Y)]:
        loss = compute_loss(model, CE, batch, None)
        assert loss.shape == () and loss.requires_grad
        assert torch.equal(loss, expected)


def test_several_inputs_are_unpacked():
    torch.manual_seed(0)
    model = TwoInputs()
    left, right = X[:, :2], X[:, 2:]
    expected = CE(model(left, right), Y)
    assert torch.equal(compute_loss(model, CE, ((left, right), Y), None), expected)
    assert torch.equal(compute_loss(model, CE, ([left, right], Y), None), expected)


@pytest.mark.parametrize("as_object", [False, True])
def test_dict_batches_read_the_model_loss(as_object):
    model = OwnLoss(as_object)
    loss = compute_loss(model, None, {"pixels": X, "labels": Y}, None)
    assert torch.equal(loss, CE(model.lin(X), Y)) and loss.requires_grad


class LossFromTuple(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = _linear()

    def forward(self, x):
        return {"loss": self.lin(x).pow(2).mean()}


def test_tuple_batch_with_own_loss_model_and_no_criterion():
    model = LossFromTuple()
    assert torch.equal(compute_loss(model, None, (X, Y), None), model.lin(X).pow(2).mean())


def test_loss_fn_replaces_everything():
    model = _linear()
    weights = torch.linspace(0.5, 1.5, 5)
    batch = (X, Y, weights)  # three items: only loss_fn can read it

    def loss_fn(m, b):
        x, y, w = b
        return (torch.nn.functional.cross_entropy(m(x), y, reduction="none") * w).mean()

    loss = compute_loss(model, CE, batch, loss_fn)
    assert torch.equal(loss, loss_fn(model, batch))


def test_one_element_loss_is_reshaped_to_a_scalar():
    model = _linear()
    loss = compute_loss(model, None, (X, Y), lambda m, b: m(b[0]).sum().reshape(1, 1))
    assert loss.shape == ()


def test_no_grad_needed_for_evaluation():
    model = _linear()
    with torch.no_grad():
        loss = compute_loss(model, CE, (X, Y), None, need_grad=False)
    assert not loss.requires_grad


# -- compute_loss: every error names the fix ------------------------------------------------------------


def _item(m, b):
    return CE(m(b[0]), b[1]).item()


def _tuple(m, b):
    return (CE(m(b[0]), b[1]),)


def _detached(m, b):
    return CE(m(b[0]), b[1]).detach()


TE, VE = TypeError, ValueError
PER_SAMPLE = torch.nn.CrossEntropyLoss(reduction="none")


@pytest.mark.parametrize(
    ("model", "criterion", "batch", "loss_fn", "error", "match"),
    [
        (OwnLoss(False), CE, {"pixels": X, "labels": Y}, None, TE, r"dict batches.*criterion=None.*loss_fn"),
        (_linear(), None, {"input": X}, None, TE, r"model\(\*\*batch\) returned Tensor without a `loss`"),
        (OwnLoss(False), None, {"pixels": X}, None, TE, r"returned dict without a `loss`.*loss_fn"),
        (OwnLoss(False), None, {"pixels": X, "idx": Y}, None, TE, r"keys \['idx', 'pixels'\].*'idx'.*drop"),
        (OwnLoss(False), None, {"labels": Y}, None, TE, r"forward\(\) arguments.*loss_fn"),
        (OwnLoss(True), None, {"pixels": X}, None, TE, r"returned SimpleNamespace without.*loss_fn"),
        (_linear(), None, (X, Y), None, TE, r"criterion is None.*CrossEntropyLoss\(\).*loss_fn"),
        (_linear(), CE, (X, Y, Y), None, TE, r"tuple of length 3.*loss_fn=lambda model, batch"),
        (_linear(), CE, [X], None, TE, r"list of length 1.*\(inputs, targets\)"),
        (_linear(), CE, X, None, TE, r"got a Tensor.*loss_fn"),
        (_linear(), CE, (X, Y), _item, TE, r"loss_fn returned float.*not loss.item\(\)"),
        (_linear(), CE, (X, Y), _tuple, TE, r"returned tuple.*loss tensor"),
        (_linear(), PER_SAMPLE, (X, Y), None, VE, r"criterion returned .* shape \(5,\).*reduction='mean'"),
        (_linear(), CE, (X, Y), _detached, VE, r"requires_grad=False.*detached"),
    ],
)
def test_errors_name_the_fix(model, criterion, batch, loss_fn, error, match):
    with pytest.raises(error, match=match):
        compute_loss(model, criterion, batch, loss_fn)


def test_frozen_model_loss_without_grad_is_refused():
    model = _linear().requires_grad_(False)
    with pytest.raises(ValueError, match="some model parameters require grad"):
        compute_loss(model, CE, (X, Y), None)


def test_check_loss_accepts_scalars_only():
    check_loss(torch.tensor(1.0, requires_grad=True), "x")
    check_loss(torch.tensor(1.0), "x", need_grad=False)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        check_loss(torch.ones(2), "x", need_grad=False)
