"""The verified suggestion: short runs around the pick, the best stable one kept, the state restored."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from lr_finder import LRFinder
from lr_finder.errors import InputError
from lr_finder.verify import Trial, choose, score, start_noise, trial_stop

from tasks import assert_same_state, digits_mlp, digits_tensors, state_of

RT = {"show_progress": False}

trials = st.lists(
    st.builds(
        Trial,
        lr=st.floats(1e-6, 10.0),
        score=st.floats(0.0, 10.0),
        stderr=st.floats(0.0, 1.0),
        steps=st.integers(1, 50),
        problem=st.sampled_from([None, None, "unstable: diverged"]),
    ),
    max_size=6,
    unique_by=lambda t: t.lr,  # verify() tries each LR once
)


@given(trials)
@example([Trial(1.0, 1.0, 0.0, 20), Trial(3.0, 0.0, 0.0, 20), Trial(2.0, 0.0, 1.0, 20)])  # a tie for the best
def test_the_choice_is_a_stable_trial_no_higher_than_the_best(ts):
    v = choose(ts, 1e-3)
    stable = [t for t in ts if t.stable]
    if not stable:
        assert v.lr is None and v.reason
        return
    best = min(stable, key=lambda t: (t.score, t.lr))  # of tied scores, the lowest LR is the best
    chosen = next(t for t in stable if t.lr == v.lr)
    assert chosen.lr <= best.lr or chosen.score == best.score
    assert chosen.score <= best.score + max(best.stderr, chosen.stderr)


def test_a_run_that_stopped_or_rose_is_unfit():
    assert not score(0.1, [1.0, 0.9], 10, "diverged: ...").stable
    assert not score(0.1, [1.0, 1.1, 1.3, 1.6, 2.0, 2.5, 3.1, 3.9], 8, None).stable
    fine = score(0.1, [1.0, 0.8, 0.7, 0.6, 0.55, 0.5, 0.48, 0.46], 8, None)
    assert fine.stable and fine.score == pytest.approx(0.47)


def test_verify_backs_off_a_pick_that_diverges_and_restores_everything():
    task = digits_mlp(optimizer="sgd")
    f = LRFinder(task.model, task.optimizer, task.criterion)
    h = f.range_test(task.loader, start_lr=1e-4, end_lr=10, num_iter=40, **RT)
    before = state_of(task.model, task.optimizer)
    v = f.verify(task.loader, lr=8.0, factors=(0.01, 0.1, 1.0), steps=15)
    assert f.history is h  # the range test's curve is kept
    assert_same_state(before, state_of(task.model, task.optimizer))
    by_lr = {round(t.lr, 6): t for t in v.trials}
    assert not by_lr[8.0].stable  # SGD + momentum at LR 8 diverges on this MLP
    assert v.lr is not None and v.lr < 8.0
    assert v.extra_steps <= 45 and len(v.trials) == 3


def test_verify_without_a_suggestion_says_so():
    task = digits_mlp()
    f = LRFinder(task.model, task.optimizer, task.criterion)
    f.range_test(task.loader, start_lr=1e-9, end_lr=1e-8, num_iter=10, **RT)  # flat: nothing to suggest
    v = f.verify(task.loader)
    assert v.lr is None and math.isnan(v.suggested) and v.trials == ()
    assert f.verification is v  # kept on the finder, as the history is


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": 1}, "steps=1 must be an int of at least 2"),
        ({"steps": 2.5}, "steps=2.5 must be an int"),
        ({"factors": (math.inf,)}, r"factors=\(inf,\): each must be a positive finite multiple"),
        ({"factors": 0.5}, "factors=0.5 must be a sequence"),
        ({"factors": ()}, r"factors=\(\) is empty"),
        ({"factors": (1e300, 1)}, "leave float32's range"),
    ],
)
def test_verify_names_its_own_bad_arguments_before_any_training(kwargs, match):
    task = digits_mlp()
    f = LRFinder(task.model, task.optimizer, task.criterion)
    f.range_test(task.loader, start_lr=1e-4, end_lr=1, num_iter=20, **RT)
    calls = []
    task.model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(InputError, match=match):
        f.verify(task.loader, lr=0.1, **kwargs)
    assert not calls, "refused before any training"


def test_a_trial_is_judged_on_its_own_terms_whatever_the_sweeps_smoothing():
    """With smooth_f=0 the sweep's rule reads one batch against the best: a run whose loss is already low
    'diverges' on its first noisy batch. A trial stops only when its loss explodes from where it started."""
    task = digits_mlp(optimizer="adam", batch_size=16, n=None)
    f = LRFinder(task.model, task.optimizer, task.criterion)
    f.range_test(task.loader, start_lr=1e-5, end_lr=1.0, num_iter=40, smooth_f=0, **RT)
    v = f.verify(task.loader, lr=1e-2, factors=(0.5, 1.0, 2.0), steps=150)
    assert all(t.stable for t in v.trials), [t.problem for t in v.trials]
    assert v.lr is not None


def test_trial_stop_needs_the_loss_to_stay_exploded():
    stop = trial_stop(5.0)
    assert stop([2.3, 1.0, 0.2, 0.05, 0.4, 0.06]) is None  # a noisy batch 8x the best: still a healthy run
    assert stop([2.3, 1.0, 20.0, 0.3]) is None  # one wild batch is not enough
    assert "diverged" in stop([2.3, 1.0, 20.0, 30.0, 12.0])  # three in a row, far above the start
    assert "diverged" in trial_stop(2.0)([-1.0, -1.2, 0.5, 0.6, 0.7])  # losses <= 0: relative to their scale


def test_a_flat_run_is_not_a_rising_one():
    flat = [2.314, 2.3152, 2.3149, 2.3156, 2.3151, 2.3153, 2.3155, 2.3150]  # within a batch's noise of its start
    assert score(0.1, flat, 8, None, start_noise=0.01).stable
    assert not score(0.1, [2.314, 2.4, 2.6, 2.9, 3.1, 3.3, 3.2, 3.4], 8, None, start_noise=0.01).stable
    noisy = 2.3 + 0.02 * np.random.default_rng(0).standard_normal(300)  # the first tenth read: 30 points
    assert start_noise(noisy) == pytest.approx(0.02, rel=0.5)


def test_verify_refuses_a_one_shot_iterator_up_front():
    task = digits_mlp()
    f = LRFinder(task.model, task.optimizer, task.criterion)
    f.range_test(task.loader, start_lr=1e-4, end_lr=1, num_iter=20, **RT)
    calls = []
    task.model.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(InputError, match="one-shot iterator"):
        f.verify(iter(list(task.loader) * 10), lr=0.1)
    assert not calls


def test_verify_scores_the_validation_loss_when_given_one(caplog):
    task = digits_mlp()
    x, y = digits_tensors()
    val = DataLoader(TensorDataset(x[1500:1700], y[1500:1700]), batch_size=64)
    f = LRFinder(task.model, task.optimizer, task.criterion)
    f.range_test(task.loader, start_lr=1e-4, end_lr=1, num_iter=20, val_loader=val, **RT)
    with caplog.at_level(logging.WARNING, logger="lr_finder"):
        on_train = f.verify(task.loader, lr=0.05, factors=(1.0,), steps=8)
    assert "scores the training loss" in caplog.text
    before = state_of(task.model, task.optimizer)
    on_val = f.verify(task.loader, lr=0.05, factors=(1.0,), steps=8, val_loader=val)
    assert_same_state(before, state_of(task.model, task.optimizer))
    assert on_val.trials[0].score != on_train.trials[0].score  # another loss was scored
