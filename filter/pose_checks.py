"""Per-frame checks on camera poses. Pure functions of (poses, times).

A transition t -> t+1 belongs to frame t+1 (the frame it arrives at): dropping that frame removes
the transition from every segment. Frame 0 has no incoming transition; its transition scores are NaN.

Scores (per frame, all kept in the report):
    dt               s      interval from the previous frame
    speed            m/s    |P_t - P_{t-1}| / dt
    angular_speed    deg/s  angle of R_{t-1}^T R_t / dt
    accel            m/s^2  |v_t - v_{t-1}| / dt, v the world-frame velocity of each transition
    angular_accel    deg/s^2  same for the body angular velocity
    jitter_translation m/s  rolling RMS of |v - savgol(v)|: shake left after smoothing
    jitter_rotation  deg/s  the same for the angular velocity
    step_ratio       -      step length over the median step within +-0.5 s (teleports)
    gap_ratio        -      dt over the trajectory's median dt
    pitch, roll      deg    the camera's UE pitch and roll (0 = level)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.ndimage import median_filter
from scipy.signal import savgol_filter
from scipy.spatial.transform import Rotation

from annotate.geometry import relative_rotations
from annotate.ue import pose_to_ue
from filter.config import PoseChecks
from filter.reasons import Reason

POSE_SCORES = ("dt", "speed", "angular_speed", "accel", "angular_accel", "jitter_translation", "jitter_rotation",
               "step_ratio", "gap_ratio", "pitch", "roll")


def pose_scores(poses: np.ndarray, times: np.ndarray, config: PoseChecks) -> dict[str, np.ndarray]:
    """(N, 4, 4) camera-to-world poses and (N,) times -> {score name: (N,) float64}."""
    n = len(poses)
    out = {name: np.full(n, np.nan) for name in POSE_SCORES}
    finite = np.isfinite(poses).all(axis=(1, 2))
    if finite.any():
        _, rotator = pose_to_ue(np.where(finite[:, None, None], poses, np.eye(4)))
        out["pitch"], out["roll"] = np.where(finite, rotator[:, 0], np.nan), np.where(finite, rotator[:, 2], np.nan)
    if n < 2 or not finite.all():
        return out  # motion is undefined; invalid_pose flags the non-finite rows
    dt = np.diff(times)
    steps = np.diff(poses[:, :3, 3], axis=0)  # (N-1, 3) world frame, m
    velocity = steps / dt[:, None]
    omega = np.rad2deg(Rotation.from_matrix(relative_rotations(poses)).as_rotvec()) / dt[:, None]  # body, deg/s
    step = np.linalg.norm(steps, axis=1)
    out["dt"][1:] = dt
    out["speed"][1:] = step / dt
    out["angular_speed"][1:] = np.linalg.norm(omega, axis=1)
    out["accel"][2:] = np.linalg.norm(np.diff(velocity, axis=0), axis=1) / dt[1:]
    out["angular_accel"][2:] = np.linalg.norm(np.diff(omega, axis=0), axis=1) / dt[1:]
    median_dt = float(np.median(dt))
    out["gap_ratio"][1:] = dt / median_dt
    fps = 1.0 / median_dt
    around = _odd(fps * 1.0)  # +-0.5 s
    local = median_filter(step, size=around, mode="nearest")
    out["step_ratio"][1:] = step / np.maximum(local, 1e-6)
    # a teleport is one outlier transition, not shake: left in, the smoothing spreads it over the
    # window and its neighbours read as jitter; its velocity is interpolated for the jitter scores
    jump = (step > config.teleport_min_m) & (out["step_ratio"][1:] > config.teleport_ratio)
    out["jitter_translation"][1:] = _jitter(_bridge(velocity, jump), fps, config)
    out["jitter_rotation"][1:] = _jitter(_bridge(omega, jump), fps, config)
    return out


def time_scores(times: np.ndarray) -> dict[str, np.ndarray]:
    """`pose_scores` for footage without poses: only the ones times give (dt, gap_ratio); NaN elsewhere."""
    n = len(times)
    out = {name: np.full(n, np.nan) for name in POSE_SCORES}
    if n > 1:
        dt = np.diff(times)
        out["dt"][1:] = dt
        out["gap_ratio"][1:] = dt / float(np.median(dt))
    return out


def pose_flags(scores: dict[str, np.ndarray], config: PoseChecks, posed: bool = True) -> dict[Reason, np.ndarray]:
    """{reason: (N,) bool} from `pose_scores` (or `time_scores`, posed=False: no pose is invalid
    there, it has none); NaN scores never flag."""
    s = {name: np.nan_to_num(value, nan=0.0) for name, value in scores.items()}
    invalid = ~np.isfinite(scores["pitch"]) | (np.abs(s["pitch"]) > config.max_pitch_deg) | (
        np.abs(s["roll"]) > config.max_roll_deg)
    invalid &= posed
    return {
        Reason.JITTER: (s["jitter_translation"] > config.jitter_translation) | (s["jitter_rotation"] > config.jitter_rotation),
        Reason.ABRUPT_TRANSLATION: (s["speed"] > config.max_speed) | (s["accel"] > config.max_accel),
        Reason.ABRUPT_ROTATION: (s["angular_speed"] > config.max_angular_speed) | (s["angular_accel"] > config.max_angular_accel),
        Reason.TELEPORT: (s["speed"] * s["dt"] > config.teleport_min_m) & (s["step_ratio"] > config.teleport_ratio),
        Reason.INVALID_POSE: invalid,
        Reason.TIME_GAP: s["gap_ratio"] > config.gap_ratio,
    }


def _bridge(rate: np.ndarray, skip: np.ndarray) -> np.ndarray:
    """(M, 3) rates with the `skip` rows replaced by linear interpolation over the others."""
    if not skip.any() or skip.all():
        return rate
    index = np.arange(len(rate))
    return np.stack([np.interp(index, index[~skip], rate[~skip, k]) for k in range(rate.shape[1])], axis=1)


def _jitter(rate: np.ndarray, fps: float, config: PoseChecks) -> np.ndarray:
    """(M, 3) per-transition rate -> (M,) rolling RMS of its residual after Savitzky-Golay smoothing."""
    m = len(rate)
    shortest = config.smooth_order + 3 - (config.smooth_order % 2)  # odd, two samples more than a pure fit
    window = min(max(_odd(config.smooth_window_s * fps), shortest), m if m % 2 else m - 1)
    if window <= config.smooth_order:
        return np.zeros(m)
    residual = np.linalg.norm(rate - savgol_filter(rate, window, config.smooth_order, axis=0, mode="interp"), axis=1)
    rms_window = max(1, round(config.jitter_window_s * fps))
    mean_square = pd.Series(residual ** 2).rolling(rms_window, center=True, min_periods=1).mean().to_numpy()
    return np.sqrt(mean_square)


def _odd(frames: float) -> int:
    """The odd window length nearest to `frames`, at least 3."""
    k = max(3, int(round(frames)))
    return k if k % 2 else k + 1
