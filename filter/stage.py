"""Filter one staged trajectory (`<staging>/<scene>/<trajectory>/`, capture/staging.py's layout).

Frames are decoded and scored one at a time; poses come from poses.csv, the camera from meta.json
(`intrinsics`, or `fov` on the longer side), depth (when captured) sharpens the motion check.
The result holds one row per frame (every score, the flags, the reasons) and the segments.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from annotate.readers import ReaderConfig, read_ue_csv
from annotate.trajectory import Trajectory, TrajectoryError
from annotate.ue import fov_to_intrinsics
from capture.staging import LayoutError, frame_files
from capture.video import staged_kind
from filter.config import FilterConfig
from filter.image_checks import FrameScorer, image_flags, image_scores
from filter.pose_checks import pose_flags, pose_scores, time_scores
from filter.reasons import CHECK_REASONS
from filter.segments import Segment, frame_reasons, make_segments

class FilterError(ValueError):
    """A staged trajectory that cannot be filtered; the message names the file (and row)."""


@dataclass(frozen=True, eq=False)
class TrajectoryFilter:
    scene: str
    trajectory: str
    folder: pathlib.Path
    frames: pd.DataFrame  # one row per frame: frame, time, every score, flag_<reason>, reasons, segment_id, kept
    segments: tuple[Segment, ...]
    seconds: float  # wall time spent, decoding included
    decode_seconds: float  # of which reading and decoding images
    # the review page's pictures of flagged frames, (frame, JPEG bytes), made where the staged frames
    # are (filter.review.with_thumbnails): the page is written on a machine that may not see them
    thumbnails: tuple[tuple[int, bytes], ...] = ()


def camera_matrix(meta: dict, width: int, height: int, where: pathlib.Path) -> np.ndarray:
    if "intrinsics" in meta:
        k = meta["intrinsics"]
        return np.array([[k["fx"], 0, k["cx"]], [0, k["fy"], k["cy"]], [0, 0, 1]], float)
    if "fov" in meta:
        return fov_to_intrinsics(float(meta["fov"]), width, height)
    raise FilterError(f"{where}: meta.json has neither intrinsics nor fov")


def source_file(meta: dict, path: pathlib.Path, row: int) -> str:
    """How a message names staged frame `row`: the user's own file when the trajectory was ingested
    (meta.json's `source` and `source_frames`), with the staged copy's path after it."""
    names = meta.get("source_frames")
    if isinstance(meta.get("source"), str) and isinstance(names, list) and row < len(names):
        return f"{pathlib.Path(meta['source']) / str(names[row])} (staged as {path})"
    return str(path)


def read_staged(folder: pathlib.Path) -> Trajectory:
    """A staged trajectory's poses.csv (read-back poses, times), or a FilterError naming file and row."""
    try:
        return read_ue_csv(folder / "poses.csv", ReaderConfig())
    except (TrajectoryError, OSError) as exc:
        raise FilterError(str(exc)) from exc


def staged_times(meta: dict, where: pathlib.Path) -> np.ndarray:
    """A staged video's frame times (meta.json `frame_times`: seconds, strictly increasing)."""
    times = np.asarray(meta.get("frame_times", []), dtype=np.float64)
    if times.ndim != 1 or len(times) < 2 or not np.isfinite(times).all() or (np.diff(times) <= 0).any():
        raise FilterError(f"{where}: frame_times must be at least 2 finite, increasing seconds")
    return times


def filter_trajectory(folder: str | pathlib.Path, config: FilterConfig, scene: str | None = None,
                      trajectory: str | None = None, sink: Callable[[int, np.ndarray], None] | None = None,
                      traj: Trajectory | None = None) -> TrajectoryFilter:
    """Score every frame and cut segments. `sink(i, bgr)`, when given, sees each decoded frame (the
    build encodes its clip JPEGs there, so that a frame is decoded once per build). `traj`: the
    folder's poses.csv already read (read_staged), so a caller that needs it too reads it once.
    Plain footage (meta.json kind `video`: no poses) gets the image checks and the time-gap check;
    the checks that need poses do not apply and never flag."""
    start_time = time.perf_counter()
    folder = pathlib.Path(folder)
    scene = scene or folder.parent.name
    trajectory = trajectory or folder.name
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    except ValueError as exc:
        raise FilterError(f"{meta_path}: not valid JSON: {exc}") from exc
    posed = staged_kind(meta) != "video"
    if posed:
        traj = traj if traj is not None else read_staged(folder)
        times, poses = traj.timestamps, traj.poses
    else:
        times = staged_times(meta, meta_path)
        poses = np.full((len(times), 4, 4), np.nan)
    n = len(times)
    try:
        files = frame_files(folder, n)
    except LayoutError as exc:
        raise FilterError(str(exc)) from exc
    decode = 0.0
    scorer: FrameScorer | None = None
    for i, path in enumerate(files):
        t0 = time.perf_counter()
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        decode += time.perf_counter() - t0
        if image is None:
            raise FilterError(f"{source_file(meta, path, i)}: cannot decode image "
                              f"({'poses.csv row' if posed else 'frame'} {i})")
        if sink is not None:
            sink(i, image)
        if scorer is None:
            scorer = FrameScorer(config.image, image.shape[1], image.shape[0])
        try:
            scorer.add(image, where=source_file(meta, path, i))
        except ValueError as exc:
            raise FilterError(str(exc)) from exc
    assert scorer is not None  # n >= 2: the reader requires it
    width, height = scorer.width, scorer.height
    depth = depth_medians(folder, n, config.image.assumed_depth_m, config.image.work_width)
    fps = 1.0 / float(np.median(np.diff(times)))
    pose = pose_scores(poses, times, config.pose) if posed else time_scores(times)
    K = camera_matrix(meta, width, height, meta_path) if posed else np.full((3, 3), np.nan)
    images = image_scores(scorer.raw(), poses, fps, K, width, depth, config.image)
    step_m = pose["speed"] * pose["dt"]
    step_deg = pose["angular_speed"] * pose["dt"]
    flags = {**pose_flags(pose, config.pose, posed), **image_flags(images, step_m, step_deg, config.image)}
    reasons = frame_reasons(flags, n, config.segments, config.disabled)
    segments = make_segments(scene, trajectory, reasons)
    table = pd.DataFrame({"scene": scene, "trajectory": trajectory, "frame": np.arange(n), "time": times,
                          **pose, **images, **{f"flag_{reason.value}": flags[reason] for reason in CHECK_REASONS},
                          "reasons": [list(r) for r in reasons], "kept": [not r for r in reasons],
                          "segment_id": [s.segment_id for s in segments for _ in range(s.frames)]})
    return TrajectoryFilter(scene, trajectory, folder, table, tuple(segments), time.perf_counter() - start_time, decode)


def depth_medians(folder: pathlib.Path, n: int, assumed: float, max_width: int) -> np.ndarray | None:
    """Median depth (m) of each frame from depth/NNNNNN.npy, or None when not captured (or incomplete).

    The median is taken over every k-th pixel of every k-th row, k the least that makes the sample
    at most `max_width` wide (the image checks' working width; at 640x480, 1 pixel in 9): at
    640x480 on one core, 0.65 ms a frame with the file's loading (0.28), against 1.7 ms over the
    whole map. Invalid pixels (not finite, <= 0) are left out; a frame with none valid takes the
    trajectory's median (or `assumed` when no frame has any). A file that is not a 2-D array
    raises FilterError naming it."""
    files = sorted((folder / "depth").glob("*.npy")) if (folder / "depth").is_dir() else []
    if len(files) != n:
        return None
    out = np.empty(n)
    for i, path in enumerate(files):
        try:
            d = np.load(path)
        except (OSError, ValueError) as exc:
            raise FilterError(f"{path}: unreadable depth map ({exc})") from exc
        if d.ndim != 2:
            raise FilterError(f"{path}: depth map must be 2-D (H, W), got shape {d.shape}")
        step = max(1, -(-d.shape[-1] // max_width))
        sample = d[::step, ::step]
        valid = sample[np.isfinite(sample) & (sample > 0)]
        out[i] = float(np.median(valid)) if valid.size else np.nan
    return np.where(np.isfinite(out), out, np.nanmedian(out) if np.isfinite(out).any() else assumed)
