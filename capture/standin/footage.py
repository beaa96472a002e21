"""Footage with known faults, for testing and measuring the filter.

`inject_pose_fault` puts one pose fault into a camera path (the frames it affects are returned);
`render_footage` renders a path in an in-process stand-in engine, with its image-fault knobs, into
the staging layout, and returns the faults injected at each frame. Together they make labelled
data: every frame's true faults are known.

Pose faults and their magnitude:
    jitter_translation  mm    std of Gaussian position noise over a 1 s span
    jitter_rotation     deg   std of Gaussian rotation noise (per axis) over a 1 s span
    abrupt_translation  m/s   a dash: forward velocity jumps by this for 3 frames, then by minus this for 3
                              (the faulty frames are the 3 where velocity jumps)
    abrupt_rotation     deg/s a whip pan: yaw rate jumps the same way
    teleport            m     the camera jumps this far sideways for 15 frames, then jumps back
    time_gap            frames this many frames are missing (their rows removed)
    invalid_pose        deg   one frame rolled by this much
Image faults are the engine's (`FaultConfig`); their magnitude is the knob's gain, area, sigma or degrees.
"""

from __future__ import annotations

import io
import pathlib
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from annotate.ue import pose_to_ue
from capture.config import StagingConfig
from capture.staging import StagingWriter, intrinsics
from capture.standin.engine import Engine, EngineConfig, FaultConfig

POSE_FAULTS = ("jitter_translation", "jitter_rotation", "abrupt_translation", "abrupt_rotation", "teleport",
               "time_gap", "invalid_pose")
#: the magnitude key each engine fault records in its log
IMAGE_FAULT_MAGNITUDE = {"black_frame": None, "frozen_frame": None, "exposure_spike": "gain", "flicker": "gain",
                         "glitch": "area", "blur": "sigma", "streaming_blur": "sigma", "pose_offset": "degrees"}


@dataclass(frozen=True)
class Injected:
    fault: str
    magnitude: float


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


def render_footage(scene: str, poses: np.ndarray, times: np.ndarray, staging: pathlib.Path, trajectory: str,
                   width: int, height: int, fov: float = 90.0, faults: FaultConfig | None = None,
                   depth: bool = False, staging_config: StagingConfig | None = None) -> tuple[pathlib.Path, list[list[Injected]]]:
    """Render `poses` (internal camera-to-world) in stand-in scene `scene` into
    `<staging>/<level>/<trajectory>/`; returns the folder and, per frame, the image faults injected."""
    engine = Engine(EngineConfig(scene=scene, width=width, height=height, fov=fov, shadow_resolution=256,
                                 faults=faults or FaultConfig()))
    locations, rotations = pose_to_ue(poses)
    truth: list[list[Injected]] = []
    writer = StagingWriter(pathlib.Path(staging), engine.scene.name, trajectory, staging_config or StagingConfig())
    with writer:
        for t, location, rotation in zip(times, locations, rotations):
            engine.handle("vset /camera/0/location {:.3f} {:.3f} {:.3f}".format(*location))
            engine.handle("vset /camera/0/rotation {:.3f} {:.3f} {:.3f}".format(*rotation))
            engine.injected.clear()
            lit = cv2.imdecode(np.frombuffer(_bytes(engine.handle("vget /camera/0/lit png")), np.uint8), cv2.IMREAD_COLOR)
            if lit is None:
                raise RuntimeError(f"stand-in {scene}: lit PNG did not decode")
            truth.append([_injected(record) for record in engine.injected])
            planar = None
            if depth:
                planar = np.load(_npy(engine.handle("vget /camera/0/depth npy"))) / 100.0
            writer.add(float(t), lit, location, rotation, location, rotation, depth=planar)
        meta = {"fov": fov, "fps": float(1.0 / np.median(np.diff(times))), "caption": "", "width": width,
                "height": height, "intrinsics": intrinsics(fov, width, height), "source": f"footage:{scene}"}
        folder = writer.commit(meta)
    return folder, truth


def _injected(record: dict) -> Injected:
    key = IMAGE_FAULT_MAGNITUDE.get(record["fault"])
    return Injected(record["fault"], float(record[key]) if key else 1.0)


def _bytes(reply: bytes | str) -> bytes:
    if isinstance(reply, str):
        raise RuntimeError(f"stand-in answered {reply!r}")
    return reply


def _npy(reply: bytes | str) -> io.BytesIO:
    return io.BytesIO(_bytes(reply))
