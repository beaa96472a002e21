"""Unreal Engine conventions <-> internal poses (conventions.md section 1). Pure, vectorized.

UE: left-handed world, Z up, +X forward, +Y right, centimetres; rotator (pitch, yaw, roll) in degrees.
Internal: right-handed Z-up world in metres (UE world Y flipped, divided by 100); camera-to-world
4x4 poses with OpenCV camera axes (x right, y down, z forward).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

#: UE world -> internal world axis flip (applied to vectors).
S = np.diag([1.0, -1.0, 1.0])
#: centimetres per metre.
CM_PER_M = 100.0


def rotator_to_matrix(rotator: np.ndarray) -> np.ndarray:
    """UE FRotationMatrix of rotators: (..., 3) [pitch, yaw, roll] deg -> (..., 3, 3).

    Rows are the camera's forward, right and up axes in UE world coordinates.
    """
    rotator = np.asarray(rotator, dtype=np.float64)
    p, y, r = np.deg2rad(rotator[..., 0]), np.deg2rad(rotator[..., 1]), np.deg2rad(rotator[..., 2])
    sp, cp, sy, cy, sr, cr = np.sin(p), np.cos(p), np.sin(y), np.cos(y), np.sin(r), np.cos(r)
    forward = np.stack([cp * cy, cp * sy, sp], axis=-1)
    right = np.stack([sr * sp * cy - cr * sy, sr * sp * sy + cr * cy, -sr * cp], axis=-1)
    up = np.stack([-(cr * sp * cy + sr * sy), cy * sr - cr * sp * sy, cr * cp], axis=-1)
    return np.stack([forward, right, up], axis=-2)


def matrix_to_rotator(matrix: np.ndarray) -> np.ndarray:
    """Inverse of `rotator_to_matrix`: (..., 3, 3) rows forward/right/up -> (..., 3) [pitch, yaw, roll] deg.

    Pitch in [-90, 90], yaw and roll in (-180, 180]. At pitch = +-90 deg yaw and roll are not unique;
    the pair returned still reproduces the matrix.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    forward, right = matrix[..., 0, :], matrix[..., 1, :]
    pitch = np.arctan2(forward[..., 2], np.hypot(forward[..., 0], forward[..., 1]))
    yaw = np.arctan2(forward[..., 1], forward[..., 0])
    sp, cp, sy, cy = np.sin(pitch), np.cos(pitch), np.sin(yaw), np.cos(yaw)
    # With roll: right = cos(roll) * right0 - sin(roll) * up0, where right0/up0 are the roll-free axes.
    right0 = np.stack([-sy, cy, np.zeros_like(sy)], axis=-1)
    up0 = np.stack([-sp * cy, -sp * sy, cp], axis=-1)
    roll = np.arctan2(-np.sum(right * up0, axis=-1), np.sum(right * right0, axis=-1))
    return np.rad2deg(np.stack([pitch, yaw, roll], axis=-1))


def ue_to_pose(location_cm: np.ndarray, rotator: np.ndarray) -> np.ndarray:
    """UE camera location (..., 3) cm and rotator (..., 3) deg -> internal camera-to-world (..., 4, 4)."""
    location_cm = np.asarray(location_cm, dtype=np.float64)
    rows = rotator_to_matrix(rotator)  # (..., 3 rows: forward, right, up)
    forward, right, up = rows[..., 0, :] @ S, rows[..., 1, :] @ S, rows[..., 2, :] @ S
    pose = np.zeros(np.broadcast_shapes(location_cm.shape, rows.shape[:-1])[:-1] + (4, 4))
    pose[..., :3, 0] = right
    pose[..., :3, 1] = -up
    pose[..., :3, 2] = forward
    pose[..., :3, 3] = location_from_ue(location_cm)
    pose[..., 3, 3] = 1.0
    return pose


def pose_to_ue(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Internal camera-to-world (..., 4, 4) -> (UE location (..., 3) cm, UE rotator (..., 3) deg)."""
    pose = np.asarray(pose, dtype=np.float64)
    right = pose[..., :3, 0] @ S
    up = -pose[..., :3, 1] @ S
    forward = pose[..., :3, 2] @ S
    rotator = matrix_to_rotator(np.stack([forward, right, up], axis=-2))
    location = location_to_ue(pose[..., :3, 3])
    return location, rotator


def location_from_ue(location_cm: ArrayLike) -> np.ndarray:
    """UE locations in cm (..., 3) -> internal points in metres (..., 3): Y flipped, scaled."""
    return (np.asarray(location_cm, dtype=np.float64) @ S) / CM_PER_M


def location_to_ue(points_m: ArrayLike) -> np.ndarray:
    """Internal points in metres (..., 3) -> UE locations in cm (..., 3) (S is its own inverse)."""
    return (np.asarray(points_m, dtype=np.float64) @ S) * CM_PER_M


def fov_to_intrinsics(fov_deg: float, width: int, height: int) -> np.ndarray:
    """UE horizontal FOV (applied to the longer image side) -> 3x3 pinhole K (fx = fy, centred)."""
    if not 0.0 < fov_deg < 180.0:
        raise ValueError(f"fov must be in (0, 180) degrees, got {fov_deg}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    f = max(width, height) / (2.0 * np.tan(np.deg2rad(fov_deg) / 2.0))
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
