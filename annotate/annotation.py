"""Whole-trajectory annotation: Trajectory -> per-transition motion and actions, and its table form.

The table (formats.md section 6) has one row per transition t -> t+1: `frame` (t), `time` (s, of
frame t), `dt` (s), `dx, dy, dz, yaw, pitch, roll`, then the 13 channels by name. The action spec,
the translation scale (clip_mean normalisation; null otherwise) and the source go into the parquet
schema metadata (key `annotate`, JSON).
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from annotate.actions import CHANNELS, ActionSpec, encode_actions, translation_scale
from annotate.geometry import MOTION_NAMES, relative_motion
from annotate.trajectory import Trajectory
from common.files import atomic_path

METADATA_KEY = b"annotate"


@dataclass(frozen=True, eq=False)
class Annotation:
    """Per-transition labels of one trajectory (N poses -> N-1 rows)."""

    times: np.ndarray  # (N-1,) time of frame t, s
    dt: np.ndarray  # (N-1,) frame interval, s
    motion: np.ndarray  # (N-1, 6) float64: dx, dy, dz (m), yaw, pitch, roll (deg)
    actions: np.ndarray  # (N-1, 13) float32, channels in CHANNELS order
    spec: ActionSpec
    scale: float | None = None  # translation.normalize clip_mean: the trajectory's mean moving speed, m/s

    def __len__(self) -> int:
        return len(self.motion)

    def counts(self) -> dict[str, int]:
        """Transitions in which each channel is active."""
        return dict(zip(CHANNELS, (self.actions > 0).sum(axis=0).tolist()))


def annotate(traj: Trajectory, spec: ActionSpec) -> Annotation:
    """Relative motion and binned actions of every transition of a (validated) trajectory."""
    motion = relative_motion(traj.poses, check=False)  # Trajectory guarantees proper rotations
    dt = traj.dt
    scale = translation_scale(motion, dt, spec)  # clip_mean: the whole trajectory is the clip
    return Annotation(times=traj.timestamps[:-1], dt=dt, motion=motion, actions=encode_actions(motion, dt, spec, scale),
                      spec=spec, scale=scale)


def to_table(annotation: Annotation, metadata: dict[str, Any] | None = None) -> pa.Table:
    """The formats.md section 6 table, with the action spec (and `metadata`) in the schema metadata."""
    columns: dict[str, Any] = {
        "frame": np.arange(len(annotation), dtype=np.int64),
        "time": annotation.times,
        "dt": annotation.dt,
    }
    columns.update({name: annotation.motion[:, i] for i, name in enumerate(MOTION_NAMES)})
    columns.update({name: annotation.actions[:, i] for i, name in enumerate(CHANNELS)})
    table = pa.table(columns)
    info = {"action_spec": annotation.spec.to_metadata(), "translation_scale": annotation.scale, **(metadata or {})}
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(info).encode()})


def write_parquet(annotation: Annotation, path: str | pathlib.Path, metadata: dict[str, Any] | None = None) -> None:
    """Write the table atomically (temporary file beside it, then rename)."""
    with atomic_path(path) as tmp:
        pq.write_table(to_table(annotation, metadata), tmp)


def read_metadata(path: str | pathlib.Path) -> dict[str, Any]:
    """The JSON metadata a `write_parquet` file carries (action spec, source, ...)."""
    raw = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in raw:
        raise ValueError(f"{path}: no '{METADATA_KEY.decode()}' metadata; not written by annotate")
    return json.loads(raw[METADATA_KEY])
