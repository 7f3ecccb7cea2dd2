"""The verified suggestion: short runs around the pick, the best stable one kept, the state restored."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lr_finder import LRFinder
from lr_finder.errors import InputError
from lr_finder.verify import Trial, choose, score

from tasks import assert_same_state, digits_mlp, state_of

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
