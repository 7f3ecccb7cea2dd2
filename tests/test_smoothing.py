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


@pytest.mark.parametrize("n", [5, 6, 31, 200, 5001])
def test_the_fast_savitzky_golay_is_scipys_filter(n):
    """FFT convolution for long windows (the window is a tenth of the curve): the same values as
    ``savgol_filter(mode="interp")``, whose direct convolution would make the analysis quadratic."""
    from scipy.signal import savgol_filter

    values = np.random.default_rng(n).normal(size=n).cumsum()
    w = smoothing.window_length(n)
    np.testing.assert_allclose(
        smoothing.smooth(values), savgol_filter(values, w, smoothing.POLYORDER, mode="interp"), atol=1e-9
    )


@given(arrays(np.float64, st.integers(2, 300), elements=st.floats(-1e3, 1e3)), st.integers(1, 41))
def test_moving_average_is_the_edge_padded_convolution(values, window):
    window |= 1
    half = window // 2
    direct = np.convolve(np.pad(values, half, mode="edge"), np.full(window, 1.0 / window), mode="valid")
    np.testing.assert_allclose(smoothing.moving_average(values, window), direct, atol=1e-8)


def test_noise_level_reads_the_noise_not_the_curve():
    rng = np.random.default_rng(0)
    x = np.linspace(-3, 3, 2000)
    curve = np.tanh(2 * x) + 0.5 * x**2
    for sigma in (0.01, 0.1, 1.0):
        assert smoothing.noise_level(curve + rng.normal(0, sigma, x.size)) == pytest.approx(sigma, rel=0.1)
    spiky = rng.normal(0, 0.1, 500)
    spiky[::50] = 1e6  # a few wild values do not decide the noise
    assert smoothing.noise_level(spiky) == pytest.approx(0.1, rel=0.25)
