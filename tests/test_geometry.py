"""Relative motion and integration (conventions.md section 2)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from annotate.actions import CHANNELS, ActionSpec, encode_actions
from annotate.geometry import integrate, invert_pose, make_pose, orthonormalize, relative_motion
from annotate.readers import ReaderConfig, read_trajectory
from annotate.ue import ue_to_pose, rotator_to_matrix
from tests.conftest import random_poses, real_trajectory_files

seeds = st.integers(0, 2**32 - 1)


def assert_poses_close(got, want, rtol=1e-10):
    scale = max(1.0, float(np.abs(want[:, :3, 3]).max()))
    np.testing.assert_allclose(got[:, :3, :3], want[:, :3, :3], atol=1e-10)
    np.testing.assert_allclose(got[:, :3, 3], want[:, :3, 3], atol=rtol * scale)
    np.testing.assert_array_equal(got[:, 3], np.tile([0.0, 0.0, 0.0, 1.0], (len(want), 1)))


@given(seeds, st.integers(2, 80), st.sampled_from([1.0, 30.0, 120.0]), st.sampled_from([0.01, 1.0, 100.0]))
def test_integrate_inverts_relative_motion(seed, n, step_deg, step_m):
    """Random trajectories, including per-frame turns far beyond 90 degrees."""
    poses = random_poses(np.random.default_rng(seed), n, step_deg=step_deg, step_m=step_m)
    assert_poses_close(integrate(poses[0], relative_motion(poses)), poses)


@given(seeds)
def test_integrate_with_uniformly_random_rotations(seed):
    """Every frame an independent uniformly random orientation: the largest rotations possible."""
    rng = np.random.default_rng(seed)
    poses = make_pose(Rotation.random(50, rng=rng).as_matrix(), rng.normal(size=(50, 3)) * 10)
    assert_poses_close(integrate(poses[0], relative_motion(poses)), poses)


@pytest.mark.parametrize(
    "distance_deg,atol",
    [(0.0, 1e-12), (1e-12, 1e-12), (1e-7, 5e-9), (1e-6, 5e-8), (1e-5, 1e-12), (1e-2, 1e-12)],
)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_round_trip_near_euler_gimbal_lock(distance_deg, atol, sign):
    """A per-frame pitch of +-90 deg: YXZ Euler angles lose a degree of freedom. Within ~1e-6 deg of
    the lock SciPy snaps the third angle to zero, so the round trip error is bounded by that
    distance (<= 2e-8) instead of float precision; everywhere else it is exact."""
    own = Rotation.from_euler("YXZ", [30.0, sign * (90.0 - distance_deg), -40.0], degrees=True).as_matrix()
    poses = make_pose(np.stack([np.eye(3), own]), np.zeros((2, 3)))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Gimbal lock detected")
        motion = relative_motion(poses)
    np.testing.assert_allclose(integrate(poses[0], motion), poses, atol=atol)


@pytest.mark.parametrize("path", real_trajectory_files(), ids=lambda p: p.name)
def test_integrate_reproduces_real_trajectories(path):
    # EuRoC repeats 4 timestamps; keep_first drops those rows explicitly (times play no part here).
    traj = read_trajectory(path, config=ReaderConfig(source_fps=10.0, duplicate_times="keep_first"))
    assert_poses_close(integrate(traj.poses[0], relative_motion(traj.poses)), traj.poses)


@given(seeds)
def test_euler_angles_match_closed_form(seed):
    """Independent oracle: own = R_y(yaw) R_x(pitch) R_z(roll) solved by hand."""
    poses = random_poses(np.random.default_rng(seed), 20, step_deg=40)
    cams = poses[:, :3, :3]
    own = np.einsum("nki,nkj->nij", cams[:-1], cams[1:])
    pitch = np.degrees(np.arcsin(-own[:, 1, 2]))
    yaw = np.degrees(np.arctan2(own[:, 0, 2], own[:, 2, 2]))
    roll = np.degrees(np.arctan2(own[:, 1, 0], own[:, 1, 1]))
    motion = relative_motion(poses)
    np.testing.assert_allclose(motion[:, 3:], np.stack([yaw, pitch, roll], axis=1), atol=1e-8)
    dp = np.einsum("nki,nk->ni", cams[:-1], poses[1:, :3, 3] - poses[:-1, :3, 3])
    np.testing.assert_allclose(motion[:, :3], dp, atol=1e-12)


def test_motion_is_invariant_to_moving_the_world():
    rng = np.random.default_rng(3)
    poses = random_poses(rng, 30)
    world = make_pose(Rotation.random(rng=rng).as_matrix(), rng.normal(size=3) * 100)
    np.testing.assert_allclose(relative_motion(world @ poses), relative_motion(poses), atol=1e-9)


# --- Known answers: pure UE motions light exactly one motion component and one action channel. ---

START_ROTATORS = {"at rest": (0.0, 0.0, 0.0), "after a 90 deg turn": (0.0, 90.0, 0.0), "pitched": (30.0, 0.0, 0.0),
                  "turned and pitched": (-25.0, -90.0, 0.0)}


def ue_step(rotator, *, d_rot=(0.0, 0.0, 0.0), along=None, cm=0.0):
    """Two UE poses: start, then rotator + d_rot (pitch, yaw, roll) or moved `cm` along a camera axis."""
    rows = rotator_to_matrix(rotator)  # forward, right, up in UE world
    start = np.array([120.0, -40.0, 170.0])
    end = start + (rows[{"forward": 0, "right": 1, "up": 2}[along]] * cm if along else 0.0)
    return np.stack([ue_to_pose(start, rotator), ue_to_pose(end, np.add(rotator, d_rot))])


PURE = [
    # (name, step kwargs, motion column, expected value, channel)
    ("forward", dict(along="forward", cm=10.0), 2, 0.10, "forward"),
    ("backward", dict(along="forward", cm=-10.0), 2, -0.10, "backward"),
    ("right", dict(along="right", cm=10.0), 0, 0.10, "right"),
    ("left", dict(along="right", cm=-10.0), 0, -0.10, "left"),
    ("up", dict(along="up", cm=10.0), 1, -0.10, "up"),
    ("down", dict(along="up", cm=-10.0), 1, 0.10, "down"),
    ("pitch up", dict(d_rot=(4.0, 0.0, 0.0)), 4, 4.0, "pitch_up"),
    ("pitch down", dict(d_rot=(-4.0, 0.0, 0.0)), 4, -4.0, "pitch_down"),
    ("roll right", dict(d_rot=(0.0, 0.0, 4.0)), 5, 4.0, "roll_right"),
    ("roll left", dict(d_rot=(0.0, 0.0, -4.0)), 5, -4.0, "roll_left"),
]


@pytest.mark.parametrize("start", START_ROTATORS.values(), ids=START_ROTATORS.keys())
@pytest.mark.parametrize("name,step,column,value,channel", PURE, ids=[p[0] for p in PURE])
def test_pure_ue_motion_lights_one_channel(start, name, step, column, value, channel):
    motion = relative_motion(ue_step(start, **step))[0]
    expected = np.zeros(6)
    expected[column] = value
    np.testing.assert_allclose(motion, expected, atol=1e-12)
    actions = encode_actions(motion[None], 1 / 30, ActionSpec())[0]
    assert [CHANNELS[i] for i in np.flatnonzero(actions)] == [channel]


@pytest.mark.parametrize("start", [(0.0, 0.0, 0.0), (0.0, 90.0, 0.0), (0.0, -135.0, 0.0)])
@pytest.mark.parametrize("d_yaw,channel", [(4.0, "yaw_right"), (-4.0, "yaw_left")])
def test_pure_ue_yaw_when_level(start, d_yaw, channel):
    motion = relative_motion(ue_step(start, d_rot=(0.0, d_yaw, 0.0)))[0]
    np.testing.assert_allclose(motion, [0, 0, 0, d_yaw, 0, 0], atol=1e-12)
    actions = encode_actions(motion[None], 1 / 30, ActionSpec())[0]
    assert [CHANNELS[i] for i in np.flatnonzero(actions)] == [channel]


@pytest.mark.parametrize("pitch", [30.0, -45.0])
def test_ue_yaw_while_pitched_is_camera_yaw_plus_roll(pitch):
    """conventions.md section 2: yaw about world-up while pitched = camera yaw + a roll.
    Rotating by d about world up is rotating about the camera-frame axis cos(p) y - sin(p) z."""
    d = 1e-3
    motion = relative_motion(ue_step((pitch, 0.0, 0.0), d_rot=(0.0, d, 0.0)))[0]
    np.testing.assert_allclose(motion[:3], 0.0, atol=1e-12)
    np.testing.assert_allclose(motion[3:], [d * np.cos(np.radians(pitch)), 0.0, -d * np.sin(np.radians(pitch))],
                               atol=1e-8)


def test_invert_pose_and_orthonormalize():
    rng = np.random.default_rng(1)
    poses = random_poses(rng, 10)
    np.testing.assert_allclose(invert_pose(poses) @ poses, np.tile(np.eye(4), (10, 1, 1)), atol=1e-12)
    noisy = poses[:, :3, :3] + rng.normal(scale=1e-5, size=(10, 3, 3))
    fixed = orthonormalize(noisy)
    np.testing.assert_allclose(np.einsum("nki,nkj->nij", fixed, fixed), np.tile(np.eye(3), (10, 1, 1)), atol=1e-14)
    np.testing.assert_allclose(fixed, poses[:, :3, :3], atol=1e-4)
    assert (np.linalg.det(fixed) > 0).all()


def test_relative_motion_rejects_non_rotations():
    poses = random_poses(np.random.default_rng(2), 5)
    poses[3, :3, :3] *= 1.01
    with pytest.raises(ValueError, match="pose 3: rotation is not orthonormal"):
        relative_motion(poses)
    with pytest.raises(ValueError, match=r"poses must be \(N, 4, 4\)"):
        relative_motion(poses[:, :3])
