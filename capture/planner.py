"""Human-like 6-DoF camera paths in stand-in scenes, planned to hit a requested action mix.

A path is a chain of segments. Each segment holds target rates for one of the 13 action channels
(or a stop), optionally combined with a channel of the other group (a translation with a turn),
and reaches them through a cosine ramp whose peak acceleration respects `max_accel` /
`max_angular_accel`, so velocity is continuous and acceleration bounded. Rates are drawn from the
action bins (one of the L bin levels, uniformly), so magnitudes are balanced too.

The next segment is the most under-represented channel (measured with the annotator's own
`encode_actions`) that is feasible: every position of the segment, and of stopping right after it,
stays at least `clearance_m` from all geometry, and pitch and roll stay within limits. Revisits —
loops and out-and-back walks, started from rest — are mixed in so memory can be learned; their
first and last frames are recorded. Roll drifts back to level through a correction kept below the
annotator's dead zone, so it never shows up as an action.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from annotate.actions import CHANNELS, PAIRS, STATIC, ActionSpec, BinSpec, encode_actions, translation_scale
from annotate.geometry import integrate
from annotate.ue import location_to_ue, pose_to_ue, ue_to_pose
from capture.levels import level_short_name
from capture.pose_faults import POSE_FAULTS, inject_pose_fault
from capture.records import CaptureJob
from capture.standin.scene import Scene, level_name, make_scene, parse_scene_spec

# channel index -> (motion column, sign): forward is +dz, up is -dy, yaw_left is -yaw, ...
AXIS = {pos: (col, 1.0) for col, pos, _ in PAIRS} | {neg: (col, -1.0) for col, _, neg in PAIRS}
TRANSLATION = tuple(c for c, (col, _) in AXIS.items() if col < 3)
ROTATION = tuple(c for c, (col, _) in AXIS.items() if col >= 3)


@dataclass(frozen=True)
class PlannedFault:
    """Damage put into one planned path on purpose, as a bad recording would have it (the demo build
    uses it to show the filter at work). `kind` and `magnitude` as in capture.pose_faults."""

    scene: str  # one of the planner's `scenes`
    path: int  # which of that scene's paths (0-based: trajectory plan0000, plan0001, ...)
    kind: str
    magnitude: float
    at_s: float  # when it starts, seconds from the path's start

    def __post_init__(self) -> None:
        if self.kind not in POSE_FAULTS:
            raise ValueError(f"planner.faults: unknown kind {self.kind!r}; kinds are {list(POSE_FAULTS)}")
        if self.path < 0 or self.at_s < 0 or not self.magnitude > 0:
            raise ValueError(f"planner.faults: path and at_s must be >= 0 and magnitude > 0, got {self}")


@dataclass(frozen=True)
class ProbeConfig:
    """The protocol-only planner (`planner.mode: probe`)."""

    size: int = 32  # probe views are size x size pixels, 90 degrees
    reprobe_m: float = 1.0  # a new probe cube once the camera is this far from every probe
    vertical_range_m: float = 1.5  # positions stay within this of the player start's height
    waypoint_m: float = 0.2  # pawn moveto waypoints along a motion, at most this far apart
    validate: bool = True  # walk each accepted motion with the pawn (moveto + read-back)
    use_bounds: bool = True  # object bounds as obstacles too (off: depth probes and the pawn only)

    def __post_init__(self) -> None:
        if self.size < 4 or not self.reprobe_m > 0 or not self.vertical_range_m > 0 or not self.waypoint_m > 0:
            raise ValueError("planner.probe: size >= 4, reprobe_m, vertical_range_m and waypoint_m > 0")


@dataclass(frozen=True)
class PlannerConfig:
    # where and how to plan: `scene` plans in stand-in scenes from their own geometry (scene specs such
    # as room-1); `probe` plans in any level through the UnrealCV protocol only (capture/probe_planner.py),
    # on the capture engines, before they render (level names as the engine reports them, or scene specs)
    mode: Literal["scene", "probe"] = "scene"
    scenes: tuple[str, ...] = ("room-1",)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    trajectories_per_scene: int = 2
    frames: int = 300
    fps: float = 30.0
    seed: int = 0
    mix: dict[str, float] = field(default_factory=dict)  # channel -> weight; missing channels weigh 1
    combo_probability: float = 0.35  # a segment pairs a translation with a rotation
    revisit_probability: float = 0.2  # per segment: a loop or an out-and-back walk
    segment_s: tuple[float, float] = (0.8, 2.2)
    max_accel: float = 2.0  # m/s^2
    max_angular_accel: float = 200.0  # deg/s^2
    max_pitch_deg: float = 40.0
    max_roll_deg: float = 25.0
    eye_height_m: float = 1.6
    clearance_m: float = 0.35
    # with `actions.translation.normalize: clip_mean` the translation bins are multiples of a clip's
    # mean moving speed; planned rates are drawn as bin multiples of this speed (m/s)
    reference_speed: float = 1.0
    faults: tuple[PlannedFault, ...] = ()

    def __post_init__(self) -> None:
        levels = {self.level(spec) for spec in self.scenes}
        for fault in self.faults:
            if self.level(fault.scene) not in levels or fault.path >= self.trajectories_per_scene:
                raise ValueError(f"planner.faults: {fault.scene} path {fault.path} is not planned "
                                 f"(scenes {list(self.scenes)}, {self.trajectories_per_scene} paths each)")
            if fault.at_s >= (self.frames - 1) / self.fps:
                raise ValueError(f"planner.faults: at_s {fault.at_s:g} is past the paths' "
                                 f"{(self.frames - 1) / self.fps:g} s")
        unknown = sorted(set(self.mix) - set(CHANNELS))
        if unknown:
            raise ValueError(f"planner.mix: unknown channel(s) {unknown}; channels are {list(CHANNELS)}")
        if any(w < 0 for w in self.mix.values()) or not sum(self.weights()) > 0:
            raise ValueError("planner.mix weights must be >= 0 and not all zero")
        if self.frames < 2 or self.fps <= 0 or self.trajectories_per_scene < 0:
            raise ValueError("planner.frames must be >= 2, planner.fps > 0, trajectories_per_scene >= 0")
        if not 0 < self.segment_s[0] <= self.segment_s[1]:
            raise ValueError(f"planner.segment_s must be 0 < min <= max, got {self.segment_s}")
        if self.max_accel <= 0 or self.max_angular_accel <= 0:
            raise ValueError("planner acceleration limits must be > 0")
        if not self.reference_speed > 0:
            raise ValueError(f"planner.reference_speed must be > 0, got {self.reference_speed}")

    def level(self, spec: str) -> str:
        """The level a `scenes` entry names: a stand-in scene spec's level name; in `probe` mode any
        other name is a map of the user's engine (`/Game/Maps/Street` or `Street`: `Street`, as
        `vget /level/name` reports it, and `vrun open` finds it)."""
        try:
            return level_name(spec)
        except ValueError:
            if self.mode == "probe":
                return level_short_name(spec)
            raise

    def weights(self) -> np.ndarray:
        return np.array([float(self.mix.get(c, 1.0)) for c in CHANNELS])


@dataclass(frozen=True, eq=False)
class PlannedPath:
    scene: str  # level name
    poses: np.ndarray  # (N, 4, 4) internal camera-to-world
    times: np.ndarray  # (N,)
    segments: tuple[dict[str, Any], ...]  # start, end (frames), channels, rates
    revisits: tuple[dict[str, Any], ...]  # kind, start, end (frames), distance_m
    injected: tuple[dict[str, Any], ...] = ()  # faults put in on purpose: kind, magnitude, frames

    def to_job(self, trajectory: str, source: str, seed: int) -> CaptureJob:
        locations, rotations = pose_to_ue(self.poses)
        meta = {"planner": {"seed": seed, "segments": list(self.segments), "revisits": list(self.revisits)}}
        if self.injected:
            meta["planner"]["injected"] = list(self.injected)
        return CaptureJob(self.scene, trajectory, locations, rotations, self.times, source, meta=meta)


class FreeSpace(Protocol):
    """What the planner asks of a level: whether a motion from `start` (camera-to-world) through
    `poses` (N, 4, 4) keeps `radius` metres from all geometry. `SceneSpace` answers from the
    stand-in's own geometry; capture/probe_planner.py from depth probes and `moveto`, through the
    protocol only."""

    def clear(self, start: np.ndarray, poses: np.ndarray, radius: float) -> bool: ...


@dataclass(frozen=True)
class SceneSpace:
    """Free space from a stand-in scene's own boxes (`Scene.is_free`)."""

    scene: Scene

    def clear(self, start: np.ndarray, poses: np.ndarray, radius: float) -> bool:
        return bool(self.scene.is_free(poses[:, :3, 3], radius).all())


