"""Windows and palindromes (conventions.md 4)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotate.actions import ActionSpec
from annotate.geometry import integrate, relative_motion
from annotate.ue import ue_to_pose
from augment.clips import (WindowConfig, clip_labels, forward_length, frame_step, palindrome_frames,
                           palindrome_times, windows)


def test_windows_known_answer():
    got = windows([(0, 10), (20, 45)], 2, WindowConfig(frames=4, stride=3))
    assert [w.tolist() for w in got] == [[0, 2, 4, 6], [20, 22, 24, 26], [26, 28, 30, 32], [32, 34, 36, 38], [38, 40, 42, 44]]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(1, 120)), max_size=4), st.integers(1, 3),
       st.integers(2, 20), st.integers(1, 10))
def test_windows_stay_inside_their_span(raw, step, frames, stride):
    spans = [(s, s + length) for s, length in raw]
    for w in windows(spans, step, WindowConfig(frames=frames, stride=stride)):
        assert len(w) == frames and (np.diff(w) == step).all()
        assert any(s <= w[0] and w[-1] < e for s, e in spans)


def test_frame_step():
    assert frame_step(30.0, None) == 1 and frame_step(30.0, 15.0) == 2 and frame_step(29.97, 9.99) == 3
    with pytest.raises(ValueError, match="target fps 20 does not divide the stored 30 fps"):
        frame_step(30.0, 20.0)


def test_palindrome_frames_and_times():
    frames, turn = palindrome_frames(np.array([5, 7, 9, 11]))
    assert frames.tolist() == [5, 7, 9, 11, 9, 7, 5] and turn == 3
    np.testing.assert_allclose(palindrome_times(np.array([0.0, 0.1, 0.3, 0.35])), [0, 0.1, 0.3, 0.35, 0.4, 0.6, 0.7])
    assert forward_length(33) == 17
    with pytest.raises(ValueError, match="must be odd"):
        forward_length(32)


def test_palindrome_actions_are_recomputed_not_reversed():
    """Moving forward while turning right: the return leg moves backward while turning left, in
    each frame's own axes, so its translation is not simply the negated forward one."""
    motion = np.tile([0.0, 0.0, 0.05, 3.0, 0.0, 0.0], (8, 1))  # 1.5 m/s forward, 90 deg/s right at 30 fps
    poses = integrate(ue_to_pose(np.zeros(3), np.zeros(3)), motion)
    times = np.arange(9) / 30.0
    frames, turn = palindrome_frames(np.arange(9))
    pal_poses, pal_times = poses[frames], palindrome_times(times)
    pal_motion, pal_actions, _ = clip_labels(pal_poses, pal_times, ActionSpec())
    np.testing.assert_allclose(pal_motion[:turn], relative_motion(poses), atol=1e-12)
    back = pal_motion[turn:]
    np.testing.assert_allclose(back, relative_motion(poses[::-1]), atol=1e-12)
    naive = -relative_motion(poses)[::-1]
    assert np.abs(back[:, 0] - naive[:, 0]).max() > 1e-3  # reversing + negating gets dx wrong
    np.testing.assert_allclose(back[:, 3], -3.0, atol=1e-9)  # yaw left on the way back
    assert (pal_actions[:turn, 0] > 0).all() and (pal_actions[turn:, 1] > 0).all()  # forward, then backward
    assert (pal_actions[:turn, 7] > 0).all() and (pal_actions[turn:, 6] > 0).all()  # yaw right, then left
