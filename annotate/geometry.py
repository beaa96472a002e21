"""Pose math on internal camera-to-world poses (conventions.md section 2). Pure, vectorized.

A pose is a 4x4 matrix T = [C | c]: C (3x3) holds the camera's x (right), y (down), z (forward)
axes in world coordinates, c is the camera centre. R = C^T is world-to-camera.

Relative motion of transition t -> t+1, as six numbers [dx, dy, dz, yaw, pitch, roll]:
    (dx, dy, dz) = R_t (c_{t+1} - c_t)                      metres, camera-t axes
    own_t = R_t R_{t+1}^T = C_t^T C_{t+1} = R_y(yaw) R_x(pitch) R_z(roll)   degrees, intrinsic YXZ
so that T_{t+1} = T_t @ [[own_t, (dx, dy, dz)], [0, 1]]: integration is a prefix product.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

#: Euler sequence of conventions.md section 2: intrinsic Y (yaw), X (pitch), Z (roll).
EULER_SEQ = "YXZ"
#: Column names of a relative-motion array, in order.
MOTION_NAMES = ("dx", "dy", "dz", "yaw", "pitch", "roll")


def make_pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) camera axes and (..., 3) centre -> (..., 4, 4) camera-to-world."""
    rotation = np.asarray(rotation, dtype=np.float64)
    translation = np.asarray(translation, dtype=np.float64)
    shape = np.broadcast_shapes(rotation.shape[:-2], translation.shape[:-1])
    pose = np.zeros(shape + (4, 4))
    pose[..., :3, :3] = rotation
    pose[..., :3, 3] = translation
    pose[..., 3, 3] = 1.0
    return pose


def invert_pose(pose: np.ndarray) -> np.ndarray:
    """Inverse of rigid (..., 4, 4) transforms (camera-to-world <-> world-to-camera)."""
    rotation_t = np.swapaxes(pose[..., :3, :3], -1, -2)
    return make_pose(rotation_t, -np.einsum("...ij,...j->...i", rotation_t, pose[..., :3, 3]))


def rotation_error(rotation: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (...,) max |R^T R - I|, the distance from orthonormality."""
    gram = np.einsum("...ki,...kj->...ij", rotation, rotation)
    return np.abs(gram - np.eye(3)).max(axis=(-2, -1))


def orthonormalize(rotation: np.ndarray) -> np.ndarray:
    """Nearest proper rotation (Frobenius norm, via SVD) to each (..., 3, 3) matrix."""
    u, _, vt = np.linalg.svd(rotation)
    det = np.linalg.det(u @ vt)
    u[..., :, 2] *= np.sign(det)[..., None]
    return u @ vt


def relative_motion(poses: np.ndarray, *, check: bool = True) -> np.ndarray:
    """(N, 4, 4) camera-to-world poses -> (N-1, 6) [dx, dy, dz (m), yaw, pitch, roll (deg)].

    `check=False` skips the orthonormality check; pass it only for poses already validated (a
    `Trajectory` is), because the Euler decomposition assumes proper rotations.
    """
    poses = np.asarray(poses, dtype=np.float64)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"poses must be (N, 4, 4), got {poses.shape}")
    cams, centres = poses[:, :3, :3], poses[:, :3, 3]
    if check:
        _require_rotations(cams)
    own = relative_rotations(poses)
    out = np.empty((len(own), 6))
    out[:, :3] = np.einsum("nki,nk->ni", cams[:-1], centres[1:] - centres[:-1])
    if len(own):
        out[:, 3:] = Rotation.from_matrix(own, assume_valid=True).as_euler(EULER_SEQ, degrees=True)
    return out


def relative_rotations(poses: np.ndarray) -> np.ndarray:
    """(N, 4, 4) camera-to-world -> (N-1, 3, 3) R_t^T R_{t+1}: camera t+1's axes in camera t's frame."""
    cams = np.asarray(poses, dtype=np.float64)[:, :3, :3]
    return np.einsum("nki,nkj->nij", cams[:-1], cams[1:])


def motion_to_transforms(motion: np.ndarray) -> np.ndarray:
    """(N, 6) relative motion -> (N, 4, 4) body-frame increments M_t with T_{t+1} = T_t @ M_t."""
    motion = np.asarray(motion, dtype=np.float64)
    if motion.ndim != 2 or motion.shape[1] != 6:
        raise ValueError(f"motion must be (N, 6), got {motion.shape}")
    if not np.isfinite(motion).all():
        bad = int(np.flatnonzero(~np.isfinite(motion).all(axis=1))[0])
        raise ValueError(f"motion row {bad} is not finite: {motion[bad].tolist()}")
    own = np.empty((len(motion), 3, 3))
    if len(motion):
        own = Rotation.from_euler(EULER_SEQ, motion[:, 3:], degrees=True).as_matrix()
    return make_pose(own, motion[:, :3])


def integrate(first: np.ndarray, motion: np.ndarray) -> np.ndarray:
    """Integrate (N-1, 6) relative motion from a (4, 4) first pose -> (N, 4, 4) poses.

    Inverse of `relative_motion`: integrate(poses[0], relative_motion(poses)) == poses.
    The running product is a parallel prefix scan (log2 N batched matmuls), not a Python loop.
    """
    first = np.asarray(first, dtype=np.float64)
    if first.shape != (4, 4):
        raise ValueError(f"first pose must be (4, 4), got {first.shape}")
    steps = motion_to_transforms(motion)
    prefix = _prefix_product(np.concatenate([first[None], steps]))
    prefix[:, 3, :] = (0.0, 0.0, 0.0, 1.0)
    return prefix


def _prefix_product(mats: np.ndarray) -> np.ndarray:
    """Inclusive prefix product out[i] = mats[0] @ ... @ mats[i] (Hillis-Steele scan)."""
    out = mats.copy()
    shift = 1
    while shift < len(out):
        out[shift:] = out[:-shift] @ out[shift:]
        shift *= 2
    return out


def _require_rotations(cams: np.ndarray, tol: float = 1e-6) -> None:
    err = rotation_error(cams)
    det = np.linalg.det(cams)
    bad = np.flatnonzero((err > tol) | (det <= 0))
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"pose {i}: rotation is not orthonormal (|R^T R - I| = {err[i]:.2e}, det = {det[i]:.4f}); "
            "validate and orthonormalize poses first (annotate.Trajectory does)"
        )
