"""The build's configuration: one frozen dataclass tree (written to <out>/config.yaml), the demo
settings used when no --config is given, and how --ingest / --trajectories add sources."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from augment.make import ClipConfig
from capture.runconfig import CaptureRunConfig
from common.config import apply_overrides, from_dict, load_yaml, to_dict
from datasets.shards import ShardConfig
from filter.config import FilterConfig


@dataclass(frozen=True)
class SplitConfig:
    val_fraction: float = 0.25  # share of scenes in `val` (whole scenes: no scene is in two splits)

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"splits.val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass(frozen=True)
class BuildConfig:
    seed: int = 0
    capture: CaptureRunConfig = field(default_factory=CaptureRunConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    clips: ClipConfig = field(default_factory=ClipConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    staging: str | None = None  # default: <out>/staging
    # shared: every Ray node sees OUT (and staging) at the same path (NFS, Lustre), checked at start;
    # node_local: the nodes share no disk, data moves through Ray (formats.md 2.1); auto: shared when
    # the check passes, node_local otherwise (the build says which, in its log and stats.json)
    storage: Literal["auto", "shared", "node_local"] = "auto"
    # a URI (s3://, gs://, hdfs://, file://) the shards, manifest and reports are copied to at the end
    # (pipelines/publish.py); checked writable before any capture. None: OUT only
    publish: str | None = None

    def __post_init__(self) -> None:
        if self.storage not in ("auto", "shared", "node_local"):
            raise ValueError(f"storage must be auto, shared or node_local, got {self.storage!r}")


#: the demo build (no --config): 8 planned paths in the four stand-in scene kinds, 256x144. Two of
#: them are damaged on purpose so the filter has something to show: corridor_0002/plan0001 shakes
#: (rotation jitter) for a second, street_0004/plan0000 jumps 1 m sideways and back, and the engines
#: blur the two frames after any jump of 50 cm or more (texture streaming, as UE does after a teleport).
DEMO: dict[str, Any] = {
    "capture": {
        "capture": {"camera": {"width": 256, "height": 144, "fov": 90.0},
                    "standin": {"instances": 2, "settings": ["faults.streaming_blur_jump_cm=50",
                                                             "faults.streaming_blur_frames=2"]}},
        "sources": {"planner": {"scenes": ["room-1", "corridor-2", "courtyard-3", "street-4"],
                                "trajectories_per_scene": 2, "frames": 150,
                                "faults": [{"scene": "corridor-2", "path": 1, "kind": "jitter_rotation",
                                            "magnitude": 0.8, "at_s": 2.0},
                                           {"scene": "street-4", "path": 0, "kind": "teleport",
                                            "magnitude": 1.0, "at_s": 2.5}]}},
    },
    "clips": {"window": {"frames": 33, "stride": 16}, "palindrome": {"share": 0.25}},
    "shards": {"max_samples": 64},
}


def resolve_config(config_path: pathlib.Path | None, overrides: Sequence[str], ingest: Sequence[str],
                   trajectories: Sequence[str]) -> BuildConfig:
    """The file (or the demo), then --set overrides, then --ingest / --trajectories sources."""
    if config_path is not None:
        config = load_yaml(BuildConfig, config_path, overrides)
        data: dict[str, Any] = to_dict(config)
    else:
        data = apply_overrides(json.loads(json.dumps(DEMO)), overrides)
    sources = data.setdefault("capture", {}).setdefault("sources", {})
    if ingest:
        roots = sources.setdefault("ingest", {}).setdefault("roots", [])
        roots.extend(ingest)
    if trajectories:
        scene = data["capture"].get("capture", {}).get("standin", {}).get("scene", "room-1")
        replay = sources.setdefault("replay", {}).setdefault("sources", [])
        replay.extend({"path": str(path), "scene": scene} for path in trajectories)  # a folder: its .csv logs
    if (ingest or trajectories) and config_path is None:
        sources.get("planner", {}).update(trajectories_per_scene=0, faults=[])  # given inputs replace the demo's paths
    return from_dict(BuildConfig, data, source=str(config_path or "demo"))
