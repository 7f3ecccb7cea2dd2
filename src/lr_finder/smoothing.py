"""Zero-phase smoothing of a loss curve for analysis: Savitzky-Golay, or a centred moving average.

Pure numpy in, numpy out. scipy is optional: without it (or with ``use_scipy=False``) a centred
moving average of the same window stands in, so the analysis works in minimal environments.
"""

from __future__ import annotations

import importlib.util

import numpy as np

HAVE_SCIPY = importlib.util.find_spec("scipy") is not None


def window_length(n: int) -> int:
    """An odd window for ``n`` points: about a tenth of the curve, at least 5, never more than ``n``."""
    w = max(5, int(round(n / 10)) | 1)
    if w > n:
        w = n if n % 2 == 1 else n - 1
    return max(w, 1)


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average with edge values repeated, so the output has the input's length."""
    values = np.asarray(values, dtype=float)
    if window <= 1 or values.size < 2:
        return values.copy()
    half = window // 2
    padded = np.pad(values, half, mode="edge")
    kernel = np.full(window, 1.0 / window)
    return np.convolve(padded, kernel, mode="valid")


def smooth(values: np.ndarray, window: int | None = None, *, use_scipy: bool | None = None) -> np.ndarray:
    """Smooth ``values`` without shifting them (unlike an EMA, a peak stays where it was).

    Savitzky-Golay (order 2) when scipy is importable, else a centred moving average. The input must
    be finite; ``window`` defaults to :func:`window_length`.
    """
    values = np.asarray(values, dtype=float)
    n = values.size
    if n < 3:
        return values.copy()
    w = window_length(n) if window is None else window
    if use_scipy is None:
        use_scipy = HAVE_SCIPY
    if use_scipy and w >= 5:
        from scipy.signal import savgol_filter

        return np.asarray(savgol_filter(values, w, polyorder=2, mode="interp"), dtype=float)
    return moving_average(values, w)
