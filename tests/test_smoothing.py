import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lr_finder import smoothing


@pytest.mark.parametrize("use_scipy", [True, False])
def test_smoothing_keeps_a_line_and_reduces_noise(use_scipy):
    rng = np.random.default_rng(0)
    x = np.linspace(0, 1, 100)
    noisy = 2 * x + rng.normal(0, 0.1, size=x.size)
    out = smoothing.smooth(noisy, use_scipy=use_scipy)
    assert out.shape == noisy.shape
    assert np.std(out - 2 * x) < 0.6 * np.std(noisy - 2 * x)
    np.testing.assert_allclose(smoothing.smooth(2 * x, use_scipy=use_scipy)[5:-5], (2 * x)[5:-5], atol=1e-9)


@pytest.mark.parametrize("use_scipy", [True, False])
def test_smoothing_does_not_shift_a_peak(use_scipy):
    y = np.exp(-((np.arange(101) - 50) ** 2) / 50.0)
    assert int(np.argmax(smoothing.smooth(y, use_scipy=use_scipy))) == 50


def test_window_length_is_odd_and_fits():
    for n in range(1, 400):
        w = smoothing.window_length(n)
        assert w % 2 == 1 and 1 <= w <= max(n, 1)


@given(arrays(np.float64, st.integers(0, 300), elements=st.floats(-1e6, 1e6)), st.booleans())
def test_smooth_any_finite_input(values, use_scipy):
    out = smoothing.smooth(values, use_scipy=use_scipy)
    assert out.shape == values.shape and np.all(np.isfinite(out))
