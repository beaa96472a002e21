"""The filter stage over a staging area: every staged trajectory filtered, reviewers' verdicts
applied, and the tables the report and the build read.

Every staged trajectory ends as filtered (its frames kept or dropped, with reasons) or failed (with
the file and row that stopped it); a failed one does not stop the others.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from annotate.trajectory import Trajectory
from capture.staging import PARTIAL
from filter.config import FilterConfig
from filter.image_checks import IMAGE_SCORES
from filter.pose_checks import POSE_SCORES
from filter.reasons import CHECK_REASONS, Reason
from filter.segments import ReviewVerdict, Verdict, apply_verdicts, check_known
from filter.stage import FilterError, TrajectoryFilter, filter_trajectory
from filter.thumbnails import with_thumbnails

SCORES = POSE_SCORES + IMAGE_SCORES
#: scores where low is bad: a segment reports their minimum; for the others, the maximum
LOW_IS_BAD = frozenset({"luma_mean", "luma_std", "sharpness", "detail", "sharpness_rel", "diff_prev", "diff_rel"})


@dataclass(frozen=True)
class Failed:
    scene: str
    trajectory: str
    reason: str
    stage: str = "filter"  # or "capture": the build lists capture failures on the review page too


@dataclass(frozen=True, eq=False)
class FilterRun:
    results: tuple[TrajectoryFilter, ...]
    failed: tuple[Failed, ...]
    verdicts_applied: int = 0
    verdicts_changed: int = 0  # of those, how many changed the filter's own decision


def staged_trajectories(staging: str | pathlib.Path) -> list[tuple[str, str, pathlib.Path]]:
    """(scene, trajectory, folder) of every published trajectory under `staging`, sorted."""
    root = pathlib.Path(staging)
    if not root.is_dir():
        raise FileNotFoundError(f"staging area {root} is not a folder")
    return [(scene.name, traj.name, traj)
            for scene in sorted(root.iterdir()) if scene.is_dir() and scene.name != PARTIAL and not scene.name.startswith(".")
            for traj in sorted(scene.iterdir()) if traj.is_dir() and not traj.name.startswith(".")]


def filter_one(args: tuple[pathlib.Path, str, str, FilterConfig],
               sink: Callable[[int, np.ndarray], None] | None = None,
               traj: Trajectory | None = None) -> TrajectoryFilter | Failed:
    """Filter one staged trajectory; a bad one comes back as `Failed` naming the file (for pool maps).
    `traj`: its poses.csv already read (filter.stage.read_staged)."""
    folder, scene, trajectory, config = args
    try:
        return filter_trajectory(folder, config, scene, trajectory, sink, traj)
    except (FilterError, OSError) as exc:
        return Failed(scene, trajectory, str(exc))


def filter_staging(staging: str | pathlib.Path, config: FilterConfig,
                   verdicts: Mapping[str, ReviewVerdict] | None = None, verdicts_source: str = "verdicts.csv",
                   pool_map: Callable[..., Iterable] = map) -> FilterRun:
    """Filter everything staged; `pool_map` may be a Ray or process pool map over `filter_one`."""
    jobs = [(folder, scene, trajectory, config) for scene, trajectory, folder in staged_trajectories(staging)]
    outcomes = list(pool_map(filter_one, jobs))
    results = tuple(o for o in outcomes if isinstance(o, TrajectoryFilter))
    failed = tuple(o for o in outcomes if isinstance(o, Failed))
    run = FilterRun(results, failed)
    run = apply_review(run, verdicts, verdicts_source) if verdicts else run
    return replace(run, results=tuple(with_thumbnails(r, config) for r in run.results))


def apply_review(run: FilterRun, verdicts: Mapping[str, ReviewVerdict], source: str) -> FilterRun:
    """Apply every verdict; one naming a segment this run does not have is an error (ValueError)."""
    check_known(verdicts, {s.segment_id for r in run.results for s in r.segments}, source)
    reviewed = [review_result(result, verdicts) for result in run.results]
    return replace(run, results=tuple(r for r, _ in reviewed), verdicts_applied=len(verdicts),
                   verdicts_changed=sum(changed for _, changed in reviewed))


def review_result(result: TrajectoryFilter, verdicts: Mapping[str, ReviewVerdict]) -> tuple[TrajectoryFilter, int]:
    """One trajectory with the verdicts on its segments applied (frames' kept and reasons too), and
    how many changed the filter's decision."""
    if not any(s.segment_id in verdicts for s in result.segments):
        return result, 0
    segments = apply_verdicts(result.segments, verdicts)
    frames = result.frames.copy()
    for segment in segments:
        if segment.segment_id not in verdicts:
            continue
        rows = frames.index[segment.start:segment.end]
        keep = segment.verdict is Verdict.KEEP
        frames.loc[rows, "kept"] = keep
        if not keep and segment.auto_verdict is Verdict.KEEP:
            frames.loc[rows, "reasons"] = pd.Series([[Reason.REVIEWER.value]] * segment.frames, index=rows)
    changed = sum(s.verdict is not s.auto_verdict for s in segments)
    return replace(result, frames=frames, segments=tuple(segments)), changed


def segments_table(run: FilterRun) -> pd.DataFrame:
    """formats.md 2's report/filter.parquet: one row per segment, every score as its worst value in
    the segment (minimum for LOW_IS_BAD scores, maximum for the others; NaN where undefined)."""
    rows = []
    for result in run.results:
        frames = result.frames
        for s in result.segments:
            part = frames.iloc[s.start:s.end]
            row = {"segment_id": s.segment_id, "scene": s.scene, "trajectory": s.trajectory, "start": s.start,
                   "end": s.end, "verdict": s.verdict.value, "reasons": list(s.reasons),
                   "auto_verdict": s.auto_verdict.value, "reviewed": s.reviewed, "reviewer": s.reviewer, "note": s.note,
                   "frames": s.frames, "start_time": float(part["time"].iloc[0]), "end_time": float(part["time"].iloc[-1])}
            row.update(worst_scores({name: part[name].to_numpy(dtype=float) for name in SCORES}))
            rows.append(row)
    columns = ["segment_id", "scene", "trajectory", "start", "end", "verdict", "reasons", "auto_verdict", "reviewed",
               "reviewer", "note", "frames", "start_time", "end_time", *SCORES]
    return pd.DataFrame(rows, columns=columns)


def worst_scores(scores: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Each score's worst value over some frames: the minimum for LOW_IS_BAD scores, else the
    maximum; NaN where no frame has it."""
    out = {}
    for name, values in scores.items():
        finite = values[np.isfinite(values)]
        out[name] = float(finite.min() if name in LOW_IS_BAD else finite.max()) if finite.size else float("nan")
    return out


def frames_table(run: FilterRun) -> pd.DataFrame:
    """One row per frame of every filtered trajectory: every score, each check's flag, reasons, kept."""
    if not run.results:
        return pd.DataFrame(columns=["scene", "trajectory", "frame", "time", *SCORES, "reasons", "kept", "segment_id"])
    return pd.concat([r.frames for r in run.results], ignore_index=True)


def totals(run: FilterRun) -> dict[str, object]:
    """Counts for stats.json: frames kept / dropped, dropped per reason (a frame counts once per reason)."""
    frames = frames_table(run)
    per_reason = {reason.value: 0 for reason in (*CHECK_REASONS, Reason.MARGIN, Reason.SHORT_SEGMENT, Reason.REVIEWER)}
    for reasons, kept in zip(frames["reasons"], frames["kept"]):
        if not kept:
            for reason in reasons:
                per_reason[reason] += 1
    return {"trajectories_filtered": len(run.results), "trajectories_failed": len(run.failed),
            "frames": int(len(frames)), "frames_kept": int(frames["kept"].sum()),
            "frames_dropped": int((~frames["kept"].astype(bool)).sum()), "frames_dropped_per_reason": per_reason,
            "verdicts_applied": run.verdicts_applied, "verdicts_changed": run.verdicts_changed}
