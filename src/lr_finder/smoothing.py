"""Zero-phase smoothing of a loss curve for analysis: Savitzky-Golay, or without scipy (optional) a centred
moving average of the same window.

Linear or ``n log n`` in the curve's length whatever the window (a direct convolution with a window that is
a tenth of the curve would be quadratic: minutes for a million points).
"""

from __future__ import annotations

import importlib.util
import math

import numpy as np

HAVE_SCIPY = importlib.util.find_spec("scipy") is not None
#: Order of the Savitzky-Golay polynomial: a parabola follows the bottom of a descent without flattening it.
POLYORDER = 2


def window_length(n: int) -> int:
    """An odd window for ``n`` points: about a tenth of the curve (a fixed span of log LR, so the smoothing
    means the same whatever the number of steps), at least 5, never more than ``n``."""
    largest_odd = n if n % 2 else n - 1
    return max(1, min(max(5, round(n / 10) | 1), largest_odd))


def window_means(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of every run of ``window`` consecutive values, from a cumulative sum centred on the mean
    (for precision)."""
    values = np.asarray(values, dtype=float)
    centre = float(np.mean(values)) if values.size else 0.0
    total = np.concatenate(([0.0], np.cumsum(values - centre)))
    return (total[window:] - total[:-window]) / window + centre


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average with edge values repeated, so the output has the input's length."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or values.size < 2:
        return values.copy()
    half = window // 2
    return window_means(np.pad(values, (half, window - 1 - half), mode="edge"), window)


def savitzky_golay(values: np.ndarray, window: int) -> np.ndarray:
    """``scipy.signal.savgol_filter(values, window, POLYORDER, mode="interp")`` in ``n log n``: its
    convolution by ``scipy.signal.convolve`` (FFT for long windows), and the polynomials fitted to the first
    and last full windows over the half windows at the ends, as ``mode="interp"`` defines them."""
    from scipy.signal import convolve, savgol_coeffs

    values = np.asarray(values, dtype=float)
    n, half = values.size, window // 2
    out = np.asarray(convolve(values, savgol_coeffs(window, POLYORDER), mode="same"), dtype=float)
    t = np.arange(window, dtype=float)
    poly = np.polynomial.polynomial
    out[:half] = poly.polyval(t[:half], poly.polyfit(t, values[:window], POLYORDER))
    out[n - half :] = poly.polyval(t[window - half :], poly.polyfit(t, values[n - window :], POLYORDER))
    return out


def smooth(values: np.ndarray, window: int | None = None, *, use_scipy: bool | None = None) -> np.ndarray:
    """Smooth ``values`` without shifting them (unlike an EMA, a peak stays where it was).

    Savitzky-Golay (order 2) when scipy is importable, else a centred moving average. The input must
    be finite; ``window`` defaults to :func:`window_length`.

    >>> smooth(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])).round(6).tolist()  # a line stays a line
    [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    """
    values = np.asarray(values, dtype=float)
    n = values.size
    if n < 3:
        return values.copy()
    w = window_length(n) if window is None else window
    if (HAVE_SCIPY if use_scipy is None else use_scipy) and 5 <= w <= n:
        return savitzky_golay(values, w)
    return moving_average(values, w)


#: ``noise_level`` averages the smallest 90% of the second differences: robust to a tenth of wild values
#: (spikes, the kinks of a descent) and, on few points, far steadier than a median.
_KEEP = 0.9
_Q = 1.6448536269514722  # the 95th percentile of N(0, 1): |N(0, 1)| < _Q for 90% of draws
_TRIMMED_MEAN = math.sqrt(2.0 / math.pi) * (1.0 - math.exp(-_Q * _Q / 2.0)) / _KEEP  # E|N(0,1)| below _Q


def noise_level(values: np.ndarray) -> float:
    """The standard deviation of the point-to-point noise of ``values``, from its high frequencies.

    For independent noise of standard deviation ``s`` on a smooth curve, the second differences
    ``v[i-1] - 2 v[i] + v[i+1]`` are ``N(0, 6 s**2)`` and the curve itself barely contributes; the mean
    of their smallest 90% absolute values, divided by its value for ``N(0, 1)``, gives ``s``. Linear in
    the length; 0.0 for fewer than 3 points.
    """
    v = np.asarray(values, dtype=float)
    if v.size < 3:
        return 0.0
    with np.errstate(all="ignore"):
        d2 = np.abs(v[:-2] - 2.0 * v[1:-1] + v[2:])
    d2[np.isnan(d2)] = np.inf  # an overflow is a huge difference, not a missing one
    k = math.ceil(_KEEP * d2.size)  # at least 1: d2 has a value
    kept = np.partition(d2, k - 1)[:k]
    return float(np.mean(kept) / _TRIMMED_MEAN / math.sqrt(6.0))
