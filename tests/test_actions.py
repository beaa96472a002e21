"""The 13-dim action: binning rules of conventions.md section 3, decoding, and the bin spec."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from annotate.actions import CHANNELS, PAIRS, STATIC, ActionSpec, BinSpec, decode_actions, encode_actions

SPEC = ActionSpec()
rates = st.floats(-500.0, 500.0, allow_nan=False)
motions = st.lists(rates, min_size=6, max_size=6).map(lambda v: np.array(v) / 30.0)
fps_values = st.sampled_from([5.0, 10.0, 24.0, 30.0, 60.0, 120.0])


@given(st.floats(0.0, 50.0), st.floats(0.0, 50.0), st.integers(0, 5), st.sampled_from([1.0, -1.0]), fps_values)
def test_monotone_in_speed(a, b, column, sign, fps):
    slow, fast = sorted((a, b))
    motion = np.zeros((2, 6))
    motion[0, column] = sign * slow / fps
    motion[1, column] = sign * fast / fps
    actions = encode_actions(motion, 1 / fps, SPEC)
    _, positive, negative = next(p for p in PAIRS if p[0] == column)
    channel = positive if sign > 0 else negative
    assert actions[0, channel] <= actions[1, channel]


@given(st.lists(motions, min_size=1, max_size=20), fps_values)
def test_one_channel_per_pair_and_static_exactly_when_idle(rows, fps):
    actions = encode_actions(np.array(rows), 1 / fps, SPEC)
    for _, positive, negative in PAIRS:
        assert not ((actions[:, positive] > 0) & (actions[:, negative] > 0)).any()
    idle = ~(actions[:, :STATIC] > 0).any(axis=1)
    np.testing.assert_array_equal(actions[:, STATIC], idle.astype(np.float32))
    assert actions.dtype == np.float32 and actions.shape == (len(rows), 13)


@given(motions, fps_values, fps_values)
def test_thresholds_scale_with_fps(motion_at_30, fps_a, fps_b):
    """The same speeds sampled at any frame rate give the same labels (tau = rate * dt)."""
    speeds = motion_at_30 * 30.0
    for column, speed in enumerate(np.abs(speeds)):
        bins = SPEC.group(column)
        assume(np.abs(speed - np.array([bins.dead_zone, *bins.edges])).min() > 1e-9)  # ties may round either way
    a = encode_actions((speeds / fps_a)[None], 1 / fps_a, SPEC)
    b = encode_actions((speeds / fps_b)[None], 1 / fps_b, SPEC)
    np.testing.assert_array_equal(a, b)


def test_same_step_means_faster_at_higher_fps():
    step = np.array([[0.0, 0.0, 0.04, 0.0, 0.0, 0.0]])  # 4 cm forward per frame
    assert encode_actions(step, 1 / 1, SPEC)[0, STATIC] == 1  # 0.04 m/s: inside the 0.05 m/s dead zone
    assert encode_actions(step, 1 / 10, SPEC)[0, 0] == pytest.approx(1 / 3)  # 0.4 m/s
    assert encode_actions(step, 1 / 30, SPEC)[0, 0] == pytest.approx(2 / 3)  # 1.2 m/s
    assert encode_actions(step, 1 / 60, SPEC)[0, 0] == pytest.approx(1.0)  # 2.4 m/s


def test_per_transition_dt():
    motion = np.array([[0.0, 0.0, 0.04, 0, 0, 0]] * 3)
    np.testing.assert_allclose(encode_actions(motion, np.array([1.0, 0.1, 1 / 60]), SPEC)[:, 0], [0, 1 / 3, 1])


@pytest.mark.parametrize(
    "rate,level",
    [(0.0, 0), (0.05, 0), (0.0500001, 1), (0.4, 1), (0.75, 1), (0.7500001, 2), (2.0, 2), (2.0000001, 3), (1e6, 3)],
)
def test_bin_boundaries(rate, level):
    """Level 0 at or below the dead zone; bins are (dead, e0], (e0, e1], (e1, inf)."""
    actions = encode_actions(np.array([[0.0, 0.0, rate, 0, 0, 0]]), 1.0, SPEC)
    assert actions[0, CHANNELS.index("forward")] == pytest.approx(level / 3)


@pytest.mark.parametrize("column,positive,negative", PAIRS)
def test_decode_gives_bin_centers(column, positive, negative):
    bins = SPEC.group(column)
    dt = 1 / 24
    for sign in (1.0, -1.0):
        motion = np.zeros((bins.levels, 6))
        motion[:, column] = sign * np.array(bins.centers) * dt
        actions = encode_actions(motion, dt, SPEC)
        channel = positive if sign > 0 else negative
        np.testing.assert_allclose(actions[:, channel], np.arange(1, bins.levels + 1) / bins.levels)
        np.testing.assert_allclose(decode_actions(actions, dt, SPEC), motion, rtol=1e-12, atol=1e-15)


@given(st.lists(motions, min_size=1, max_size=20))
def test_decode_then_encode_is_identity(rows):
    actions = encode_actions(np.array(rows), 1 / 30, SPEC)
    np.testing.assert_array_equal(encode_actions(decode_actions(actions, 1 / 30, SPEC), 1 / 30, SPEC), actions)


def test_decode_rejects_inconsistent_actions():
    good = encode_actions(np.array([[0.0, 0, 0.1, 0, 0, 0]] * 3), 0.1, SPEC)
    both = good.copy()
    both[1, CHANNELS.index("backward")] = 1 / 3
    with pytest.raises(ValueError, match="action row 1: both forward and backward are set"):
        decode_actions(both, 0.1, SPEC)
    off_grid = good.copy()
    off_grid[2, 0] = 0.5
    with pytest.raises(ValueError, match=r"action row 2: forward=0.5 is not a level k/3"):
        decode_actions(off_grid, 0.1, SPEC)
    bad_static = good.copy()
    bad_static[0, STATIC] = 1
    with pytest.raises(ValueError, match="action row 0: static=1.0 disagrees"):
        decode_actions(bad_static, 0.1, SPEC)
    with pytest.raises(ValueError, match=r"dt\[1\] = 0.0 must be finite and > 0"):
        encode_actions(np.zeros((3, 6)), np.array([0.1, 0.0, 0.1]), SPEC)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(dead_zone=0.1, edges=(1.0,), centers=(0.5,)), "one more center than edges"),
        (dict(dead_zone=0.5, edges=(1.0,), centers=(0.5, 2.0)), "dead_zone < centers"),
        (dict(dead_zone=0.1, edges=(1.0,), centers=(1.5, 2.0)), "dead_zone < centers"),
        (dict(dead_zone=0.1, edges=(1.0,), centers=(0.5, 1.0)), "dead_zone < centers"),
        (dict(dead_zone=-1.0, edges=(), centers=(1.0,)), "dead_zone must be >= 0"),
        (dict(dead_zone=0.1, edges=(float("nan"),), centers=(0.5, 2.0)), "finite"),
    ],
)
def test_bin_spec_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BinSpec(**kwargs)


def test_single_bin_is_binary():
    spec = ActionSpec(translation=BinSpec(0.1, (), (1.0,)), rotation=BinSpec(1.0, (), (10.0,)))
    actions = encode_actions(np.array([[0.0, 0, 5.0, 0, 0, -90.0]]), 1.0, spec)
    assert [CHANNELS[i] for i in np.flatnonzero(actions)] == ["forward", "roll_left"]
    assert actions.max() == 1.0


def test_spec_metadata_is_complete():
    meta = SPEC.to_metadata()
    assert meta["channels"] == list(CHANNELS)
    assert meta["translation"] == {"dead_zone": 0.05, "edges": (0.75, 2.0), "centers": (0.4, 1.4, 3.0),
                                   "normalize": "none", "moving_speed": 0.05}
    assert meta["units"] == {"translation": "m/s", "rotation": "deg/s"}