class _Planner:
    def __init__(self, space: FreeSpace, level: str, start: np.ndarray, config: PlannerConfig, spec: ActionSpec,
                 rng: np.random.Generator, counts: np.ndarray):
        """`start`: the first camera-to-world pose (internal metres)."""
        self.space, self.level, self.config, self.spec, self.rng = space, level, config, spec, rng
        self.dt = 1.0 / config.fps
        self.target = config.weights() / config.weights().sum()
        self.counts = counts  # (13,) active transitions per channel so far, shared across paths
        self.pose = start.copy()
        self.rate = np.zeros(6)  # current rates: dx dy dz (m/s), yaw pitch roll (deg/s), camera axes
        self.first_pose = self.pose.copy()
        self.motion: list[np.ndarray] = []
        self.frames = 1
        self.segments: list[dict[str, Any]] = []
        self.revisits: list[dict[str, Any]] = []

    # -- kinematics ------------------------------------------------------------------------------
    def profile(self, start: np.ndarray, target: np.ndarray, duration: float) -> np.ndarray:
        """(n, 6) per-frame motion going from rates `start` to `target` by a cosine ramp, then
        holding `target` until `duration`. Cosine ramp over T: peak acceleration pi*delta/(2T)."""
        delta = np.abs(target - start)
        ramp = max(math.pi * delta[:3].max() / (2 * self.config.max_accel),
                   math.pi * delta[3:].max() / (2 * self.config.max_angular_accel), self.dt)
        n = max(int(round(max(duration, ramp) / self.dt)), 1)
        t = (np.arange(n) + 0.5) * self.dt
        s = np.where(t < ramp, (1 - np.cos(np.pi * np.minimum(t / ramp, 1.0))) / 2, 1.0)
        return (start + (target - start) * s[:, None]) * self.dt

    def feasible(self, motion: np.ndarray, end_rate: np.ndarray) -> bool:
        """The motion, and stopping right after it, stay clear of geometry and within attitude limits."""
        stop = self.profile(end_rate, np.zeros(6), 0.0)
        poses = integrate(self.pose, np.concatenate([motion, stop]))[1:]
        rot = pose_to_ue(poses)[1]
        if not ((np.abs(rot[:, 0]) <= self.config.max_pitch_deg).all()
                and (np.abs(rot[:, 2]) <= self.config.max_roll_deg).all()):
            return False
        return self.space.clear(self.pose, poses, self.config.clearance_m)

    def commit(self, motion: np.ndarray, end_rate: np.ndarray, channels: list[str]) -> tuple[int, int]:
        start = self.frames - 1
        self.pose = integrate(self.pose, motion)[-1]
        self.rate = end_rate
        self.motion.append(motion)
        self.frames += len(motion)
        self.counts += self.active(motion).sum(axis=0)
        self.segments.append({"start": start, "end": self.frames - 1, "channels": channels,
                              "rates": [round(float(v), 4) for v in end_rate]})
        return start, self.frames - 1

    def active(self, motion: np.ndarray) -> np.ndarray:
        """(n, 13) channels the annotator sets on these transitions of the path. With `clip_mean`
        translation the labels depend on the clip's mean speed: the path's so far stands for it."""
        scale = translation_scale(np.concatenate(self.motion), self.dt, self.spec) if self.spec.scaled else None
        return encode_actions(motion, self.dt, self.spec, scale) > 0

    # -- choosing segments -----------------------------------------------------------------------
    def rate_for(self, channel: int, bins: BinSpec) -> float:
        """A rate inside one of the channel group's bins, the level drawn uniformly (bins that are
        multiples of a clip's mean speed are drawn as multiples of `reference_speed`)."""
        level = int(self.rng.integers(bins.levels))
        lo = bins.dead_zone if level == 0 else bins.edges[level - 1]
        hi = bins.edges[level] if level < len(bins.edges) else bins.centers[-1] * 1.2
        centre = bins.centers[level]
        value = self.rng.uniform(max(lo, centre * 0.85) * 1.02, min(hi, centre * 1.15) * 0.98)
        unit = self.config.reference_speed if bins.normalize == "clip_mean" else 1.0
        return AXIS[channel][1] * value * unit

    def need(self, extra: float) -> np.ndarray:
        return self.target * (self.counts.sum() + extra) - self.counts + self.rng.uniform(0, 1e-3, len(CHANNELS))

    def next_segment(self) -> None:
        c = self.config
        duration = float(self.rng.uniform(*c.segment_s))
        need = self.need(duration * c.fps)
        leveling = self.leveling()
        for primary in np.argsort(-need)[:8]:
            primary = int(primary)
            channels = [primary]
            if primary != STATIC and self.rng.random() < c.combo_probability:
                other = ROTATION if primary in TRANSLATION else TRANSLATION
                channels.append(max(other, key=lambda ch: need[ch]))
            for _ in range(3):  # three draws of the rates before trying the next channel
                target = np.zeros(6)
                for ch in channels:
                    if ch != STATIC:
                        col = AXIS[ch][0]
                        target[col] = self.rate_for(ch, self.spec.group(col))
                if target[5] == 0.0:
                    target[5] = leveling
                motion = self.profile(self.rate, target, duration)
                if self.feasible(motion, target):
                    self.commit(motion, target, [CHANNELS[ch] for ch in channels])
                    return
        self.recover()

    def leveling(self) -> float:
        """A roll rate below the dead zone that brings roll back towards 0."""
        roll = float(pose_to_ue(self.pose)[1][2])
        return -math.copysign(min(abs(roll) * 0.5, 0.45 * self.spec.rotation.dead_zone), roll)

    def stop(self) -> None:
        if np.any(self.rate != 0):
            self.commit(self.profile(self.rate, np.zeros(6), 0.0), np.zeros(6), ["static"])

    def recover(self) -> None:
        """Nothing fits: stop, then turn in place (always clear of geometry) by 90-180 degrees."""
        self.stop()
        rate = self.rng.uniform(20.0, 40.0) * self.rng.choice([-1.0, 1.0])
        self.turn_in_place(float(self.rng.uniform(90, 180)), rate, check=False)

    def turn_in_place(self, degrees: float, rate: float, check: bool = True) -> bool:
        target = np.array([0, 0, 0, rate, 0, 0], dtype=float)
        motion = self.profile(np.zeros(6), target, abs(degrees / rate))
        motion = np.concatenate([motion, self.profile(target, np.zeros(6), 0.0)])
        if check and not self.feasible(motion, np.zeros(6)):
            return False
        self.commit(motion, np.zeros(6), ["yaw_right" if rate > 0 else "yaw_left"])
        return True

    def revisit(self) -> None:
        """From rest, a loop (a horizontal translation while turning through 360 degrees: a circle,
        or an orbit when strafing) or an out-and-back walk (out along a direction, then back along
        the opposite one, or forward, a half turn and forward again). The translation is the most
        needed of forward/backward/left/right, so revisits keep the mix balanced."""
        self.stop()
        for _ in range(4):  # a few draws of kind, direction and size before giving up
            if self._try_revisit():
                return

    def _try_revisit(self) -> bool:
        start_frame, start_pose = self.frames - 1, self.pose.copy()
        need = self.need(0.0)
        channel = max((CHANNELS.index(c) for c in ("forward", "backward", "left", "right")), key=lambda ch: need[ch])
        col, sign = AXIS[channel]
        speed = sign * float(self.rng.uniform(0.4, 1.4))
        rest = np.zeros(6)
        if self.rng.random() < 0.5:
            kind = "loop"
            yaw = float(self.rng.uniform(40, 80)) * self.rng.choice([-1.0, 1.0])
            target = rest.copy()
            target[col], target[3] = speed, yaw
            motion = np.concatenate([self.profile(rest, target, 360.0 / abs(yaw)), self.profile(target, rest, 0.0)])
            plan = [(motion, [CHANNELS[channel], "yaw_right" if yaw > 0 else "yaw_left"])]
        else:
            kind = "out_and_back"
            target = rest.copy()
            target[col] = speed
            out = np.concatenate([self.profile(rest, target, float(self.rng.uniform(1.5, 3.5))), self.profile(target, rest, 0.0)])
            if CHANNELS[channel] == "forward" and self.rng.random() < 0.5:
                rate = float(self.rng.uniform(30, 60)) * self.rng.choice([-1.0, 1.0])
                spin = rest.copy()
                spin[3] = rate
                turn = np.concatenate([self.profile(rest, spin, 180.0 / abs(rate)), self.profile(spin, rest, 0.0)])
                turn[:, 3] *= 180.0 / turn[:, 3].sum()  # exactly half a turn: the way back retraces the way out
                plan = [(out, ["forward"]), (turn, ["yaw_right" if rate > 0 else "yaw_left"]), (out, ["forward"])]
            else:
                back = out.copy()
                back[:, col] *= -1.0
                opposite = [c for c, (k, _) in AXIS.items() if k == col and c != channel][0]
                plan = [(out, [CHANNELS[channel]]), (back, [CHANNELS[opposite]])]
        if not self.feasible(np.concatenate([m for m, _ in plan]), rest):
            return False
        for motion, channels in plan:
            self.commit(motion, rest, channels)
        distance = float(np.linalg.norm(self.pose[:3, 3] - start_pose[:3, 3]))
        self.revisits.append({"kind": kind, "start": start_frame, "end": self.frames - 1, "distance_m": round(distance, 4)})
        return True

    def run(self) -> PlannedPath:
        c = self.config
        while self.frames < c.frames:
            if self.rng.random() < c.revisit_probability:
                self.revisit()
            else:
                self.next_segment()
        motion = np.concatenate(self.motion)
        self.counts -= self.active(motion[c.frames - 1:]).sum(axis=0)  # cut off
        poses = integrate(self.first_pose, motion[: c.frames - 1])
        segments = tuple(s for s in self.segments if s["start"] < c.frames - 1)
        revisits = tuple(r for r in self.revisits if r["end"] <= c.frames - 1)
        return PlannedPath(self.level, poses, np.arange(c.frames) / c.fps, segments, revisits)


