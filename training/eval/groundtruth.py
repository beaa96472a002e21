"""Held-out evaluation clips: action scripts from free start poses in stand-in scenes, with the
ground truth rendered by the stand-in along each integrated script.

For every scene and start index, candidate start poses are drawn (eye height, random heading,
seeded); each script starts from the first candidate where its path stays `clearance_m` clear of
geometry and within the planner's pitch/roll limits, at action bin level 1 or else level 0. Most
scripts of a start index share its first candidate (a 2 m corridor leaves sideways scripts fewer).
A script that fits no candidate (a long clip at a low frame rate: 6.4 s of `down` goes through the
floor, of `pitch_up` past the planner's 40 degrees) is left out of that start and recorded, with its
reason, in the set's `unfit` list: evaluations report it, and a set with no clip at all is an error.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from annotate.actions import ActionSpec
from annotate.ue import location_to_ue, pose_to_ue, ue_to_pose
from capture.planner import PlannerConfig
from capture.standin.render import Renderer
from capture.standin.scene import Scene, make_scene
from common.config import to_dict
from training.eval.scripts import ActionScript, revisit_scripts, standard_scripts
from training.eval.pool import process_pool

SCRIPT_SETS = {"standard": standard_scripts, "revisit": revisit_scripts}


@dataclass(frozen=True)
class EvalSetConfig:
    scenes: tuple[str, ...]
    starts: int = 3  # start poses per scene
    frames: int = 33  # frames per clip (transitions = frames - 1, even for out-and-back)
    fps: float = 15.0
    width: int = 128
    height: int = 72
    fov: float = 90.0
    seed: int = 0
    clearance_m: float = 0.3
    scripts: str = "standard"  # standard (scripts.standard_scripts) | revisit (scripts.revisit_scripts)
    min_textured: float = 0.05  # a start whose first view is less textured (a blank wall) is drawn again
    actions: ActionSpec = field(default_factory=ActionSpec)  # the binning of the model's training data


@dataclass(frozen=True, eq=False)
class EvalClip:
    scene: str
    start: int  # index of the start pose within the scene
    script: str
    kind: str
    level: int  # action bin level the script plays at
    motion: np.ndarray  # (T-1, 6)
    actions: np.ndarray  # (T-1, 13)
    poses: np.ndarray  # (T, 4, 4)
    frames: np.ndarray  # (T, H, W, 3) uint8 ground truth
    depth0: np.ndarray  # (H, W) float32 planar depth of the first frame, metres (inf: the sky, nothing hit)


#: the shortest script (s) an eval set holds: 33 frames at 15 fps. Clips of fewer frames are the first
#: frames of these, so evaluations at 9 and 33 frames share one set of start poses (and one cache)
SCRIPT_SECONDS = 32 / 15


@dataclass(frozen=True)
class Unfit:
    """A script left out of one start of one scene, and why."""
    scene: str
    start: int
    script: str
    reason: str


@dataclass(frozen=True, eq=False)
class EvalSet:
    """The clips of an eval set, and the scripts that fit no start pose (left out, with reasons)."""
    clips: list[EvalClip]
    unfit: list[Unfit] = field(default_factory=list)


#: draws of a start pose per script before it is recorded as unfit
START_DRAWS = 500


def script_frames(frames: int, fps: float) -> int:
    """Frames per eval-set script for clips of `frames` frames at `fps`: at least SCRIPT_SECONDS long,
    and odd (an out-and-back script needs an even number of transitions)."""
    n = max(frames, 1 + math.ceil(SCRIPT_SECONDS * fps - 1e-9))
    return n + 1 - n % 2


def random_start(scene: Scene, rng: np.random.Generator, clearance_m: float,
                 eye_height_m: float = PlannerConfig().eye_height_m) -> np.ndarray:
    """A camera-to-world start pose at a free point at eye height, level, with a random heading."""
    p = scene.sample_free(rng, 1, radius=clearance_m, height=eye_height_m)[0]
    return ue_to_pose(location_to_ue(p), np.array([0.0, rng.uniform(-180, 180), 0.0]))


def textured_share(frame: np.ndarray) -> float:
    """Share of an RGB view's pixels where the image could be tracked in both directions: the
    smaller eigenvalue of the 3x3 structure tensor above 50 (gray levels squared). A start facing
    a blank wall (about 0) says nothing about motion, to a model or to the pose estimator; stand-in
    views of textured surfaces have 0.1-0.3."""
    gray = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float((cv2.cornerMinEigenVal(gray, 3) > 50.0).mean())


def _within_limits(poses: np.ndarray, limits: PlannerConfig) -> bool:
    rot = pose_to_ue(poses)[1]
    return bool((np.abs(rot[:, 0]) <= limits.max_pitch_deg).all() and (np.abs(rot[:, 2]) <= limits.max_roll_deg).all())


def _fits(script: ActionScript, start: np.ndarray, scene, clearance_m: float) -> bool:
    """Whether the script's path from `start` stays `clearance_m` clear of the scene."""
    return bool(scene.is_free(script.poses(start)[:, :3, 3], clearance_m).all())


