"""Labelled stand-in footage for the filter tests: small planner paths rendered in-process."""

from __future__ import annotations

import pathlib

import numpy as np

from annotate.actions import ActionSpec
from capture.planner import PlannerConfig, plan_path
from capture.pose_faults import inject_pose_fault
from capture.standin.engine import FaultConfig
from capture.standin.footage import render_footage
from capture.standin.scene import make_scene


def planned(scene: str, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    path = plan_path(make_scene(scene), PlannerConfig(frames=frames), ActionSpec(), seed)
    return path.poses, path.times


def small_staging(root: pathlib.Path, frames: int = 60, width: int = 128, height: int = 72) -> dict[str, list[int]]:
    """Two trajectories in `root`: room_0001/clean and room_0001/faulty (black frames at a known
    rate, one teleport). Returns the faulty one's black-frame and teleport frames."""
    poses, times = planned("room-1", frames, 3)
    render_footage("room-1", poses, times, root, "clean", width, height)
    poses, times = planned("room-1", frames, 4)
    poses, times, teleport = inject_pose_fault(poses, times, "teleport", 1.0, frames // 2, np.random.default_rng(0))
    _, truth = render_footage("room-1", poses, times, root, "faulty", width, height,
                              faults=FaultConfig(seed=1, black_frame=0.05))
    return {"black": [i for i, t in enumerate(truth) if t], "teleport": teleport}
