"""Replay recorded camera logs: UE pose CSVs as they are, TUM/KITTI/RE10K placed into a scene.

A UE CSV is already in the level's coordinates. Other formats have their own world (unknown up,
arbitrary scale), so they are placed: rotated so their up becomes Z (`up`), scaled by the stated
`scale` (required: 1.0 keeps metres as recorded), turned so the first camera heads along `yaw_deg`
and moved so it starts at `anchor_cm`. For stand-in scenes the anchor and heading may be left out:
the placement that keeps most of the path in free space is searched for (its free fraction is
recorded in the job's metadata).
"""

from __future__ import annotations

import dataclasses
import pathlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.spatial.transform import Rotation

from annotate.readers import PoseFormat, ReaderConfig, read_trajectory
from annotate.resample import Interpolation, resample
from annotate.trajectory import Trajectory, TrajectoryError
from annotate.ue import location_from_ue, location_to_ue, pose_to_ue
from capture.records import CaptureJob, safe_name
from capture.standin.scene import level_name, make_scene


@dataclass(frozen=True)
class ReplaySource:
    path: str
    scene: str  # stand-in scene spec (e.g. "street-4") or a UE level name
    format: PoseFormat | None = None  # None: by extension, then by the first data line
    name: str | None = None  # trajectory name; default: the file stem
    caption: str = ""
    fps: float | None = None  # resample to this rate first; None: capture the log's own times
    scale: float | None = None  # metres per source unit (required for TUM/KITTI/RE10K)
    up: Literal["auto", "z", "y", "-y"] = "auto"  # source world up; auto: mean camera up
    anchor_cm: tuple[float, float, float] | None = None  # UE location of the first camera
    yaw_deg: float | None = None  # UE yaw of the first camera's heading
    source_fps: float | None = None  # KITTI: frames per second of the file
    times: str | None = None  # KITTI: times.txt


@dataclass(frozen=True)
class ReplayConfig:
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    sources: tuple[ReplaySource, ...] = ()
    eye_height_m: float = 1.6  # auto placement: height of the first camera
    clearance_m: float = 0.3  # auto placement: what counts as free


def stand_in_spec(scene: str) -> bool:
    try:
        level_name(scene)
        return True
    except ValueError:
        return False


def replay_job(source: ReplaySource, config: ReplayConfig) -> CaptureJob:
    """Read, resample and place one log; errors name the file (and line, from the readers)."""
    path = pathlib.Path(source.path)
    reader = dataclasses.replace(config.reader, source_fps=source.source_fps or config.reader.source_fps)
    traj = read_trajectory(path, source.format, reader, times=source.times)
    if source.fps is not None:
        traj = resample(traj, source.fps, Interpolation.LINEAR)
    fmt = PoseFormat(traj.meta["format"])  # every reader records the format it read
    scene = level_name(source.scene) if stand_in_spec(source.scene) else source.scene
    meta: dict = {"replay": {"file": str(path), "format": fmt.value, "fps": source.fps}}
    if fmt is PoseFormat.UE_CSV:
        if source.scale not in (None, 1.0) or source.anchor_cm is not None or source.yaw_deg is not None:
            raise TrajectoryError(str(path), f"a UE CSV is replayed in the level's own coordinates; "
                                  "scale, anchor_cm and yaw_deg apply only to TUM/KITTI/RE10K")
        poses = traj.poses
    else:
        poses, placement = place(traj, source, config)
        meta["replay"]["placement"] = placement
    locations, rotations = pose_to_ue(poses)
    return CaptureJob(scene, source.name or safe_name(path.stem), locations, rotations,
                      traj.timestamps - traj.timestamps[0], str(path), source.caption, meta)


def up_rotation(poses: np.ndarray, up: str) -> np.ndarray:
    """(3, 3) rotation taking the source world's up direction to +Z."""
    if up == "auto":  # cameras are mostly upright: their mean up axis (-y, OpenCV) is the world's up
        vector = -poses[:, :3, 1].mean(axis=0)
    else:
        vector = {"z": np.array([0, 0, 1.0]), "y": np.array([0, 1.0, 0]), "-y": np.array([0, -1.0, 0])}[up]
    norm = np.linalg.norm(vector)
    if norm < 0.3:
        raise ValueError("camera up axes disagree too much to estimate the world's up; set `up`")
    rot, _ = Rotation.align_vectors(np.array([[0, 0, 1.0]]), (vector / norm)[None])
    return rot.as_matrix()


def place(traj: Trajectory, source: ReplaySource, config: ReplayConfig) -> tuple[np.ndarray, dict]:
    if source.scale is None or not source.scale > 0:
        raise TrajectoryError(source.path, f"{traj.meta.get('format', 'this format')} poses have no known scale "
                              "in the scene; state `scale` (metres per unit; 1.0 keeps metres as recorded)")
    poses = traj.poses.copy()
    poses[:, :3, 3] -= poses[0, :3, 3]
    poses[:, :3, 3] *= source.scale
    try:
        up = up_rotation(poses, source.up)
    except ValueError as exc:
        raise TrajectoryError(source.path, str(exc)) from None
    poses[:, :3, :] = up @ poses[:, :3, :]
    forward = poses[0, :3, 2]
    heading = np.degrees(np.arctan2(forward[1], forward[0]))  # internal world: yaw measured from +X toward +Y
    search = source.anchor_cm is None or source.yaw_deg is None
    if search and not stand_in_spec(source.scene):
        raise TrajectoryError(source.path, f"scene {source.scene!r} is not a stand-in scene; "
                              "give anchor_cm and yaw_deg to place the path")
    if search:
        anchor, yaw, free = _best_placement(poses, heading, source, config)
    else:
        assert source.anchor_cm is not None and source.yaw_deg is not None
        anchor, yaw, free = location_from_ue(source.anchor_cm), float(source.yaw_deg), None
    turn = Rotation.from_euler("z", -yaw - heading, degrees=True).as_matrix()  # UE yaw +d is internal -d
    poses[:, :3, :] = turn @ poses[:, :3, :]
    poses[:, :3, 3] += anchor
    placement = {"scale": source.scale, "up": source.up, "anchor_cm": location_to_ue(anchor).round(2).tolist(),
                 "yaw_deg": round(float(yaw), 3), "free_fraction": free}
    return poses, placement


def _best_placement(poses: np.ndarray, heading: float, source: ReplaySource, config: ReplayConfig):
    """Try anchors at eye height x 16 headings; keep the one with most positions in free space."""
    scene = make_scene(source.scene)
    anchors = scene.sample_free(np.random.default_rng(0), 24, radius=config.clearance_m, height=config.eye_height_m)
    if source.anchor_cm is not None:
        anchors = location_from_ue(source.anchor_cm)[None]
    yaws = [float(source.yaw_deg)] if source.yaw_deg is not None else list(np.arange(16) * 22.5)
    step = max(1, len(poses) // 400)
    points = poses[::step, :3, 3]
    best = (-1.0, anchors[0], yaws[0])
    for yaw in yaws:
        turned = points @ Rotation.from_euler("z", -yaw - heading, degrees=True).as_matrix().T
        for anchor in anchors:
            free = float(scene.is_free(turned + anchor, config.clearance_m).mean())
            if free > best[0]:
                best = (free, anchor, yaw)
    return best[1], best[2], round(best[0], 4)