def scene_clips(scene_name: str, config: EvalSetConfig) -> EvalSet:
    """Every script from `config.starts` start poses in one scene, rendered (those that fit no start
    pose recorded as unfit)."""
    scene = make_scene(scene_name)
    renderer = Renderer(scene)
    limits, dt = PlannerConfig(), 1.0 / config.fps
    if config.scripts not in SCRIPT_SETS:
        raise ValueError(f"eval scripts must be one of {sorted(SCRIPT_SETS)}, got {config.scripts!r}")
    # the scripts move at the metric bins' rates; their actions are binned as the model's data was
    by_level = {level: SCRIPT_SETS[config.scripts](config.frames - 1, dt, ActionSpec(), level) for level in (1, 0)}
    seed = int.from_bytes(hashlib.sha256(f"{config.seed}:{scene_name}".encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    clips: list[EvalClip] = []
    unfit: list[Unfit] = []
    for start_index in range(config.starts):
        candidates: list[np.ndarray] = []  # start poses in draw order; each script takes the first that fits

        def candidate(j: int) -> np.ndarray:
            draws = 0
            while len(candidates) <= j:
                start = random_start(scene, rng, config.clearance_m, limits.eye_height_m)
                view = renderer.render(start, config.width, config.height, config.fov).lit
                if textured_share(view) >= config.min_textured:
                    candidates.append(start)
                draws += 1
                if draws > 1000:
                    raise RuntimeError(f"{scene_name}: no textured start view (min_textured "
                                       f"{config.min_textured}) in 1000 draws at {config.width}x{config.height}")
            return candidates[j]

        for i in range(len(by_level[1])):
            # starts are level with a drawn heading, so whether a level's path stays inside the pitch/roll
            # limits does not depend on the start: checked once, on the first candidate
            levels = [lv for lv in (1, 0) if _within_limits(by_level[lv][i].poses(candidate(0)), limits)]
            found = next(((j, lv) for j in range(START_DRAWS) for lv in levels
                          if _fits(by_level[lv][i], candidate(j), scene, config.clearance_m)), None)
            if found is None:
                reason = (f"no start pose in {START_DRAWS} draws keeps its path {config.clearance_m:g} m clear"
                          if levels else f"turns past the planner's pitch {limits.max_pitch_deg:g} / roll "
                                         f"{limits.max_roll_deg:g} degree limits at every bin level")
                unfit.append(Unfit(scene_name, start_index, by_level[1][i].name, reason))
                continue
            j, level = found
            script = by_level[level][i]
            poses = script.poses(candidate(j))
            renders = [renderer.render(p, config.width, config.height, config.fov) for p in poses]
            clips.append(EvalClip(scene_name, start_index, script.name, script.kind, level, script.motion,
                                  script.actions(dt, config.actions), poses, np.stack([r.lit for r in renders]),
                                  renders[0].depth_m()))
    return EvalSet(clips, unfit)


def shrunk_translation(poses: np.ndarray, scale: float) -> np.ndarray:
    """Camera-to-world poses (T, 4, 4) with each camera's offset from the first scaled by `scale` (the
    rotations kept): a path that moves `scale` of the way (bench/odometry_blur.py --translation-scales)."""
    out = poses.copy()
    out[:, :3, 3] = poses[0, :3, 3] + scale * (poses[:, :3, 3] - poses[0, :3, 3])
    return out


def make_eval_set(config: EvalSetConfig, workers: int = 1) -> EvalSet:
    """All scenes' clips, scenes rendered in parallel processes; order is deterministic. A set in which no
    script fits at all is an error naming the first reason."""
    if workers <= 1:
        sets = [scene_clips(scene, config) for scene in config.scenes]
    else:
        with process_pool(workers) as pool:
            sets = list(pool.map(scene_clips, config.scenes, [config] * len(config.scenes)))
    merged = EvalSet([c for s in sets for c in s.clips], [u for s in sets for u in s.unfit])
    if not merged.clips:
        first = merged.unfit[0] if merged.unfit else None
        raise RuntimeError(f"no eval clip fits: {config.frames} frames at {config.fps:g} fps in {list(config.scenes)}"
                           + (f" ({first.scene} {first.script}: {first.reason})" if first else ""))
    return merged


def save_eval_set(eval_set: EvalSet, config: EvalSetConfig, path: pathlib.Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")  # evaluations side by side may write the same set
    clips = eval_set.clips
    np.savez(tmp, config=json.dumps(to_dict(config)), unfit=json.dumps([asdict(u) for u in eval_set.unfit]),
             scene=[c.scene for c in clips], start=[c.start for c in clips],
             script=[c.script for c in clips], kind=[c.kind for c in clips], level=[c.level for c in clips],
             motion=np.stack([c.motion for c in clips]), actions=np.stack([c.actions for c in clips]),
             poses=np.stack([c.poses for c in clips]), frames=np.stack([c.frames for c in clips]),
             depth0=np.stack([c.depth0 for c in clips]))
    tmp.replace(path)


def load_eval_set(path: pathlib.Path, config: EvalSetConfig) -> EvalSet | None:
    """The cached set if it was made with exactly `config` (and records its unfit scripts), else None."""
    if not path.is_file():
        return None
    with np.load(path) as npz:
        data = {k: npz[k] for k in npz.files}  # an NpzFile reads the whole array on every [key]
    if ("unfit" not in data or "depth0" not in data
            or json.loads(str(data["config"])) != json.loads(json.dumps(to_dict(config)))):
        return None  # a cache from before unfit scripts (or the first frame's depth) were kept is rendered again
    clips = [EvalClip(str(data["scene"][i]), int(data["start"][i]), str(data["script"][i]), str(data["kind"][i]),
                      int(data["level"][i]), data["motion"][i], data["actions"][i], data["poses"][i],
                      data["frames"][i], data["depth0"][i]) for i in range(len(data["scene"]))]
    return EvalSet(clips, [Unfit(**u) for u in json.loads(str(data["unfit"]))])


def cached_eval_set(config: EvalSetConfig, cache: pathlib.Path | None, workers: int = 1) -> EvalSet:
    """The eval set from `cache` when it was made with `config`, else rendered (and cached)."""
    eval_set = load_eval_set(cache, config) if cache else None
    if eval_set is None:
        eval_set = make_eval_set(config, workers=workers)
        if cache:
            save_eval_set(eval_set, config, cache)
    return eval_set


def unfit_summary(unfit: list[Unfit]) -> dict[str, dict[str, Any]]:
    """Unfit scripts by name, in order met: how many scene starts left each out, and the reasons given."""
    return {name: {"starts": sum(u.script == name for u in unfit),
                   "reasons": sorted({u.reason for u in unfit if u.script == name})}
            for name in dict.fromkeys(u.script for u in unfit)}
