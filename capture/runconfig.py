"""The capture stage's configuration (the build nests it under `capture`); Ray-free, so a config can
be read where Ray is not installed (a GPU host rendering training data: bench/device_data.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from annotate.actions import ActionSpec
from capture.config import CaptureConfig
from capture.ingest import IngestConfig
from capture.planner import PlannerConfig
from capture.replay import ReplayConfig
from capture.video import VideoConfig


@dataclass(frozen=True)
class SourcesConfig:
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    video: VideoConfig = field(default_factory=VideoConfig)  # plain footage without poses


@dataclass(frozen=True)
class CaptureRunConfig:
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    actions: ActionSpec = field(default_factory=ActionSpec)
