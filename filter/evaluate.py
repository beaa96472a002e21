"""Measure the filter on labelled stand-in footage: recall per fault type, false drops on clean paths.

`FAULTS` documents, for every fault the test data can inject, the magnitudes tried, the documented
detection threshold (recall must be >= 0.95 at or above it) and the reasons that count as detecting
it. `make_labelled_set` renders planner paths in stand-in scenes, clean and with one fault type
each; `evaluate` filters them and returns the confusion table (rows: injected fault, columns: the
reasons its frames were flagged for) and the recall and false-drop figures.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from annotate.actions import ActionSpec
from capture.planner import PlannerConfig, plan_path
from capture.pose_faults import POSE_FAULTS, inject_pose_fault
from capture.standin.engine import FaultConfig
from capture.standin.footage import render_footage
from capture.standin.scene import make_scene
from filter.config import FilterConfig
from filter.reasons import CHECK_REASONS, Reason
from filter.stage import TrajectoryFilter, filter_trajectory


@dataclass(frozen=True)
class FaultSpec:
    name: str
    magnitudes: tuple[float, ...]
    threshold: float  # detection guaranteed at or above (|gain - 1| for flicker)
    reasons: tuple[Reason, ...]  # any of these on a fault frame counts as detected
    unit: str

    def severity(self, magnitude: float) -> float:
        return abs(magnitude - 1.0) if self.name == "flicker" else magnitude


FAULTS: dict[str, FaultSpec] = {s.name: s for s in [
    FaultSpec("black_frame", (1.0,), 1.0, (Reason.BLACK,), "-"),
    FaultSpec("frozen_frame", (1.0,), 1.0, (Reason.FROZEN,), "- (pose moved >= 1 cm or 0.2 deg)"),
    FaultSpec("exposure_spike", (1.5, 2.0, 3.0), 2.0, (Reason.OVEREXPOSED, Reason.FLICKER), "gain"),
    FaultSpec("flicker", (0.92, 0.85, 0.7, 1.15, 1.3), 0.15, (Reason.FLICKER,), "|gain - 1|"),
    FaultSpec("glitch", (0.1, 0.25, 0.5), 0.25, (Reason.GLITCH,), "area fraction"),
    FaultSpec("blur", (0.7, 1.5, 3.0), 1.5, (Reason.BLUR,), "sigma px at 256 px wide"),
    FaultSpec("pose_offset", (2.0, 5.0, 10.0), 5.0, (Reason.MOTION_MISMATCH,), "deg at 90 deg FOV"),
    FaultSpec("jitter_translation", (1.0, 3.0, 6.0), 3.0, (Reason.JITTER,), "mm std at 30 fps"),
    FaultSpec("jitter_rotation", (0.1, 0.25, 0.5), 0.25, (Reason.JITTER,), "deg std at 30 fps"),
    FaultSpec("abrupt_translation", (1.0, 2.0, 4.0), 2.0, (Reason.ABRUPT_TRANSLATION,), "m/s jump at 30 fps"),
    FaultSpec("abrupt_rotation", (100.0, 150.0, 300.0), 150.0, (Reason.ABRUPT_ROTATION,), "deg/s jump at 30 fps"),
    FaultSpec("teleport", (0.25, 0.5, 1.0), 0.5, (Reason.TELEPORT,), "m"),
    FaultSpec("time_gap", (1.0, 2.0, 5.0), 1.0, (Reason.TIME_GAP,), "frames missing"),
    FaultSpec("invalid_pose", (30.0, 75.0, 120.0), 75.0, (Reason.INVALID_POSE,), "deg of roll"),
]}
CLEAN = "clean"
SCENES = ("room-1", "corridor-2", "courtyard-3", "street-4")


@dataclass(frozen=True)
class SetSpec:
    scenes: tuple[str, ...] = SCENES
    clean_per_scene: int = 2
    per_magnitude: int = 2  # trajectories per (fault, magnitude)
    frames: int = 120
    width: int = 256
    height: int = 144
    image_fault_rate: float = 0.04  # per frame
    pose_faults_per_trajectory: int = 3
    faults: tuple[str, ...] = tuple(FAULTS)
    only_at_threshold: bool = False  # just the threshold magnitude (CI's smaller set)
    seed: int = 0


@dataclass(frozen=True, eq=False)
class Labelled:
    folder: pathlib.Path
    fault: str  # a FAULTS name or "clean"
    magnitude: float
    fault_frames: tuple[int, ...] = ()  # frames carrying the injected fault


def make_labelled_set(root: pathlib.Path, spec: SetSpec,
                      pool_map: Callable[..., Iterable] = map) -> list[Labelled]:
    """Render the set under `root` (staging layout); `pool_map` may be a process pool's map."""
    jobs = []
    for s, scene in enumerate(spec.scenes):
        for k in range(spec.clean_per_scene):
            jobs.append((scene, CLEAN, 0.0, f"clean{k:02d}", (spec.seed, s, 0, k)))
    for f, name in enumerate(spec.faults):
        fault = FAULTS[name]
        magnitudes = (fault.threshold,) if spec.only_at_threshold else fault.magnitudes
        if spec.only_at_threshold and name == "flicker":
            magnitudes = (1.0 - fault.threshold,)
        for m, magnitude in enumerate(magnitudes):
            for k in range(spec.per_magnitude):
                scene = spec.scenes[(f + m + k) % len(spec.scenes)]
                jobs.append((scene, name, magnitude, f"{name}_{m}_{k}", (spec.seed, f + 1, m, k)))
    return list(pool_map(_render_one, [(root, spec, *job) for job in jobs]))


