"""training.eval.curve: the saturating fit recovers known curves and says when a target is out of reach."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.eval.curve import SaturatingFit, fit_saturating


@settings(max_examples=40, deadline=None)
@given(a=st.floats(0.5, 4.0), b=st.floats(0.5, 5.0), c=st.floats(0.3, 1.5))
def test_the_fit_recovers_a_noiseless_curve_and_its_time_to_target(a, b, c):
    t = np.array([1.0, 2.0, 3.0, 5.0, 8.0, 13.0])
    truth = SaturatingFit(a, b, c, 0.0)
    fit = fit_saturating(t, truth(t))
    assert fit.rmse < 1e-6
    assert fit.a == pytest.approx(a, rel=1e-3, abs=1e-3) and fit.c == pytest.approx(c, rel=1e-3, abs=1e-3)
    target = a - 0.5 * b * 20.0 ** -c  # reached at t = 20 * 2^(1/c)
    assert fit.time_to(target) == pytest.approx(20.0 * 2.0 ** (1.0 / c), rel=1e-2)


def test_known_answer_and_out_of_reach():
    fit = SaturatingFit(a=3.0, b=2.0, c=1.0, rmse=0.0)
    assert fit(4.0) == pytest.approx(2.5)
    assert fit.time_to(2.0) == pytest.approx(2.0)  # 3 - 2/t = 2
    assert fit.time_to(3.0) == math.inf and fit.time_to(3.5) == math.inf
    # a nearly flat fit (c at its 1e-3 bound) reaches a target below its ceiling only past any float:
    # inf, not an OverflowError (what a tiny run's noise fitted to on the CPU)
    assert SaturatingFit(a=3.0, b=4.0, c=1e-3, rmse=0.0).time_to(2.0) == math.inf  # (4/1) ** 1000
    assert SaturatingFit(a=3.0, b=0.0, c=1.0, rmse=0.0).time_to(2.0) == 0.0  # flat at the ceiling


def test_too_few_or_nonpositive_points_are_refused():
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_saturating([1.0, 2.0], [0.1, 0.2])
    with pytest.raises(ValueError, match="must be > 0"):
        fit_saturating([0.0, 1.0, 2.0], [0.1, 0.2, 0.3])
