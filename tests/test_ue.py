"""UE rotator <-> matrix <-> internal pose, and FOV -> intrinsics (conventions.md section 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from annotate.ue import fov_to_intrinsics, matrix_to_rotator, pose_to_ue, rotator_to_matrix, ue_to_pose

angles = st.floats(-360.0, 360.0, allow_nan=False)
pitches = st.floats(-89.0, 89.0, allow_nan=False)
locations = st.lists(st.floats(-1e5, 1e5, allow_nan=False), min_size=3, max_size=3)


def frotation_matrix(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """The FRotationMatrix formula of conventions.md, transcribed literally with scalar math."""
    p, y, r = map(math.radians, (pitch, yaw, roll))
    sp, cp, sy, cy, sr, cr = math.sin(p), math.cos(p), math.sin(y), math.cos(y), math.sin(r), math.cos(r)
    return np.array(
        [
            [cp * cy, cp * sy, sp],
            [sr * sp * cy - cr * sy, sr * sp * sy + cr * cy, -sr * cp],
            [-(cr * sp * cy + sr * sy), cy * sr - cr * sp * sy, cr * cp],
        ]
    )


def elementary_composition(pitch: float, yaw: float, roll: float) -> np.ndarray:
    """Independent oracle: UE applies roll about X, then pitch about Y, then yaw about Z. In UE's
    numeric axes, +pitch raises X toward +Z and +roll tips +Y toward -Z, hence the signs."""
    axes = Rotation.from_euler("ZYX", [yaw, -pitch, -roll], degrees=True).as_matrix()
    return axes.T  # rows: forward, right, up


@given(angles, angles, angles)
def test_rotator_matrix_matches_frotationmatrix(pitch, yaw, roll):
    got = rotator_to_matrix([pitch, yaw, roll])
    np.testing.assert_allclose(got, frotation_matrix(pitch, yaw, roll), atol=1e-12)
    np.testing.assert_allclose(got, elementary_composition(pitch, yaw, roll), atol=1e-12)


def test_rotator_known_answers():
    np.testing.assert_allclose(rotator_to_matrix([0, 0, 0]), np.eye(3), atol=1e-15)
    # Yaw +90 turns forward from +X toward +Y (right).
    np.testing.assert_allclose(rotator_to_matrix([0, 90, 0]), [[0, 1, 0], [-1, 0, 0], [0, 0, 1]], atol=1e-15)
    # Pitch +90 looks straight up; up then points back along -X.
    np.testing.assert_allclose(rotator_to_matrix([90, 0, 0]), [[0, 0, 1], [0, 1, 0], [-1, 0, 0]], atol=1e-15)
    # Roll +90 tips the right axis down.
    np.testing.assert_allclose(rotator_to_matrix([0, 0, 90]), [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-15)


def test_rotator_matrix_vectorizes():
    rng = np.random.default_rng(0)
    rotators = rng.uniform(-180, 180, size=(7, 5, 3))
    batch = rotator_to_matrix(rotators)
    assert batch.shape == (7, 5, 3, 3)
    np.testing.assert_allclose(batch[3, 2], frotation_matrix(*rotators[3, 2]), atol=1e-12)


@given(pitches, angles, angles)
def test_matrix_to_rotator_inverts(pitch, yaw, roll):
    back = matrix_to_rotator(rotator_to_matrix([pitch, yaw, roll]))
    wrapped = (np.array([pitch, yaw, roll]) - back + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(wrapped, 0.0, atol=1e-8)
    assert -90 <= back[0] <= 90 and -180 <= back[1] <= 180 and -180 <= back[2] <= 180


@given(st.sampled_from([90.0, -90.0]), angles, angles)
def test_matrix_round_trip_at_gimbal_lock(pitch, yaw, roll):
    matrix = rotator_to_matrix([pitch, yaw, roll])
    np.testing.assert_allclose(rotator_to_matrix(matrix_to_rotator(matrix)), matrix, atol=1e-9)


def test_internal_pose_axes_and_units():
    pose = ue_to_pose([100.0, 200.0, 300.0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(pose[:3, 3], [1.0, -2.0, 3.0])  # Y flipped, cm -> m
    np.testing.assert_allclose(pose[:3, 2], [1, 0, 0], atol=1e-15)  # camera z = UE forward (+X)
    np.testing.assert_allclose(pose[:3, 0], [0, -1, 0], atol=1e-15)  # camera x = UE right (+Y) flipped
    np.testing.assert_allclose(pose[:3, 1], [0, 0, -1], atol=1e-15)  # camera y = down
    np.testing.assert_array_equal(pose[3], [0, 0, 0, 1])


@given(locations, angles, angles, angles)
def test_internal_pose_is_proper_and_inverts(location, pitch, yaw, roll):
    pose = ue_to_pose(location, [pitch, yaw, roll])
    rotation = pose[:3, :3]
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    back_location, back_rotator = pose_to_ue(pose)
    np.testing.assert_allclose(back_location, location, atol=1e-8)
    np.testing.assert_allclose(rotator_to_matrix(back_rotator), rotator_to_matrix([pitch, yaw, roll]), atol=1e-9)


def test_positive_yaw_turns_right_in_image():
    """A point straight ahead moves left in the image (x < 0 in camera coords) after turning right."""
    before = ue_to_pose([0, 0, 0], [0, 0, 0])
    after = ue_to_pose([0, 0, 0], [0, 10, 0])
    ahead = before[:3, 3] + before[:3, 2] * 5.0
    in_camera = after[:3, :3].T @ (ahead - after[:3, 3])
    assert in_camera[0] < 0


def test_fov_to_intrinsics():
    np.testing.assert_allclose(fov_to_intrinsics(90.0, 640, 480), [[320, 0, 320], [0, 320, 240], [0, 0, 1]])
    # UE applies the FOV to the longer side: portrait uses the height.
    np.testing.assert_allclose(fov_to_intrinsics(90.0, 480, 640)[0, 0], 320.0)
    assert fov_to_intrinsics(60.0, 256, 144)[0, 0] == pytest.approx(128 / math.tan(math.radians(30)))


@pytest.mark.parametrize("fov,w,h", [(0.0, 64, 64), (180.0, 64, 64), (90.0, 0, 64), (90.0, 64, -1)])
def test_fov_to_intrinsics_rejects_bad_values(fov, w, h):
    with pytest.raises(ValueError):
        fov_to_intrinsics(fov, w, h)
