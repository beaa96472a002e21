"""Helpers for capture tests: small camera settings, UE logs, stand-in processes to kill."""

from __future__ import annotations

import os
import pathlib
import signal
import threading
import time

import numpy as np

from capture.config import CameraConfig, CaptureConfig, ClientConfig, RetryConfig, StandinPoolConfig
from capture.records import CaptureJob


def small_config(**sections) -> CaptureConfig:
    """64x48 frames, short timeouts, no warm-up: fast captures in tests."""
    base = {
        "camera": CameraConfig(width=64, height=48, fov=90.0),
        "client": ClientConfig(request_timeout_s=5.0, connect_timeout_s=10.0, connect_attempts=2,
                               connect_backoff_s=0.1, warmup_frames=1),
        "standin": StandinPoolConfig(instances=1, scene="room-1"),
        "retry": RetryConfig(max_attempts=3, max_engine_failures=2, actor_cpus=0.5),
    }
    base.update(sections)
    return CaptureConfig(**base)


def walk(n: int, start_cm=(0.0, 0.0, 160.0), seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth UE walk near the room's middle: times, locations (cm), rotations (deg)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 30.0
    loc = np.array(start_cm) + np.stack([60 * np.sin(t * 0.7), 60 * np.sin(t * 0.45 + 1), 5 * np.sin(t)], 1)
    rot = np.stack([10 * np.sin(t * 0.9), 40 * t + rng.uniform(0, 360), 3 * np.sin(t * 1.3)], 1)
    return t, loc, rot


def walk_job(n: int, trajectory: str = "walk", scene: str = "room_0001", seed: int = 0) -> CaptureJob:
    t, loc, rot = walk(n, seed=seed)
    return CaptureJob(scene, trajectory, loc, rot, t, f"test:{trajectory}")


def standin_pids() -> list[int]:
    """PIDs of running stand-in engines: `python -m capture.standin` or the stand-in as a packaged
    game (capture/standin/packaged.py), from Linux /proc."""
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(word == b"capture.standin" or b"capture.standin.packaged" in word for word in cmdline):
                pids.append(int(entry.name))
    return pids


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def partial_frames(staging: pathlib.Path, trajectory: str | None = None) -> int:
    """Frames written so far into trajectories not yet published (all, or one trajectory's)."""
    partial = staging / ".partial"
    pattern = f"*__{trajectory}__*" if trajectory else "*"
    return sum(len(list((d / "frames").glob("*"))) for d in partial.glob(pattern) if (d / "frames").is_dir()) if partial.is_dir() else 0


def in_flight(staging: pathlib.Path, trajectory: str) -> bool:
    """Whether `trajectory` is being written (its folder under .partial exists, frames or not yet)."""
    partial = staging / ".partial"
    return partial.is_dir() and any(d.is_dir() and not d.name.startswith("old__")
                                    for d in partial.glob(f"*__{trajectory}__*"))


def kill_one_when(ready, pids, before: set[int], timeout_s: float = 120.0) -> tuple[threading.Thread, list[int]]:
    """A started thread that SIGKILLs the lowest-numbered process of `pids()` not in `before` as soon
    as `ready()` holds (polling every 5 ms, for at most `timeout_s`); the list gets the pid killed."""
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not killed:
            if ready():
                ours = sorted(set(pids()) - before)
                if ours:
                    killed.append(ours[0])
                    kill(ours[0])
            time.sleep(0.005)

    thread = threading.Thread(target=killer)
    thread.start()
    return thread, killed


def action_shares(jobs) -> np.ndarray:
    """The share of each of the 13 action channels over the jobs' transitions, as the annotator sees them."""
    from annotate.actions import CHANNELS, ActionSpec, encode_actions
    from annotate.geometry import relative_motion
    from annotate.ue import ue_to_pose

    spec = ActionSpec()
    counts = np.zeros(len(CHANNELS))
    for job in jobs:
        motion = relative_motion(ue_to_pose(job.locations, job.rotations))
        counts += (encode_actions(motion, np.diff(job.times), spec) > 0).sum(axis=0)
    return counts / counts.sum()
