"""One staged trajectory + its kept spans -> training clips (forward windows and palindromes).

Reads the staging layout (poses.csv, frames/, depth/, meta.json), subsamples to the target fps,
cuts windows inside the kept spans, draws which windows also give a palindrome (seeded per
trajectory, so the draw does not depend on which worker runs it), recomputes motion and actions
from each clip's own poses, and encodes frames as RGB JPEG. Pure of Ray; one call per trajectory.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from annotate.actions import ActionSpec
from annotate.readers import ReaderConfig, read_ue_csv
from annotate.trajectory import Trajectory
from augment.clips import (PalindromeConfig, WindowConfig, clip_labels, frame_step, palindrome_frames,
                           palindrome_times, windows)
from capture.captions import CaptionConfig, SegmentCaption, clip_captions, trajectory_captions
from capture.staging import frame_files
from capture.standin.scene import make_scene
from common.config import to_dict
from datasets.samples import VIDEO, Clip, sample_key
from filter.run import worst_scores  # the per-clip summary uses the report's rule


@dataclass(frozen=True)
class ClipConfig:
    window: WindowConfig = field(default_factory=WindowConfig)
    palindrome: PalindromeConfig = field(default_factory=PalindromeConfig)
    captions: CaptionConfig = field(default_factory=CaptionConfig)
    jpeg_quality: int = 90
    depth: bool = False  # add <key>.depth.npy when the trajectory has depth maps

    def __post_init__(self) -> None:
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"clips.jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if self.palindrome.share > 0:
            self.palindrome.check_frames(self.window.frames)  # e.g. odd T for `middle`, or a clear error


@dataclass(frozen=True, eq=False)
class ClipJob:
    folder: pathlib.Path
    scene: str
    trajectory: str
    split: str
    spans: tuple[tuple[int, int], ...]  # kept frame spans (start, end exclusive)
    scores: Mapping[str, np.ndarray]  # per-frame filter scores, for the per-clip `filter` summary
    seed: int
    read: Trajectory | None = None  # its poses.csv already read (the filter's); None: read it here
    meta: Mapping[str, Any] | None = None  # its meta.json already read; None: read it here


def encode_jpeg(bgr: np.ndarray, quality: int) -> bytes:
    """A clip frame as JPEG bytes (OpenCV, deterministic for the same pixels and quality)."""
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def read_meta(folder: pathlib.Path) -> dict:
    """A staged trajectory's meta.json ({} when it has none)."""
    return json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").is_file() else {}


def staged_captions(job: ClipJob, traj: Trajectory | None, meta: Mapping, config: CaptionConfig,
                    times: np.ndarray | None = None) -> list[SegmentCaption]:
    """The trajectory's segment captions (capture/captions.py): a stand-in capture is described
    from its scene, which the level name rebuilds exactly. Plain footage (`traj` None) has its
    frame `times` and the captions or caption its meta.json gives."""
    if traj is None:
        assert times is not None
        return trajectory_captions(meta, None, times, config, str(job.folder / "meta.json"))
    scene = make_scene(str(meta["scene"])) if meta.get("engine") == "standin" else None
    return trajectory_captions(meta, traj.poses, traj.timestamps, config, str(job.folder / "meta.json"), scene)


def clip_revisits(revisits: list[Mapping], source: np.ndarray) -> list[dict]:
    """The planned revisits (loops, out-and-back walks: the planner's `revisits`, source frame
    indices) that a clip holds whole, as clip frame indices."""
    out = []
    for r in revisits:
        at = np.flatnonzero(source == r["start"])
        back = np.flatnonzero(source == r["end"])
        if len(at) and len(back) and at[0] < back[-1]:
            out.append({"kind": r["kind"], "start": int(at[0]), "end": int(back[-1])})
    return out


def make_video_clips(job: ClipJob, times: np.ndarray, config: ClipConfig, jpegs: Mapping[int, bytes],
                     captions: list[SegmentCaption]) -> list[Clip]:
    """Plain footage (capture/video.py) -> `video` samples: windows at the target fps inside the
    kept spans, frames and metadata only (no poses, so no actions, motion or palindromes).
    `times`: the staged frame times; `jpegs`: every frame, encoded (the filter's pass)."""
    meta = job.meta if job.meta is not None else read_meta(job.folder)
    fps = 1.0 / float(np.median(np.diff(times)))
    step = frame_step(fps, config.window.fps, str(job.folder))
    base = {"kind": VIDEO, "scene": job.scene, "trajectory": job.trajectory, "split": job.split, "fps": fps / step,
            "width": meta.get("width"), "height": meta.get("height"), "intrinsics": None,
            "caption": meta.get("caption", ""), "palindrome": False, "turn_index": None, "translation_scale": None,
            "revisits": [], "modalities": ["rgb"]}
    clips = []
    for index, source in enumerate(windows(job.spans, step, config.window)):
        summary = worst_scores({name: np.asarray(values)[source] for name, values in job.scores.items()})
        seconds = times[source] - times[0]
        clip_meta = {**base, "clip": index, "source_frames": source.tolist(),
                     "captions": clip_captions(captions, float(seconds.min()), float(seconds.max())),
                     "filter": {k: (None if np.isnan(v) else v) for k, v in summary.items()}}
        clips.append(Clip(sample_key(job.scene, job.trajectory, index, False), tuple(jpegs[int(i)] for i in source),
                          None, None, None, clip_meta))
    return clips


