"""The capture stage end to end: trajectory sources -> Ray capture / ingest -> staging + report.

Every input trajectory ends as one row of the report: captured, cached or failed, with a reason.
A log that cannot be read fails before capture (reason: the reader's `file:line: ...`); a
trajectory no engine could render fails after its attempts; a bad ingest folder fails with its
file and row. Nothing else stops because of them.
"""

from __future__ import annotations

import functools
import logging
import pathlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import ray

from annotate.actions import ActionSpec
from annotate.trajectory import TrajectoryError
from capture.ingest import Sequence, ingest_sequence
from capture.inputs import Inputs, Skipped, discover, replay_scene
from capture.nodes import ray_node, staging_inventory
from capture.records import CaptureJob, CaptureResult
from capture.replay import replay_job
from capture.runconfig import CaptureRunConfig, SourcesConfig
from capture.scheduler import run_capture
from capture.video import VideoSource, stage_video

log = logging.getLogger(__name__)
REPORT = "capture_report.parquet"


def discover_inputs(sources: SourcesConfig, actions: ActionSpec) -> Inputs:
    """Every input found and named (capture/inputs.py); InputError (a configuration error) if not."""
    return discover(sources.replay, sources.planner, sources.ingest, actions, sources.video)


def collect_jobs(sources: SourcesConfig, actions: ActionSpec,
                 inputs: Inputs | None = None) -> tuple[Inputs, list[CaptureJob], list[CaptureResult]]:
    """Every input named (capture/inputs.py; `inputs`: already done), then capture jobs from the
    replayed logs and the planner; logs that cannot be read become failures (`file:line: ...`)."""
    inputs = inputs if inputs is not None else discover_inputs(sources, actions)
    jobs: list[CaptureJob] = []
    failed: list[CaptureResult] = list(inputs.failed)
    for source in inputs.replay:
        try:
            jobs.append(replay_job(source, sources.replay))
        except (TrajectoryError, OSError, ValueError) as exc:
            failed.append(CaptureResult(replay_scene(source), str(source.name), "failed", str(exc), 0, (), "", 0.0,
                                        None, source.path))
    return inputs, jobs + list(inputs.planned), failed


@dataclass(frozen=True)
class CaptureOutcome:
    results: list[CaptureResult]  # one per input, in the order: replay failures, captures, ingest
    skipped: tuple[Skipped, ...]  # what was found among the inputs but is none (capture/inputs.py)
    jobs: Mapping[str, CaptureJob]  # "scene/trajectory" -> what was captured from poses (planned paths too)
    sequences: Mapping[str, Sequence]  # "scene/trajectory" -> what was ingested
    videos: Mapping[str, VideoSource] = field(default_factory=dict)  # -> plain footage staged


def run(config: CaptureRunConfig, staging: str | pathlib.Path, progress: bool = True,
        inputs: Inputs | None = None, node_local: bool = False) -> CaptureOutcome:
    """Capture and ingest everything the sources name into `staging`; Ray must be initialised.
    `inputs`: discover_inputs' result when the caller checked them before starting Ray; otherwise
    found here, raising InputError (a ValueError) before any capture when they cannot be.
    `node_local`: the nodes share no disk; each stages into its own `staging` folder (what each holds
    is asked of it: capture/nodes.py) and ingest runs on this machine, which sees the inputs."""
    staging = pathlib.Path(staging)
    inputs, jobs, results = collect_jobs(config.sources, config.actions, inputs)
    for skip in inputs.skipped:
        log.warning("skipped %s: %s", skip.path, skip.reason)
    planned: list[CaptureJob] = []
    results += _capture(config, staging, jobs, inputs.sequences, inputs.videos, node_local, progress, inputs.plans,
                        planned.append)
    return CaptureOutcome(results, inputs.skipped, {job.key: job for job in jobs + planned},
                          {f"{s.scene}/{s.trajectory}": s for s in inputs.sequences},
                          {f"{v.scene}/{v.trajectory}": v for v in inputs.videos})


def capture_again(config: CaptureRunConfig, staging: str | pathlib.Path, outcome: CaptureOutcome,
                  keys: Iterable[str], node_local: bool = False, progress: bool = True) -> list[CaptureResult]:
    """Capture or ingest again the trajectories `keys` of an earlier `run` whose staged copies were
    lost (a node that left the cluster took its staging folder with it): one result each."""
    keys = list(keys)
    jobs = [outcome.jobs[k] for k in keys if k in outcome.jobs]
    sequences = [outcome.sequences[k] for k in keys if k in outcome.sequences]
    videos = [outcome.videos[k] for k in keys if k in outcome.videos]
    return _capture(config, pathlib.Path(staging), jobs, sequences, videos, node_local, progress)


def _capture(config: CaptureRunConfig, staging: pathlib.Path, jobs: list[CaptureJob], sequences: Iterable[Sequence],
             videos: Iterable[VideoSource], node_local: bool, progress: bool, plans=(),
             on_planned=None) -> list[CaptureResult]:
    results: list[CaptureResult] = []
    if jobs or plans:
        inventory = staging_inventory(staging)[0] if node_local else None
        results += run_capture(jobs, config.capture, staging, progress, plans=plans, inventory=inventory,
                               on_planned=on_planned)
    work: list[tuple[Callable[..., CaptureResult], Any, Any]] = [
        (ingest_sequence, seq, config.sources.ingest) for seq in sequences]
    work += [(functools.partial(stage_video, staging_config=config.capture.staging), video, config.sources.video)
             for video in videos]
    if work:
        task = ray.remote(num_cpus=1)(_stage_here)
        if node_local:  # the inputs are where the driver is
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            task = task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(ray_node(), soft=False))
        results += ray.get([task.remote(fn, source, str(staging), settings) for fn, source, settings in work])
    return results


def _stage_here(stage: Callable[..., CaptureResult], source, staging: str, settings) -> CaptureResult:
    """ingest_sequence or stage_video as a Ray task: its result names the node it staged on."""
    result = stage(source, staging, settings)
    return result if result.status == "failed" else replace(result, node=ray_node())


def write_report(results: list[CaptureResult], path: str | pathlib.Path) -> pd.DataFrame:
    """One row per input trajectory; written atomically."""
    from common.files import atomic_path

    frame = pd.DataFrame([r.to_row() for r in results],
                         columns=["scene", "trajectory", "status", "reason", "frames", "attempts", "endpoint",
                                  "seconds", "path", "source", "fingerprint", "node"])
    with atomic_path(pathlib.Path(path)) as tmp:
        frame.to_parquet(tmp, index=False)
    return frame
