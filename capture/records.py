"""Records passed between capture's parts: a job (one trajectory to capture), an attempt's outcome,
and the final result every input trajectory ends with (captured, cached or failed, with a reason).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # scene and trajectory names: they become shard keys


def check_name(kind: str, name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"{kind} name {name!r} may only use [A-Za-z0-9_-]")
    return name


def safe_name(text: str) -> str:
    """A file stem turned into a valid trajectory name ('V1_02 easy.tum' -> 'V1_02_easy')."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return stem or "trajectory"


@dataclass(frozen=True, eq=False)
class CaptureJob:
    """One trajectory to render: per-frame UE poses and times, in the scene (level) named."""

    scene: str
    trajectory: str
    locations: np.ndarray  # (N, 3) UE cm
    rotations: np.ndarray  # (N, 3) UE pitch, yaw, roll, degrees
    times: np.ndarray  # (N,) seconds, strictly increasing
    source: str  # where the poses came from: a log file, "planner:<seed>", ...
    caption: str = ""
    meta: dict[str, Any] = field(default_factory=dict)  # JSON-safe extras (placement, plan, ...)

    def __post_init__(self) -> None:
        check_name("scene", self.scene)
        check_name("trajectory", self.trajectory)
        n = len(self.times)
        where = f"{self.scene}/{self.trajectory} ({self.source})"
        if self.locations.shape != (n, 3) or self.rotations.shape != (n, 3):
            raise ValueError(f"{where}: {self.locations.shape} locations, {self.rotations.shape} rotations, {n} times")
        if n < 2:
            raise ValueError(f"{where}: a trajectory needs at least 2 poses, got {n}")
        for name, arr in (("locations", self.locations), ("rotations", self.rotations), ("times", self.times)):
            bad = np.flatnonzero(~np.isfinite(arr).reshape(n, -1).all(axis=1))
            if len(bad):
                raise ValueError(f"{where}: pose {bad[0]}: {name} not finite")
        steps = np.diff(self.times)
        if (steps <= 0).any():
            raise ValueError(f"{where}: pose {int(np.argmax(steps <= 0)) + 1}: time not increasing")

    @property
    def key(self) -> str:
        return f"{self.scene}/{self.trajectory}"

    def __len__(self) -> int:
        return len(self.times)

    def fingerprint(self, settings: dict[str, Any]) -> str:
        """Hash of the poses, times and the capture settings that shape the output."""
        digest = hashlib.sha256()
        for arr in (self.locations, self.rotations, self.times):
            digest.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
        digest.update(json.dumps([self.scene, self.caption, settings], sort_keys=True).encode())
        return digest.hexdigest()[:20]


@dataclass(frozen=True)
class Attempt:
    """What one capture attempt on one engine came to."""

    key: str
    ok: bool
    endpoint: str
    reason: str = ""
    engine_lost: bool = False  # the engine died, hung or dropped the connection
    retired: bool = False  # the worker will take no more jobs
    path: str | None = None
    frames: int = 0
    seconds: float = 0.0
    planned: tuple[CaptureJob, ...] = ()  # a planning attempt's paths (capture/probe_planner.py)
    plan_stats: dict[str, Any] = field(default_factory=dict)
    node: str = ""  # the Ray node the trajectory was staged on ("" outside Ray)


@dataclass(frozen=True)
class CaptureResult:
    """Where one input trajectory ended: `captured`, `cached` (already staged) or `failed`."""

    scene: str
    trajectory: str
    status: Literal["captured", "cached", "failed"]
    reason: str
    frames: int
    attempts: tuple[str, ...]  # "endpoint: reason" of each failed attempt, in order
    endpoint: str
    seconds: float
    path: str | None
    source: str
    fingerprint: str = ""  # of what was staged (poses + capture settings, or the ingested files)
    node: str = ""  # the Ray node whose staging folder holds it ("" outside Ray or when failed)

    def to_row(self) -> dict[str, Any]:
        row = dict(self.__dict__)
        row["attempts"] = list(self.attempts)
        return row
