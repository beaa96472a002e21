"""One trajectory's Ray task: filter it and cut its clips in one pass over its frames, cached
between runs (pipelines/stages.py wires it into the build).

Kept apart from the shard stage so a Ray worker that runs it imports the filter and clip code only:
not webdataset, which pulls in torch (2-3 s of import per worker).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from augment.make import ClipJob, encode_jpeg, make_clips
from common.config import to_dict
from common.files import atomic_path
from filter.run import SCORES, Failed, filter_one, review_result
from filter.segments import ReviewVerdict, kept_spans
from filter.stage import FilterError, read_staged
from pipelines.config import BuildConfig

# bump when the cached clip or filter content changes (3: frames wider than the filter's working copy
# are scored on image_checks.shrink copies, depth medians over a sample)
CACHE_VERSION = 3


class CacheError(Exception):
    """A cached clip file cannot be read."""


@dataclass(frozen=True)
class TrajectoryItem:
    scene: str
    trajectory: str
    folder: pathlib.Path
    split: str
    staged: str | None  # the staged copy's fingerprint


def trajectory_task(item: TrajectoryItem, config: BuildConfig, work: pathlib.Path,
                    verdicts: Mapping[str, ReviewVerdict]) -> dict[str, Any]:
    """Filter one staged trajectory and make its clips in one pass over its frames (each decoded
    once: the filter scores it and the clip JPEG is encoded from it), or reuse the cache when nothing
    it depends on changed. A Ray task; failures come back as data."""
    samples_path = cache_path(work, item.scene, item.trajectory)
    info_path = samples_path.with_name(f"{item.trajectory}.json")
    filter_path = samples_path.with_name(f"{item.trajectory}.filter.pkl")
    own = sorted((k, v.verdict.value) for k, v in verdicts.items() if k.startswith(f"{item.scene}-{item.trajectory}-"))
    seed = int(np.random.SeedSequence([config.seed, *item.scene.encode(), 0, *item.trajectory.encode()])
               .generate_state(1)[0])
    key = hashlib.sha256(json.dumps([CACHE_VERSION, item.staged, item.split, seed, own, to_dict(config.clips),
                                     to_dict(config.filter), to_dict(config.capture.actions)],
                                    sort_keys=True).encode()).hexdigest()[:24]
    if samples_path.is_file() and info_path.is_file() and filter_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("fingerprint") == key:
            cached = pickle.loads(filter_path.read_bytes())
            return {"filter": cached["filter"], "changed": cached["changed"], "summary": {**info, "cached": True}}
    jpegs: dict[int, bytes] = {}

    def encode(i: int, bgr: np.ndarray) -> None:
        jpegs[i] = encode_jpeg(bgr, config.clips.jpeg_quality)

    try:  # read once: the filter and the clips both use it
        traj = read_staged(item.folder)
    except FilterError as exc:
        return {"failed": Failed(item.scene, item.trajectory, str(exc))}
    outcome = filter_one((item.folder, item.scene, item.trajectory, config.filter), sink=encode, traj=traj)
    if isinstance(outcome, Failed):
        return {"failed": outcome}
    result, changed = review_result(outcome, verdicts)
    scores = {name: result.frames[name].to_numpy(float) for name in SCORES}
    job = ClipJob(item.folder, item.scene, item.trajectory, item.split, tuple(kept_spans(result.segments)), scores, seed,
                  traj)
    try:
        clips = make_clips(job, config.clips, config.capture.actions, jpegs)
    except (OSError, ValueError) as exc:
        return {"filter": result, "changed": changed,
                "summary": {"scene": item.scene, "trajectory": item.trajectory, "error": str(exc)}}
    samples_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(samples_path) as tmp:
        tmp.write_bytes(pickle.dumps([clip.to_wds_sample() for clip in clips], protocol=pickle.HIGHEST_PROTOCOL))
    with atomic_path(filter_path) as tmp:
        tmp.write_bytes(pickle.dumps({"filter": result, "changed": changed}))
    info = {"scene": item.scene, "trajectory": item.trajectory, "split": item.split, "fingerprint": key,
            "clips": len(clips), "palindromes": sum(bool(c.meta["palindrome"]) for c in clips),
            "frames": sum(len(c.frames_jpeg) for c in clips)}
    with atomic_path(info_path) as tmp:  # last: its fingerprint vouches for the two files above
        tmp.write_text(json.dumps(info, sort_keys=True))
    return {"filter": result, "changed": changed, "summary": {**info, "cached": False}}


def cache_path(work: pathlib.Path, scene: str, trajectory: str) -> pathlib.Path:
    """Where a trajectory's clip samples are cached between runs."""
    return work / scene / f"{trajectory}.samples.pkl"


def read_cache(path: pathlib.Path) -> list[dict[str, Any]]:
    """A trajectory's clip samples, in order, as webdataset dicts (`__key__` and bytes per extension)."""
    try:
        return pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise CacheError(f"{path}: unreadable clip cache ({exc}); delete it and re-run") from exc
