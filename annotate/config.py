"""Configuration of the annotate stage; the build pipeline's config nests it under `annotate`."""

from __future__ import annotations

from dataclasses import dataclass, field

from annotate.actions import ActionSpec
from annotate.readers import ReaderConfig
from annotate.resample import ResampleConfig


@dataclass(frozen=True)
class AnnotateConfig:
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    resample: ResampleConfig = field(default_factory=ResampleConfig)
    actions: ActionSpec = field(default_factory=ActionSpec)