def _render_one(args) -> Labelled:
    root, spec, scene, fault, magnitude, name, seed = args
    rng = np.random.default_rng(list(seed))
    path = plan_path(make_scene(scene), PlannerConfig(frames=spec.frames), ActionSpec(),
                     int(rng.integers(2**31)))
    poses, times = path.poses, path.times
    pose_frames: list[int] = []
    engine_faults = FaultConfig(seed=int(rng.integers(2**31)))
    if fault in POSE_FAULTS:
        # evenly spaced, away from the ends and from each other
        count = spec.pose_faults_per_trajectory
        starts = np.linspace(spec.frames * 0.15, spec.frames * 0.8, count).round().astype(int)
        for at in starts[::-1]:  # last first: a time gap removes rows, shifting later indices
            poses, times, frames = inject_pose_fault(poses, times, fault, magnitude, int(at), rng)
            pose_frames = frames + [f - (int(magnitude) if fault == "time_gap" else 0) for f in pose_frames]
    elif fault != CLEAN:
        engine_faults = _engine_faults(fault, magnitude, spec.image_fault_rate, engine_faults.seed)
    folder, truth = render_footage(scene, poses, times, root, name, spec.width, spec.height, faults=engine_faults,
                                   depth=True)
    frames = pose_frames if fault in POSE_FAULTS else [i for i, injected in enumerate(truth) if injected]
    return Labelled(folder, fault, magnitude, fault_frames=tuple(sorted(set(frames))))


def _engine_faults(fault: str, magnitude: float, rate: float, seed: int) -> FaultConfig:
    knobs: dict[str, float | str | None] = {fault: rate}
    magnitude_key = {"exposure_spike": "exposure_gain", "flicker": "flicker_gain", "glitch": "glitch_area",
                     "blur": "blur_sigma", "pose_offset": "pose_offset_deg"}.get(fault)
    if magnitude_key:
        knobs[magnitude_key] = magnitude
    return FaultConfig(seed=seed, **knobs)  # type: ignore[arg-type]


def evaluate(labelled: list[Labelled], config: FilterConfig,
             pool_map: Callable[..., Iterable] = map) -> tuple[pd.DataFrame, pd.DataFrame]:
    """-> (confusion, summary). confusion: one row per (fault, magnitude), columns: fault frames,
    frames flagged with each reason, detected, missed. summary: per fault type, recall at or above
    its threshold and below it; for clean paths, the false-drop rate."""
    results = list(pool_map(_filter_one, [(item.folder, config) for item in labelled]))
    rows = []
    for item, result in zip(labelled, results):
        frames = result.frames
        if item.fault == CLEAN:
            dropped = int((~frames["kept"]).sum())
            rows.append({"fault": CLEAN, "magnitude": 0.0, "severity": 0.0, "frames": len(frames),
                         "fault_frames": 0, "detected": 0, "dropped": dropped,
                         **{r.value: int(frames[f"flag_{r.value}"].sum()) for r in CHECK_REASONS}})
            continue
        spec = FAULTS[item.fault]
        index = [i for i in item.fault_frames if _observable(spec, frames.loc[i], config)]
        flagged = frames.loc[index]
        expected = np.zeros(len(index), bool)
        for reason in spec.reasons:
            expected |= flagged[f"flag_{reason.value}"].to_numpy()
        rows.append({"fault": item.fault, "magnitude": item.magnitude, "severity": spec.severity(item.magnitude),
                     "frames": len(frames), "fault_frames": len(index), "detected": int(expected.sum()),
                     "dropped": int((~flagged["kept"]).sum()),
                     **{r.value: int(flagged[f"flag_{r.value}"].sum()) for r in CHECK_REASONS}})
    confusion = pd.DataFrame(rows).groupby(["fault", "magnitude"], sort=False).sum(numeric_only=True).reset_index()
    confusion["severity"] = [FAULTS[f].severity(m) if f in FAULTS else 0.0
                             for f, m in zip(confusion["fault"], confusion["magnitude"])]
    summary = []
    for name, group in confusion.groupby("fault", sort=False):
        if name == CLEAN:
            summary.append({"fault": CLEAN, "frames": int(group["frames"].sum()),
                            "false_drop_rate": group["dropped"].sum() / group["frames"].sum()})
            continue
        spec = FAULTS[str(name)]
        above = group[group["severity"] >= spec.threshold - 1e-9]
        below = group[group["severity"] < spec.threshold - 1e-9]
        summary.append({"fault": name, "threshold": spec.threshold, "unit": spec.unit,
                        "fault_frames": int(above["fault_frames"].sum()),
                        "recall": _ratio(above["detected"].sum(), above["fault_frames"].sum()),
                        "recall_below": _ratio(below["detected"].sum(), below["fault_frames"].sum())})
    return confusion, pd.DataFrame(summary)


def _observable(spec: FaultSpec, frame: pd.Series, config: FilterConfig) -> bool:
    """A frozen frame is a fault only when the camera moved since the previous frame."""
    if spec.name != "frozen_frame":
        return True
    image = config.image
    return bool(frame["speed"] * frame["dt"] >= image.frozen_motion_m
                or frame["angular_speed"] * frame["dt"] >= image.frozen_motion_deg)


def _filter_one(args) -> TrajectoryFilter:
    folder, config = args
    return filter_trajectory(folder, config)


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")
