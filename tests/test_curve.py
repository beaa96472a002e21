"""training.eval.curve: the saturating fit recovers known curves and says when a target is out of reach."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.eval.curve import LogLinearFit, SaturatingFit, fit_curve, fit_log_linear, fit_saturating


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


def test_the_log_linear_fit_known_answer():
    line = fit_log_linear([1.0, 2.0, 4.0, 8.0], [1.0, 1.3, 1.6, 1.9])
    assert line.per_doubling == pytest.approx(0.3) and line.at_one == pytest.approx(1.0) and line.rmse < 1e-9
    assert line.time_to(2.2) == pytest.approx(16.0)  # four doublings
    assert LogLinearFit(at_one=1.0, per_doubling=0.0, rmse=0.0).time_to(2.0) == math.inf  # flat: never
    assert LogLinearFit(at_one=1.0, per_doubling=1e-6, rmse=0.0).time_to(2.0) == math.inf  # past any float
    with pytest.raises(ValueError, match="at least 2 points"):
        fit_log_linear([1.0], [0.1])


@settings(max_examples=30, deadline=None)
@given(g1=st.floats(-1.0, 1.0), d=st.floats(0.05, 0.6))
def test_points_without_a_ceiling_get_the_line_not_a_runaway_ceiling(g1, d):
    # a run still rising by the same dB per doubling (issue 24's long teacher: ~0.3 dB/doubling from 2,500
    # to 12,671 steps) drove the power law to c at its bound with a ceiling of 433 dB
    t = np.array([2500.0, 5000.0, 7500.0, 10000.0, 12500.0])
    fit = fit_curve(t, g1 + d * np.log2(t), np.full(5, 0.07))
    assert isinstance(fit, LogLinearFit)
    assert fit.per_doubling == pytest.approx(d, rel=1e-6) and fit.at_one == pytest.approx(g1, abs=1e-6)


def test_points_that_level_off_keep_the_saturating_fit():
    t = np.array([1.0, 2.0, 3.0, 5.0, 8.0, 13.0])
    fit = fit_curve(t, SaturatingFit(2.0, 1.5, 0.8, 0.0)(t))
    assert isinstance(fit, SaturatingFit) and fit.a == pytest.approx(2.0, rel=1e-3)
    assert "ceiling" not in fit.describe("t") and "no ceiling" in fit_log_linear(t, np.log2(t)).describe("t")


def test_issue_24_long_teacher_points_known_answer():
    # bench/results/quality/long_2026-12-07/curve: paired gain over copy-first of the 14-minute teacher's
    # snapshots; the power law ran to c = 1e-3 with a ceiling of 433 dB on these
    steps = [2500, 5000, 7500, 10000, 12500, 12671]
    gain, se = [1.84, 2.01, 2.27, 2.41, 2.52, 2.51], [0.06, 0.07, 0.07, 0.07, 0.07, 0.07]
    fit = fit_curve(steps, gain, se)
    assert isinstance(fit, LogLinearFit) and fit.per_doubling == pytest.approx(0.30, abs=0.01)
    assert 3_500 < fit.time_to(2.0) < 4_500
