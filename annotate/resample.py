"""Resampling a trajectory to a target frame rate before annotation (conventions.md section 3).

New frames sit at t0 + k / fps for every k with t0 + k / fps <= t_end. Rotations are interpolated on
SO(3) (scipy `Slerp`, or `RotationSpline` for C2-smooth angular velocity), positions linearly or by
a cubic spline. Per-pose extras and source lines take the value of the nearest original pose.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.spatial.transform import Rotation, RotationSpline, Slerp

from annotate.geometry import make_pose
from annotate.trajectory import Trajectory, TrajectoryError


class Interpolation(str, enum.Enum):
    LINEAR = "linear"  # slerp + linear positions: no overshoot, velocity jumps at source samples
    CUBIC = "cubic"  # rotation spline + cubic positions: smooth velocity, may overshoot at stops


@dataclass(frozen=True)
class ResampleConfig:
    """Target frame rate of annotation; `fps: null` annotates frames as stored."""

    fps: float | None = None
    method: Interpolation = Interpolation.LINEAR

    def __post_init__(self) -> None:
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be finite and > 0, got {self.fps}")


def resample_times(start: float, end: float, fps: float) -> np.ndarray:
    """Uniform times start + k / fps covering [start, end] (the last one never past `end`)."""
    count = math.floor((end - start) * fps + 1e-9) + 1
    return np.minimum(start + np.arange(count) / fps, end)


def resample(traj: Trajectory, fps: float, method: Interpolation = Interpolation.LINEAR) -> Trajectory:
    """The trajectory sampled at `fps` frames per second over its own time span."""
    ResampleConfig(fps=fps, method=method)  # validates
    times = resample_times(float(traj.timestamps[0]), float(traj.timestamps[-1]), fps)
    if len(times) < 2:
        duration = traj.timestamps[-1] - traj.timestamps[0]
        raise TrajectoryError(traj.source, f"{duration:.4g} s is too short for 2 frames at {fps:g} fps")
    rotations = Rotation.from_matrix(traj.poses[:, :3, :3])
    positions = traj.poses[:, :3, 3]
    if Interpolation(method) is Interpolation.LINEAR:
        new_rotations = Slerp(traj.timestamps, rotations)(times)
        new_positions = np.stack([np.interp(times, traj.timestamps, positions[:, k]) for k in range(3)], axis=1)
    else:
        new_rotations = RotationSpline(traj.timestamps, rotations)(times)
        new_positions = CubicSpline(traj.timestamps, positions, axis=0)(times)
    nearest = _nearest(traj.timestamps, times)
    return Trajectory(
        poses=make_pose(new_rotations.as_matrix(), new_positions),
        timestamps=times,
        source=traj.source,
        lines=None if traj.lines is None else traj.lines[nearest],
        extras={name: column[nearest] for name, column in traj.extras.items()},
        meta={**traj.meta, "resampled": {"fps": fps, "method": Interpolation(method).value}},
    )


def _nearest(source_times: np.ndarray, times: np.ndarray) -> np.ndarray:
    right = np.clip(np.searchsorted(source_times, times), 1, len(source_times) - 1)
    left = right - 1
    return np.where(times - source_times[left] <= source_times[right] - times, left, right)
