"""Pose faults put into a camera path on purpose: the damage real recordings have (tracking jitter,
a dash or whip pan, a teleport, dropped frames, a rolled frame), for labelled filter data
(capture/standin/footage.py, filter/evaluate.py) and for planned paths that show the filter at work
(`planner.faults`, the demo build).

Faults and their magnitude:
    jitter_translation  mm    std of Gaussian position noise over a 1 s span
    jitter_rotation     deg   std of Gaussian rotation noise (per axis) over a 1 s span
    abrupt_translation  m/s   a dash: forward velocity jumps by this for 3 frames, then by minus this for 3
                              (the faulty frames are the 3 where velocity jumps)
    abrupt_rotation     deg/s a whip pan: yaw rate jumps the same way
    teleport            m     the camera jumps this far sideways for 15 frames, then jumps back
    time_gap            frames this many frames are missing (their rows removed)
    invalid_pose        deg   one frame rolled by this much
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

POSE_FAULTS = ("jitter_translation", "jitter_rotation", "abrupt_translation", "abrupt_rotation", "teleport",
               "time_gap", "invalid_pose")


def inject_pose_fault(poses: np.ndarray, times: np.ndarray, kind: str, magnitude: float, at: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One pose fault starting at frame `at` -> (poses, times, the frames it affects in the result)."""
    poses, times = poses.copy(), times.copy()
    fps = 1.0 / float(np.median(np.diff(times)))
    if kind in ("jitter_translation", "jitter_rotation"):
        span = np.arange(at, min(len(poses), at + round(fps)))
        if kind == "jitter_translation":
            poses[span, :3, 3] += rng.normal(0.0, magnitude / 1000.0, (len(span), 3))
        else:
            noise = Rotation.from_rotvec(np.deg2rad(rng.normal(0.0, magnitude, (len(span), 3)))).as_matrix()
            poses[span, :3, :3] = poses[span, :3, :3] @ noise
        return poses, times, span.tolist()
    if kind == "abrupt_translation":
        forward = poses[at, :3, 2]
        offsets = np.concatenate([np.arange(1, 4), np.arange(2, -1, -1)]) * magnitude / fps  # out 3, back 3
        for frame, offset in zip(range(at, min(len(poses), at + 6)), offsets):
            poses[frame, :3, 3] += offset * forward
        return poses, times, _jumps(at, len(poses))
    if kind == "abrupt_rotation":
        angles = np.concatenate([np.arange(1, 4), np.arange(2, -1, -1)]) * magnitude / fps
        for frame, angle in zip(range(at, min(len(poses), at + 6)), angles):  # yaw about the camera's down axis
            poses[frame, :3, :3] = poses[frame, :3, :3] @ Rotation.from_euler("y", angle, degrees=True).as_matrix()
        return poses, times, _jumps(at, len(poses))
    if kind == "teleport":
        side = poses[at, :3, 0] * (1.0 if rng.random() < 0.5 else -1.0)
        end = min(len(poses), at + 15)
        poses[at:end, :3, 3] += magnitude * side
        return poses, times, [at] + ([end] if end < len(poses) else [])
    if kind == "time_gap":
        keep = np.ones(len(poses), bool)
        keep[at:at + int(magnitude)] = False
        return poses[keep], times[keep], [at]
    if kind == "invalid_pose":
        poses[at, :3, :3] = poses[at, :3, :3] @ Rotation.from_euler("z", magnitude, degrees=True).as_matrix()
        return poses, times, [at]
    raise ValueError(f"unknown pose fault {kind!r}; known: {', '.join(POSE_FAULTS)}")


def _jumps(at: int, n: int) -> list[int]:
    """The frames where a dash or whip pan (offsets 1, 2, 3, 2, 1, 0 from `at`) changes velocity."""
    return [f for f in (at, at + 3, at + 6) if f < n]
