"""The Trajectory record: internal camera-to-world poses with timestamps, validated once.

Readers build trajectories through `Trajectory.from_arrays`, which checks every row and names the
file and line of the first bad one; the record's own check (`__post_init__`) guards every other
constructor (resampling, integration, capture) with the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from annotate.geometry import make_pose, orthonormalize, rotation_error

#: Largest |R^T R - I| accepted from a pose file; such rotations are snapped to the nearest rotation.
DEFAULT_ROTATION_TOLERANCE = 1e-4
#: Largest |R^T R - I| a constructed Trajectory may have (after snapping, errors are ~1e-15).
RECORD_ROTATION_TOLERANCE = 1e-9


class TrajectoryError(ValueError):
    """Bad trajectory input; the message starts with `source:line:` (or `source:` for whole-file problems)."""

    def __init__(self, source: str, message: str, line: int | None = None):
        self.source, self.line, self.reason = source, line, message
        super().__init__(f"{source}:{line}: {message}" if line is not None else f"{source}: {message}")


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A camera path in internal conventions (conventions.md section 1).

    poses:      (N, 4, 4) float64 camera-to-world, OpenCV camera axes, right-handed Z-up world, metres
    timestamps: (N,) float64 seconds, strictly increasing
    source:     where it came from (a file path), used in every error message
    lines:      (N,) int, the source line of each pose (0 when not from a file)
    extras:     per-pose extra columns, each (N,) (e.g. a UE CSV's optional columns)
    meta:       per-trajectory facts (format, RE10K URL, ...)
    """

    poses: np.ndarray
    timestamps: np.ndarray
    source: str
    lines: np.ndarray | None = None
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.poses)
        if self.poses.shape != (n, 4, 4) or self.poses.dtype != np.float64:
            raise TrajectoryError(self.source, f"poses must be float64 (N, 4, 4), got {self.poses.dtype} {self.poses.shape}")
        if self.timestamps.shape != (n,):
            raise TrajectoryError(self.source, f"{n} poses but timestamps of shape {self.timestamps.shape}")
        lines = self.lines if self.lines is not None else np.zeros(n, dtype=np.int64)
        if lines.shape != (n,):
            raise TrajectoryError(self.source, f"{n} poses but lines of shape {lines.shape}")
        object.__setattr__(self, "lines", lines)
        for name, column in self.extras.items():
            if len(column) != n:
                raise TrajectoryError(self.source, f"extra column {name!r} has {len(column)} values for {n} poses")
        bottom_ok = np.all(self.poses[:, 3, :] == (0.0, 0.0, 0.0, 1.0), axis=1)
        check_poses(
            self.source,
            lines,
            self.timestamps,
            self.poses[:, :3, :3],
            self.poses[:, :3, 3],
            RECORD_ROTATION_TOLERANCE,
        )
        if not bottom_ok.all():
            i = int(np.flatnonzero(~bottom_ok)[0])
            _fail(self.source, lines, i, "bottom row of the pose matrix is not [0 0 0 1]")

    def __len__(self) -> int:
        return len(self.poses)

    @classmethod
    def from_arrays(
        cls,
        source: str,
        lines: np.ndarray,
        timestamps: np.ndarray,
        rotations: np.ndarray,
        translations: np.ndarray,
        *,
        extras: Mapping[str, np.ndarray] | None = None,
        meta: Mapping[str, Any] | None = None,
        rotation_tolerance: float = DEFAULT_ROTATION_TOLERANCE,
        drop_duplicate_times: bool = False,
    ) -> Trajectory:
        """Validate raw rows (naming file and line of the first bad one), snap rotations, build.

        `drop_duplicate_times` removes each row whose time equals the previous row's (keeping the
        first) and lists them in `meta["dropped"]`; otherwise a repeated time is an error.
        """
        lines = np.asarray(lines, dtype=np.int64)
        timestamps = np.asarray(timestamps, dtype=np.float64)
        rotations = np.asarray(rotations, dtype=np.float64)
        translations = np.asarray(translations, dtype=np.float64)
        extras = dict(extras or {})
        meta = dict(meta or {})
        if drop_duplicate_times:
            repeat = np.concatenate([[False], np.diff(timestamps) == 0])
            if repeat.any():
                meta["dropped"] = [{"line": int(line), "reason": "duplicate time"} for line in lines[repeat]]
                keep = ~repeat
                lines, timestamps, rotations, translations = lines[keep], timestamps[keep], rotations[keep], translations[keep]
                extras = {name: column[keep] for name, column in extras.items()}
        check_poses(source, lines, timestamps, rotations, translations, rotation_tolerance)
        return cls(
            poses=make_pose(orthonormalize(rotations), translations),
            timestamps=timestamps,
            source=source,
            lines=lines,
            extras=extras,
            meta=meta,
        )

    @property
    def dt(self) -> np.ndarray:
        """(N-1,) frame intervals in seconds."""
        return np.diff(self.timestamps)


def check_poses(
    source: str,
    lines: np.ndarray,
    timestamps: np.ndarray,
    rotations: np.ndarray,
    translations: np.ndarray,
    rotation_tolerance: float,
) -> None:
    """Raise TrajectoryError at the first bad row: count, finiteness, time order, rotation validity."""
    n = len(timestamps)
    if n == 0:
        raise TrajectoryError(source, "no poses: a trajectory needs at least 2")
    if n == 1:
        _fail(source, lines, 0, "only one pose: a trajectory needs at least 2")
    finite = np.isfinite(timestamps) & np.isfinite(rotations).all(axis=(1, 2)) & np.isfinite(translations).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        _fail(source, lines, i, "pose or time is not finite (NaN or inf)")
    step = np.diff(timestamps)
    if (step <= 0).any():
        i = int(np.flatnonzero(step <= 0)[0]) + 1
        previous = f"line {_line(lines, i - 1)}" if _line(lines, i - 1) else f"pose {i - 1}"
        _fail(
            source,
            lines,
            i,
            f"time {float(timestamps[i])!r} is not greater than the previous time {float(timestamps[i - 1])!r} "
            f"({previous}): times must strictly increase"
            + ("; to drop rows that repeat a time, set reader.duplicate_times=keep_first" if step[i - 1] == 0 else ""),
        )
    err = rotation_error(rotations)
    det = np.linalg.det(rotations)
    bad = (err > rotation_tolerance) | (det <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        what = "a reflection (det < 0)" if det[i] <= 0 else f"not orthonormal (|R^T R - I| = {err[i]:.2e})"
        _fail(source, lines, i, f"rotation is {what}; tolerance is {rotation_tolerance:g}")


def _line(lines: np.ndarray, i: int) -> int | None:
    return int(lines[i]) if len(lines) > i and lines[i] > 0 else None


def _fail(source: str, lines: np.ndarray, i: int, message: str) -> None:
    """Raise naming the source line of pose i, or the pose index when it has no line."""
    line = _line(lines, i)
    raise TrajectoryError(source, message if line is not None else f"pose {i}: {message}", line)
