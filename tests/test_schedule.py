import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lr_finder.schedule import group_ratios, lr_at, lr_schedule


def test_exp_sweep_is_log_spaced_from_start_to_end():
    lrs = lr_schedule(1e-7, 1.0, 8, "exp")
    assert lrs[0] == pytest.approx(1e-7, rel=1e-12)
    assert lrs[-1] == pytest.approx(1.0, rel=1e-12)
    ratios = lrs[1:] / lrs[:-1]
    np.testing.assert_allclose(ratios, 10.0, rtol=1e-9)


def test_linear_sweep_is_evenly_spaced():
    lrs = lr_schedule(0.1, 1.0, 10, "linear")
    np.testing.assert_allclose(np.diff(lrs), 0.1, rtol=1e-9)
    assert lrs[0] == pytest.approx(0.1) and lrs[-1] == pytest.approx(1.0)


def test_unknown_step_mode():
    with pytest.raises(ValueError, match="step_mode"):
        lr_at(0, 1e-3, 1.0, 10, "cosine")


@given(
    st.floats(1e-9, 1e-2), st.floats(1.5, 1e4), st.integers(2, 500), st.sampled_from(["exp", "linear"])
)
def test_sweep_is_increasing_and_within_bounds(start, factor, n, mode):
    end = start * factor
    lrs = lr_schedule(start, end, n, mode)
    assert len(lrs) == n
    assert np.all(np.diff(lrs) > 0)
    assert math.isclose(lrs[0], start, rel_tol=1e-9) and math.isclose(lrs[-1], end, rel_tol=1e-9)


def test_group_ratios_keep_proportions_and_zero_groups():
    assert group_ratios([0.1, 0.01, 0.0]) == pytest.approx([1.0, 0.1, 0.0])
    assert group_ratios([0.0, 0.2, 0.02]) == pytest.approx([0.0, 1.0, 0.1])
    assert group_ratios([0.0, 0.0]) == [1.0, 1.0]
