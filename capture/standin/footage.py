"""Footage with known faults, for testing and measuring the filter.

`render_footage` renders a path in an in-process stand-in engine, with its image-fault knobs, into
the staging layout (its meta.json carrying the stand-in's caption of each 5 s segment, as footage
metadata would), and returns the faults injected at each frame. With `capture.pose_faults`
(one pose fault put into a path, the frames it affects returned) that makes labelled data: every
frame's true faults are known. Image faults are the engine's (`FaultConfig`); their magnitude is the
knob's gain, area, sigma or degrees.
"""

from __future__ import annotations

import io
import pathlib
from dataclasses import dataclass

import cv2
import numpy as np

from annotate.ue import pose_to_ue
from capture.captions import CaptionConfig, trajectory_captions
from capture.config import StagingConfig
from capture.staging import StagingWriter, intrinsics
from capture.standin.engine import Engine, EngineConfig, FaultConfig

#: the magnitude key each engine fault records in its log
IMAGE_FAULT_MAGNITUDE = {"black_frame": None, "frozen_frame": None, "exposure_spike": "gain", "flicker": "gain",
                         "glitch": "area", "blur": "sigma", "streaming_blur": "sigma", "pose_offset": "degrees"}


@dataclass(frozen=True)
class Injected:
    fault: str
    magnitude: float


def render_footage(scene: str, poses: np.ndarray, times: np.ndarray, staging: pathlib.Path, trajectory: str,
                   width: int, height: int, fov: float = 90.0, faults: FaultConfig | None = None,
                   depth: bool = False, staging_config: StagingConfig | None = None,
                   shadow_resolution: int = 256) -> tuple[pathlib.Path, list[list[Injected]]]:
    """Render `poses` (internal camera-to-world) in stand-in scene `scene` into
    `<staging>/<level>/<trajectory>/`; returns the folder and, per frame, the image faults injected."""
    engine = Engine(EngineConfig(scene=scene, width=width, height=height, fov=fov, shadow_resolution=shadow_resolution,
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
        captions = trajectory_captions({"fov": fov}, poses, times, CaptionConfig(), "footage", engine.scene)
        meta = {"fov": fov, "fps": float(1.0 / np.median(np.diff(times))), "caption": "", "width": width,
                "height": height, "intrinsics": intrinsics(fov, width, height), "source": f"footage:{scene}",
                "captions": [{"start_s": c.start_s, "end_s": c.end_s, "text": c.text} for c in captions]}
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
