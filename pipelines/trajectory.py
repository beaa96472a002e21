"""One trajectory's Ray task: filter it and cut its clips in one pass over its frames, cached
between runs (pipelines/stages.py wires it into the build).

It runs where the trajectory is staged. On a cluster whose nodes share no disk (formats.md 2.1) that
is the node that captured it (soft node affinity), its cache is written there, and what the driver
needs travels back through Ray's object store: the filter result with the review page's thumbnails,
and the cache's three files (unless the driver already holds the same ones), which the driver
stores as its own copy (`store_cache`) and writes the shards from. A staged copy that is not there
(its node left the cluster) comes back as `missing`, and the build captures it again.

Kept apart from the shard stage so a Ray worker that runs it imports the filter and clip code only:
not webdataset, which pulls in torch (2-3 s of import per worker).
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import io
import re
import tarfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from augment.make import ClipJob, encode_jpeg, make_clips, make_video_clips, read_meta, staged_captions
from capture.nodes import ray_node
from capture.staging import staged_fingerprint
from capture.video import staged_kind
from common.config import to_dict
from datasets.samples import VIDEO
from common.files import atomic_path
from filter.run import SCORES, Failed, filter_one, review_result
from filter.segments import ReviewVerdict, Segment, Verdict, kept_spans
from filter.stage import FilterError, TrajectoryFilter, read_staged
from filter.thumbnails import with_thumbnails
from pipelines.config import BuildConfig

# bump when the cached clip or filter content changes (3: frames wider than the filter's working copy
# are scored on image_checks.shrink copies, depth medians over a sample; 4: tar + parquet + json, no pickle;
# 5: samples carry translation_scale, captions and revisits; 6: samples carry kind, video samples)
CACHE_VERSION = 6


class CacheError(Exception):
    """A cached clip file cannot be read."""


@dataclass(frozen=True)
class TrajectoryItem:
    scene: str
    trajectory: str
    folder: pathlib.Path
    split: str
    ship_to: str = ""  # node-local storage: the driver's Ray node, which gets the cache's bytes back
    have: str = ""  # the SHA-256 of the cache info the driver holds ("" for none): not sent again


def trajectory_task(item: TrajectoryItem, config: BuildConfig, work: pathlib.Path,
                    verdicts: Mapping[str, ReviewVerdict]) -> dict[str, Any]:
    """Filter one staged trajectory and make its clips in one pass over its frames (each decoded
    once: the filter scores it and the clip JPEG is encoded from it), or reuse the cache when nothing
    it depends on changed. A Ray task; failures come back as data, whatever raised them."""
    try:
        outcome = _trajectory(item, config, work, verdicts)
        if item.ship_to and "summary" in outcome and "error" not in outcome["summary"] and ray_node() != item.ship_to:
            paths = CachePaths.of(work, item.scene, item.trajectory)
            info = paths.info.read_bytes()
            if hashlib.sha256(info).hexdigest() != item.have:
                outcome["cache"] = {"samples": paths.samples.read_bytes(), "frames": paths.frames.read_bytes(),
                                    "info": info}
        return outcome
    except Exception as exc:  # one input's failure, of any kind, is that input's failed row
        return {"failed": Failed(item.scene, item.trajectory,
                                 f"{item.folder}: unexpected {type(exc).__name__}: {exc}")}


def _trajectory(item: TrajectoryItem, config: BuildConfig, work: pathlib.Path,
                verdicts: Mapping[str, ReviewVerdict]) -> dict[str, Any]:
    if not item.folder.is_dir():
        return {"missing": f"{item.folder}: not staged on node {ray_node() or 'local'}"}
    paths = CachePaths.of(work, item.scene, item.trajectory)
    prefix = re.compile(rf"{re.escape(item.scene)}-{re.escape(item.trajectory)}-\d{{6}}-\d{{6}}")
    own = sorted((k, v.verdict.value) for k, v in verdicts.items() if prefix.fullmatch(k))
    seed = int(np.random.SeedSequence([config.seed, *item.scene.encode(), 0, *item.trajectory.encode()])
               .generate_state(1)[0])
    staged = staged_fingerprint(item.folder.parent.parent, item.scene, item.trajectory)
    key = hashlib.sha256(json.dumps([CACHE_VERSION, staged, item.split, seed, own, to_dict(config.clips),
                                     to_dict(config.filter), to_dict(config.capture.actions)],
                                    sort_keys=True).encode()).hexdigest()[:24]
    cached = _read_info(paths, key)
    if cached is not None:
        info, result = cached
        return {"filter": with_thumbnails(result, config.filter), "changed": info["changed"],
                "summary": {**info["summary"], "cached": True}}
    jpegs: dict[int, bytes] = {}

    def encode(i: int, bgr: np.ndarray) -> None:
        jpegs[i] = encode_jpeg(bgr, config.clips.jpeg_quality)

    try:  # read once: the filter and the clips both use them
        meta = read_meta(item.folder)
        video = staged_kind(meta) == VIDEO  # plain footage: frames and times, no poses (capture/video.py)
        traj = None if video else read_staged(item.folder)
    except FilterError as exc:
        return {"failed": Failed(item.scene, item.trajectory, str(exc))}
    except ValueError as exc:
        return {"failed": Failed(item.scene, item.trajectory, f"{item.folder / 'meta.json'}: not valid JSON: {exc}")}
    outcome = filter_one((item.folder, item.scene, item.trajectory, config.filter), sink=encode, traj=traj)
    if isinstance(outcome, Failed):
        return {"failed": outcome}
    result, changed = review_result(outcome, verdicts)
    result = with_thumbnails(result, config.filter)
    scores = {name: result.frames[name].to_numpy(float) for name in SCORES}
    times = result.frames["time"].to_numpy(float)
    job = ClipJob(item.folder, item.scene, item.trajectory, item.split, tuple(kept_spans(result.segments)), scores, seed,
                  traj, meta)
    try:
        captions = staged_captions(job, traj, meta, config.clips.captions, times)
        if traj is None:
            clips = make_video_clips(job, times, config.clips, jpegs, captions)
        else:
            clips = make_clips(job, config.clips, config.capture.actions, jpegs, captions)
    except (OSError, ValueError) as exc:
        return {"filter": result, "changed": changed,
                "summary": {"scene": item.scene, "trajectory": item.trajectory, "error": str(exc)}}
    summary = {"scene": item.scene, "trajectory": item.trajectory, "split": item.split, "fingerprint": key,
               "clips": len(clips), "palindromes": sum(bool(c.meta["palindrome"]) for c in clips),
               "frames": sum(len(c.frames_jpeg) for c in clips), "captions": [c.to_json() for c in captions],
               "duration_s": len(times) * float(np.median(np.diff(times))),  # N frames at the trajectory's rate
               "kind": staged_kind(meta),
               "planned_revisits": [r["kind"] for r in meta.get("job", {}).get("planner", {}).get("revisits", [])]}
    _write_cache(paths, [clip.to_wds_sample() for clip in clips], result, changed, summary)
    return {"filter": result, "changed": changed, "summary": {**summary, "cached": False}}


@dataclass(frozen=True)
class CachePaths:
    """A trajectory's cache: its samples as a tar of the shard members themselves, its filter
    frames table as parquet, and a json (written last) with the rest, the fingerprint of what they
    depend on and the SHA-256 of the two data files. Data only: reading a cache runs no code."""

    samples: pathlib.Path
    frames: pathlib.Path
    info: pathlib.Path

    @classmethod
    def of(cls, work: pathlib.Path, scene: str, trajectory: str) -> CachePaths:
        folder = work / scene
        return cls(folder / f"{trajectory}.samples.tar", folder / f"{trajectory}.frames.parquet",
                   folder / f"{trajectory}.json")


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_cache(paths: CachePaths, samples: list[dict[str, Any]], result: TrajectoryFilter, changed: int,
                 summary: dict[str, Any]) -> None:
    paths.samples.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(paths.samples) as tmp, tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for sample in samples:
            for ext, data in sample.items():
                if ext != "__key__":
                    member = tarfile.TarInfo(f"{sample['__key__']}.{ext}")
                    member.size, member.mode = len(data), 0o444
                    tar.addfile(member, io.BytesIO(data))
    with atomic_path(paths.frames) as tmp:
        result.frames.to_parquet(tmp, index=False)
    info = {"version": CACHE_VERSION, "summary": summary, "changed": changed,
            "filter": {"folder": str(result.folder), "seconds": result.seconds,
                       "decode_seconds": result.decode_seconds,
                       "segments": [{**asdict(s), "verdict": s.verdict.value, "auto_verdict": s.auto_verdict.value,
                                     "reasons": list(s.reasons)} for s in result.segments]},
            "sha256": {"samples": _sha256(paths.samples), "frames": _sha256(paths.frames)}}
    with atomic_path(paths.info) as tmp:  # last: it vouches for the two files above
        tmp.write_text(json.dumps(info, sort_keys=True))


def _read_info(paths: CachePaths, key: str) -> tuple[dict[str, Any], TrajectoryFilter] | None:
    """The cache's json and filter result when it is complete, intact and made with `key`; None
    otherwise (the trajectory is then computed again)."""
    try:
        info = json.loads(paths.info.read_text())
        if info.get("version") != CACHE_VERSION or info["summary"]["fingerprint"] != key:
            return None
        if info["sha256"] != {"samples": _sha256(paths.samples), "frames": _sha256(paths.frames)}:
            return None
        frames = pd.read_parquet(paths.frames)
        frames["reasons"] = frames["reasons"].map(list)
        spec = info["filter"]
        segments = tuple(Segment(**{**s, "verdict": Verdict(s["verdict"]), "auto_verdict": Verdict(s["auto_verdict"]),
                                    "reasons": tuple(s["reasons"])}) for s in spec["segments"])
        summary = info["summary"]
        result = TrajectoryFilter(summary["scene"], summary["trajectory"], pathlib.Path(spec["folder"]), frames,
                                  segments, float(spec["seconds"]), float(spec["decode_seconds"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return info, result


def store_cache(work: pathlib.Path, scene: str, trajectory: str, blobs: Mapping[str, bytes]) -> None:
    """Keep a cache another node made and sent (`cache` of a task's outcome) as this machine's own
    copy: the two data files first, the info that vouches for them last, each atomically."""
    paths = CachePaths.of(work, scene, trajectory)
    paths.samples.parent.mkdir(parents=True, exist_ok=True)
    for name in ("samples", "frames", "info"):
        with atomic_path(getattr(paths, name)) as tmp:
            tmp.write_bytes(blobs[name])


def held_cache(work: pathlib.Path, scene: str, trajectory: str) -> str:
    """The SHA-256 of the cache info this machine holds for a trajectory, "" for none."""
    try:
        return hashlib.sha256(CachePaths.of(work, scene, trajectory).info.read_bytes()).hexdigest()
    except OSError:
        return ""


def cache_path(work: pathlib.Path, scene: str, trajectory: str) -> pathlib.Path:
    """Where a trajectory's clip samples are cached between runs (a tar of shard members)."""
    return CachePaths.of(work, scene, trajectory).samples


def read_cache(path: pathlib.Path) -> list[dict[str, Any]]:
    """A trajectory's clip samples, in order, as webdataset dicts (`__key__` and bytes per extension).
    Members are read into memory, never extracted; anything but regular files is an error."""
    samples: list[dict[str, Any]] = []
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isreg() or "." not in member.name or "/" in member.name:
                    raise CacheError(f"{path}: unexpected member {member.name!r}; delete it and re-run")
                key, ext = member.name.split(".", 1)
                if not samples or samples[-1]["__key__"] != key:
                    samples.append({"__key__": key})
                data = tar.extractfile(member)
                assert data is not None
                samples[-1][ext] = data.read()
    except (OSError, tarfile.TarError) as exc:
        raise CacheError(f"{path}: unreadable clip cache ({exc}); delete it and re-run") from exc
    return samples
