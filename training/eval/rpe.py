"""Trajectory alignment and relative pose error: the field's action-following measure. Pure numpy.

* `umeyama` — the similarity transform (s, R, t) minimising Σ |dst_i − (s·R·src_i + t)|²
  (Umeyama 1991, "Least-squares estimation of transformation parameters between two point
  patterns"), by SVD of the cross-covariance with the reflection fix.
* `align_sim3` — camera-to-world poses moved by that transform: centres s·R·c + t, axes R·C.
* `relative_pose_error` — per step (delta 1) E_i = (Q_i⁻¹Q_{i+1})⁻¹ (P_i⁻¹P_{i+1}) between the
  reference path Q and an aligned estimate P (Sturm et al. 2012, the TUM RGB-D benchmark): its
  translation norm (the reference's units) and its rotation angle (degrees).

At delta 1 the alignment's rotation and translation cancel out of every E_i; what the Sim(3)
alignment contributes to RPE is its scale — the one thing a monocular estimate cannot know.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from annotate.geometry import invert_pose, make_pose


def umeyama(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """(N, 3) point sets -> (s, R (3, 3), t (3,)) with dst ≈ s·R·src + t, least squares.

    A source with no spread (every point the same) has no defined rotation or scale: the result is
    s = 0 and R = I, t = mean(dst) — the best any estimate can do with a path that never moves.
    """
    src, dst = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 3 or len(src) < 1:
        raise ValueError(f"umeyama needs two (N, 3) arrays of the same shape, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = float((xs**2).sum() / len(src))
    if var_s < 1e-18:
        return 0.0 if with_scale else 1.0, np.eye(3), mu_d - (0.0 if with_scale else mu_s)
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    fix = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[2, 2] = -1.0
    rot = u @ fix @ vt
    scale = float(np.trace(np.diag(d) @ fix) / var_s) if with_scale else 1.0
    return scale, rot, mu_d - scale * rot @ mu_s


def align_sim3(estimate: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, float]:
    """(T, 4, 4) camera-to-world estimate aligned to `reference` by `umeyama` on the camera centres.
    Returns the aligned poses and the scale."""
    scale, rot, trans = umeyama(estimate[:, :3, 3], reference[:, :3, 3])
    axes = np.einsum("ij,njk->nik", rot, estimate[:, :3, :3])
    return make_pose(axes, scale * estimate[:, :3, 3] @ rot.T + trans), scale


def step_motions(poses: np.ndarray) -> np.ndarray:
    """(T, 4, 4) camera-to-world -> (T-1, 4, 4) P_i⁻¹ P_{i+1}."""
    return invert_pose(poses[:-1]) @ poses[1:]


def relative_pose_error(estimate: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-step translation error (reference units) and rotation error (degrees) of an aligned
    estimate against the reference, both (T, 4, 4) camera-to-world; (T-1,) each."""
    if estimate.shape != reference.shape:
        raise ValueError(f"estimate {estimate.shape} and reference {reference.shape} differ")
    error = invert_pose(step_motions(reference)) @ step_motions(estimate)
    trans = np.linalg.norm(error[:, :3, 3], axis=-1)
    rot = Rotation.from_matrix(error[:, :3, :3]).magnitude() if len(error) else np.zeros(0)
    return trans, np.degrees(rot)


def path_rpe(estimate: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """One clip's RPE after Sim(3) alignment: translation RMSE and mean rotation error over its steps,
    the RELIC / Matrix-Game convention, plus the alignment scale."""
    aligned, scale = align_sim3(estimate, reference)
    trans, rot = relative_pose_error(aligned, reference)
    return {"rpe_t": float(np.sqrt(np.mean(trans**2))), "rpe_r": float(np.mean(rot)), "scale": scale}
