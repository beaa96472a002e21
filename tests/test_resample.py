"""Resampling to a target frame rate before annotation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from annotate.annotation import annotate
from annotate.actions import ActionSpec
from annotate.geometry import make_pose
from annotate.readers import read_tum
from annotate.resample import Interpolation, ResampleConfig, resample, resample_times
from annotate.trajectory import Trajectory, TrajectoryError
from tests.conftest import REAL_TRAJECTORIES


def constant_screw(fps: float, seconds: float, speed=(0.3, -0.1, 1.2), rate_deg=(20.0, 5.0, -8.0)) -> Trajectory:
    """Constant body-frame velocity and angular velocity, sampled at `fps`."""
    times = np.arange(int(round(seconds * fps)) + 1) / fps
    step = make_pose(Rotation.from_rotvec(np.radians(rate_deg) / fps).as_matrix(), np.array(speed) / fps)
    poses = [np.eye(4)]
    for _ in times[1:]:
        poses.append(poses[-1] @ step)
    return Trajectory(poses=np.array(poses), timestamps=times, source="screw")


@pytest.mark.parametrize("method", list(Interpolation))
@pytest.mark.parametrize("source_fps,target_fps", [(60.0, 30.0), (30.0, 10.0), (10.0, 30.0), (24.0, 25.0)])
def test_constant_motion_resamples_to_scaled_steps(method, source_fps, target_fps):
    """Constant angular velocity + a straight line in world space stay exact under both methods."""
    times = np.arange(61) / source_fps
    rotations = Rotation.from_rotvec(np.outer(times, np.radians([20.0, 5.0, -8.0])))
    positions = np.outer(times, [0.3, -0.1, 1.2])
    traj = Trajectory(poses=make_pose(rotations.as_matrix(), positions), timestamps=times, source="line")
    out = resample(traj, target_fps, method)
    np.testing.assert_allclose(np.diff(out.timestamps), 1 / target_fps, atol=1e-12)
    want_rot = Rotation.from_rotvec(np.outer(out.timestamps, np.radians([20.0, 5.0, -8.0]))).as_matrix()
    np.testing.assert_allclose(out.poses[:, :3, :3], want_rot, atol=1e-9)
    np.testing.assert_allclose(out.poses[:, :3, 3], np.outer(out.timestamps, [0.3, -0.1, 1.2]), atol=1e-9)
    assert out.meta["resampled"] == {"fps": target_fps, "method": method.value}


def test_downsampling_by_an_integer_factor_keeps_every_kth_pose():
    traj = constant_screw(60.0, 2.0)
    out = resample(traj, 20.0)
    np.testing.assert_allclose(out.poses, traj.poses[::3], atol=1e-12)


def test_labels_follow_speed_not_frame_rate():
    """The same constant motion annotated at 60 fps and resampled to 15 fps gets the same labels."""
    traj = constant_screw(60.0, 2.0)
    at_60 = annotate(traj, ActionSpec()).actions
    at_15 = annotate(resample(traj, 15.0), ActionSpec()).actions
    np.testing.assert_array_equal(at_60[0], at_15[0])
    assert (at_60 == at_60[0]).all() and (at_15 == at_15[0]).all()


def test_real_hand_held_trajectory_resampled_to_10_fps():
    traj = read_tum(REAL_TRAJECTORIES / "tum_freiburg1_xyz_rgbdslam.tum")
    out = resample(traj, 10.0)
    assert out.timestamps[0] == traj.timestamps[0] and out.timestamps[-1] <= traj.timestamps[-1]
    np.testing.assert_allclose(np.diff(out.timestamps), 0.1, atol=1e-6)
    assert len(out) == int((traj.timestamps[-1] - traj.timestamps[0]) * 10 + 1e-9) + 1
    # Each new pose lies between its neighbouring source poses.
    k = np.searchsorted(traj.timestamps, out.timestamps[5])
    lo, hi = traj.poses[k - 1, :3, 3], traj.poses[k, :3, 3]
    assert np.all(out.poses[5, :3, 3] >= np.minimum(lo, hi) - 1e-12)
    assert np.all(out.poses[5, :3, 3] <= np.maximum(lo, hi) + 1e-12)
    assert set(out.lines) <= set(traj.lines)


def test_resample_times_cover_the_span():
    np.testing.assert_allclose(resample_times(1.0, 2.0, 4.0), [1.0, 1.25, 1.5, 1.75, 2.0])
    assert resample_times(0.0, 0.99999, 1.0).tolist() == [0.0]
    assert resample_times(0.0, 0.3, 10.0)[-1] <= 0.3


def test_too_short_and_bad_fps():
    traj = constant_screw(60.0, 0.05)
    with pytest.raises(TrajectoryError, match=r"screw: 0.05 s is too short for 2 frames at 10 fps"):
        resample(traj, 10.0)
    with pytest.raises(ValueError, match="fps must be finite and > 0"):
        ResampleConfig(fps=0.0)
