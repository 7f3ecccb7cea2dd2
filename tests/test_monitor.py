import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lr_finder import monitor


def run(losses, smooth_f=0.05, diverge_th=5.0, adaptive_stop=True):
    s = monitor.init()
    smoothed = []
    for x in losses:
        s = monitor.update(s, x, smooth_f=smooth_f, diverge_th=diverge_th, adaptive_stop=adaptive_stop)
        if s.stop_reason and not math.isfinite(x):
            break
        smoothed.append(s.smoothed)
        if s.stop_reason:
            break
    return s, smoothed


def test_ema_is_bias_corrected_from_the_first_step():
    s, smoothed = run([2.0, 2.0, 2.0, 2.0])
    assert smoothed == pytest.approx([2.0] * 4)  # no artificial dip at the start
    assert s.stop_reason is None


def test_ema_values_match_the_formula():
    beta = 0.9
    xs = [3.0, 1.0, 2.0]
    _, smoothed = run(xs, smooth_f=0.1)
    avg, expected = 0.0, []
    for k, x in enumerate(xs, start=1):
        avg = beta * avg + 0.1 * x
        expected.append(avg / (1 - beta**k))
    assert smoothed == pytest.approx(expected)


def test_smooth_f_zero_disables_smoothing():
    _, smoothed = run([3.0, 1.0, 2.0], smooth_f=0.0)
    assert smoothed == [3.0, 1.0, 2.0]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_loss_stops_at_once(bad):
    s, smoothed = run([1.0, 0.9, bad, 0.8])
    assert "non-finite" in s.stop_reason
    assert len(smoothed) == 2 and s.count == 2


def test_divergence_of_the_smoothed_loss():
    s, smoothed = run([1.0] * 5 + [100.0] * 50, adaptive_stop=False, smooth_f=0.5)
    assert s.stop_reason.startswith("diverged")
    assert smoothed[-1] > 5.0


def test_sustained_spike_stops_within_three_steps_of_the_crossing():
    losses = [1.0] * 40 + [8.0] * 30
    s, smoothed = run(losses)  # the lagging EMA (smooth_f=0.05) alone would need ~14 steps
    assert "spike" in s.stop_reason
    assert len(smoothed) == 40 + monitor.SPIKE_PATIENCE
    s, smoothed = run(losses, adaptive_stop=False)
    assert s.stop_reason.startswith("diverged") and len(smoothed) > 40 + monitor.SPIKE_PATIENCE


def test_explosion_stops_within_three_steps_either_way():
    s, smoothed = run([1.0] * 20 + [50.0] * 30)
    assert s.stop_reason is not None and len(smoothed) <= 20 + monitor.SPIKE_PATIENCE


def test_single_outlier_is_not_a_spike():
    s, _ = run([1.0] * 40 + [10.0] + [1.0] * 10)
    assert s.stop_reason is None


def test_negative_losses_diverge_relative_to_their_scale():
    # a log-likelihood style loss that goes from -1 down to -3, then blows up
    losses = [-1.0 - 0.1 * i for i in range(21)] + [-3.0 + 2.0 * i for i in range(1, 30)]
    s, smoothed = run(losses, smooth_f=0.0)
    assert s.stop_reason is not None and "diverged" in s.stop_reason
    # threshold: best + (th - 1) * max(|best|, first - best) = -3 + 4 * 3 = 9
    assert smoothed[-1] > 9.0 and all(v <= 9.0 for v in smoothed[:-1])


def test_zero_best_loss_is_not_an_immediate_stop():
    s, _ = run([1.0, 0.5, 0.0, 0.0, 0.1, 0.2], smooth_f=0.0)
    assert s.stop_reason is None


def test_fresh_state_has_no_stale_best():
    assert monitor.init().best == math.inf and monitor.init().count == 0


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200), st.floats(0, 0.99), st.floats(1.01, 50))
def test_update_never_raises_and_best_is_the_minimum(losses, smooth_f, th):
    s = monitor.init()
    seen = []
    for x in losses:
        s = monitor.update(s, x, smooth_f=smooth_f, diverge_th=th, adaptive_stop=True)
        seen.append(s.smoothed)
        if s.stop_reason:
            break
    assert s.best == pytest.approx(min(seen))