def plan_path(scene: Scene, config: PlannerConfig, spec: ActionSpec, seed: int,
              counts: np.ndarray | None = None) -> PlannedPath:
    """One path of `config.frames` frames at `config.fps` in `scene`, deterministic in `seed` and
    `counts`: the (13,) channel counts of paths planned before it, which it updates, so that a set
    of paths is balanced as a whole (`plan_jobs`)."""
    counts = np.zeros(len(CHANNELS)) if counts is None else counts
    rng = np.random.default_rng(seed)
    start = scene.sample_free(rng, 1, radius=config.clearance_m, height=config.eye_height_m)[0]
    pose = ue_to_pose(location_to_ue(start), np.array([0.0, rng.uniform(-180, 180), 0.0]))
    return plan_in(SceneSpace(scene), scene.name, pose, config, spec, rng, counts)


def plan_in(space: FreeSpace, level: str, start: np.ndarray, config: PlannerConfig, spec: ActionSpec,
            rng: np.random.Generator, counts: np.ndarray) -> PlannedPath:
    """One path from the camera-to-world pose `start` in any free space (`FreeSpace`)."""
    return _Planner(space, level, start, config, spec, rng, counts).run()


def plan_jobs(config: PlannerConfig, spec: ActionSpec) -> list[CaptureJob]:
    """`trajectories_per_scene` paths in each of `scenes`, balanced together, as capture jobs."""
    counts = np.zeros(len(CHANNELS))
    jobs = []
    for scene_spec in config.scenes:
        scene = make_scene(scene_spec)
        for k in range(config.trajectories_per_scene):
            seed = int(np.random.SeedSequence([config.seed, parse_scene_spec(scene_spec)[1], k]).generate_state(1)[0])
            path = plan_path(scene, config, spec, seed, counts)
            faults = [f for f in config.faults if level_name(f.scene) == scene.name and f.path == k]
            jobs.append(damaged(path, faults, seed).to_job(f"plan{k:04d}", f"planner:{config.seed}:{scene.name}:{k}", seed))
    return jobs


def damaged(path: PlannedPath, faults: list[PlannedFault], seed: int) -> PlannedPath:
    """The path with `faults` put into it (capture.pose_faults), each recorded with the frames it
    affects under `injected`."""
    poses, times, injected = path.poses, path.times, []
    rng = np.random.default_rng(seed)
    for fault in faults:
        at = int(np.searchsorted(times, fault.at_s))
        poses, times, frames = inject_pose_fault(poses, times, fault.kind, fault.magnitude, at, rng)
        injected.append({"kind": fault.kind, "magnitude": fault.magnitude, "frames": frames})
    return dataclasses.replace(path, poses=poses, times=times, injected=tuple(injected)) if faults else path

