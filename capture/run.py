"""The capture stage end to end: trajectory sources -> Ray capture / ingest -> staging + report.

Every input trajectory ends as one row of the report: captured, cached or failed, with a reason.
A log that cannot be read fails before capture (reason: the reader's `file:line: ...`); a
trajectory no engine could render fails after its attempts; a bad ingest folder fails with its
file and row. Nothing else stops because of them.
"""

from __future__ import annotations

import logging
import pathlib
from dataclasses import dataclass, field

import pandas as pd
import ray

from annotate.actions import ActionSpec
from annotate.trajectory import TrajectoryError
from capture.config import CaptureConfig
from capture.ingest import IngestConfig, find_sequences, ingest_sequence
from capture.planner import PlannerConfig, plan_jobs
from capture.records import CaptureJob, CaptureResult, safe_name
from capture.replay import ReplayConfig, replay_job, stand_in_spec
from capture.scheduler import run_capture
from capture.standin.scene import level_name

log = logging.getLogger(__name__)
REPORT = "capture_report.parquet"


@dataclass(frozen=True)
class SourcesConfig:
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)


@dataclass(frozen=True)
class CaptureRunConfig:
    capture: CaptureConfig = field(default_factory=CaptureConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    actions: ActionSpec = field(default_factory=ActionSpec)


def collect_jobs(sources: SourcesConfig, actions: ActionSpec) -> tuple[list[CaptureJob], list[CaptureResult]]:
    """Capture jobs from replayed logs and the planner; logs that cannot be read become failures."""
    jobs: list[CaptureJob] = []
    failed: list[CaptureResult] = []
    for source in sources.replay.sources:
        try:
            jobs.append(replay_job(source, sources.replay))
        except (TrajectoryError, OSError, ValueError) as exc:
            name = source.name or safe_name(pathlib.Path(source.path).stem)
            scene = level_name(source.scene) if stand_in_spec(source.scene) else safe_name(source.scene)
            failed.append(CaptureResult(scene, name, "failed", str(exc), 0, (), "", 0.0, None, source.path))
    if sources.planner.trajectories_per_scene > 0:
        jobs.extend(plan_jobs(sources.planner, actions))
    return jobs, failed


def run(config: CaptureRunConfig, staging: str | pathlib.Path, progress: bool = True) -> list[CaptureResult]:
    """Capture and ingest everything the sources name into `staging`; Ray must be initialised."""
    staging = pathlib.Path(staging)
    jobs, results = collect_jobs(config.sources, config.actions)
    if jobs:
        results += run_capture(jobs, config.capture, staging, progress)
    sequences = [seq for root in config.sources.ingest.roots for seq in find_sequences(root)]
    if sequences:
        task = ray.remote(num_cpus=1)(ingest_sequence)
        results += ray.get([task.remote(seq, str(staging), config.sources.ingest) for seq in sequences])
    return results


def write_report(results: list[CaptureResult], path: str | pathlib.Path) -> pd.DataFrame:
    """One row per input trajectory; written atomically."""
    from common.files import atomic_path

    frame = pd.DataFrame([r.to_row() for r in results],
                         columns=["scene", "trajectory", "status", "reason", "frames", "attempts", "endpoint",
                                  "seconds", "path", "source"])
    with atomic_path(pathlib.Path(path)) as tmp:
        frame.to_parquet(tmp, index=False)
    return frame