def make_clips(job: ClipJob, config: ClipConfig, spec: ActionSpec, jpegs: Mapping[int, bytes] | None = None,
               captions: list[SegmentCaption] | None = None) -> list[Clip]:
    """`jpegs`: frames already encoded (source index -> JPEG bytes at `config.jpeg_quality`); the
    others are read from the staged files and encoded here. `captions`: the trajectory's segment
    captions when the caller has them (default: `staged_captions`)."""
    traj = job.read if job.read is not None else read_ue_csv(job.folder / "poses.csv", ReaderConfig())
    meta = job.meta if job.meta is not None else read_meta(job.folder)
    if captions is None:
        captions = staged_captions(job, traj, meta, config.captions)
    t0 = float(traj.timestamps[0])
    revisits = meta.get("job", {}).get("planner", {}).get("revisits", [])
    fps = float(meta["fps"]) if meta.get("fps") else 1.0 / float(np.median(np.diff(traj.timestamps)))
    step = frame_step(fps, config.window.fps, str(job.folder))
    forward = windows(job.spans, step, config.window)
    rng = np.random.default_rng(job.seed)
    want_palindrome = rng.random(len(forward)) < config.palindrome.share
    turns = (config.palindrome.turns(config.window.frames, len(forward), np.random.default_rng([job.seed, 1]))
             if config.palindrome.share > 0 else np.zeros(len(forward), dtype=np.int64))  # own stream: the share's draw stays
    cache: dict[int, bytes] = dict(jpegs or {})

    files: list[pathlib.Path] = []  # listed when a frame is not in `jpegs`

    def jpeg(i: int) -> bytes:
        if i not in cache:
            if not files:
                files.extend(frame_files(job.folder, len(traj.poses)))
            image = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{files[i]}: cannot decode image (poses.csv row {i})")
            cache[i] = encode_jpeg(image, config.jpeg_quality)
        return cache[i]

    clips = []
    base = {"kind": "posed", "scene": job.scene, "trajectory": job.trajectory, "split": job.split,
            "fps": fps / step, "width": meta.get("width"), "height": meta.get("height"),
            "intrinsics": meta.get("intrinsics"), "caption": meta.get("caption", ""),
            "action_spec": to_dict(spec)}
    depth_dir = job.folder / "depth"
    with_depth = config.depth and depth_dir.is_dir()
    for index, frames in enumerate(forward):
        variants: list[tuple[np.ndarray, np.ndarray, bool, int | None]] = [(frames, traj.timestamps[frames], False, None)]
        if want_palindrome[index]:
            half = frames[:int(turns[index]) + 1]
            pal, turn_index = palindrome_frames(half, len(frames))
            variants.append((pal, palindrome_times(traj.timestamps[half], len(frames)), True, turn_index))
        for source, times, is_pal, turn in variants:
            poses = traj.poses[source]
            motion, actions, scale = clip_labels(poses, times, spec)
            summary = worst_scores({name: np.asarray(values)[source] for name, values in job.scores.items()})
            seconds = traj.timestamps[source] - t0
            clip_meta = {**base, "clip": index, "source_frames": source.tolist(), "palindrome": is_pal,
                         "turn_index": turn, "translation_scale": scale,
                         "captions": clip_captions(captions, float(seconds.min()), float(seconds.max())),
                         "revisits": clip_revisits(revisits, source),
                         "filter": {k: (None if np.isnan(v) else v) for k, v in summary.items()},
                         "modalities": ["rgb", "depth"] if with_depth else ["rgb"]}
            depth = np.stack([np.load(depth_dir / f"{i:06d}.npy") for i in source]) if with_depth else None
            clips.append(Clip(sample_key(job.scene, job.trajectory, index, is_pal), tuple(jpeg(int(i)) for i in source),
                              poses, motion, actions, clip_meta, depth))
    return clips
