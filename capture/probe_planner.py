"""Planning inside a level the project did not build, through the UnrealCV protocol only.

The planner (capture/planner.py) asks its free space whether a motion is clear. Here that space is
learnt from the running engine with nothing a real UE level would not give:
- the level's objects and their axis-aligned bounds (`vget /objects`, `vget /object/N/bounds`):
  where the level's content is (positions stay inside the union of the bounds), and each object's
  box, grown by the clearance, as an obstacle (except boxes that hold the player start: a floor, a
  building the start is inside of);
- depth probes: a cube of six low-resolution depth views (`probe.size` px, 90 degrees) rendered
  at the camera's position when it has moved `probe.reprobe_m` from every earlier probe. Their
  pixels, back-projected, are the obstacles the motion must keep `clearance_m` from, and a
  position counts as free only when some probe saw past it (nothing unseen is assumed free);
- `moveto` on camera 0, which sweeps the pawn with collision: every motion the probes accept is
  then walked with the pawn, waypoint by waypoint in one batch, and the read-back locations must
  be where it was sent; a blocked waypoint rejects the motion.
That is the discovery pass: cheap probes and pawn moves, no full-size image. The paths it finds are
then rendered at full size as ordinary capture jobs (the second pass). The first path of a level
starts at the pawn's own location (the player start); later ones at a position an earlier path
walked, so every start is reachable from the player start.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import minimum_filter
from scipy.spatial import cKDTree

from annotate.actions import CHANNELS, ActionSpec
from annotate.ue import fov_to_intrinsics, location_from_ue, location_to_ue, ue_to_pose
from capture.client import EngineClient, EngineDataError, decode_depth, fixed, parse_floats
from capture.planner import PlannedPath, PlannerConfig, ProbeConfig, damaged, plan_in
from capture.records import CaptureJob

FAR_CM = 60000.0  # depth at or past this is sky: no obstacle
CUBE = ((0.0, 0.0), (0.0, 90.0), (0.0, 180.0), (0.0, 270.0), (89.999, 0.0), (-89.999, 0.0))  # pitch, yaw
MOVE_TOLERANCE_CM = 1.0  # a read-back this far from the waypoint: the pawn was blocked
NEAREST_PROBES = 8  # a point counts as seen when one of the probes nearest to the motion saw past it


@dataclass
class ProbeStats:
    probes: int = 0  # probe cubes
    renders: int = 0  # depth views rendered
    moves: int = 0  # moveto commands
    blocked: int = 0  # motions the pawn could not walk
    checks: int = 0  # motions asked about

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class LevelProbe:
    """The engine side: a spawned probe camera, the object bounds, the pawn (camera 0)."""

    def __init__(self, client: EngineClient, config: ProbeConfig, stats: ProbeStats):
        self.client, self.config, self.stats = client, config, stats
        name = client.text("vset /cameras/spawn").strip()
        names = client.text("vget /cameras").split()
        if name not in names or names.index(name) == 0:
            raise EngineDataError(f"{client.endpoint}: probe camera {name!r} not found in `vget /cameras`")
        self.cid = names.index(name)
        client.request([f"vset /camera/{self.cid}/size {config.size} {config.size}", f"vset /camera/{self.cid}/fov 90.0000"])
        self.K = fov_to_intrinsics(90.0, config.size, config.size)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Every object's axis-aligned bounds, internal metres: (B, 3) min and max corners."""
        names = self.client.text("vget /objects").split()
        if not names:
            return np.empty((0, 3)), np.empty((0, 3))
        replies = self.client.request([f"vget /object/{n}/bounds" for n in names])
        ue = np.stack([parse_floats(r, 6, f"{self.client.endpoint} bounds of {n}") for n, r in zip(names, replies)])
        a, b = location_from_ue(ue[:, :3]), location_from_ue(ue[:, 3:])
        return np.minimum(a, b), np.maximum(a, b)

    def pawn(self) -> tuple[np.ndarray, float]:
        """The pawn's location (UE cm) and yaw."""
        loc, rot = self.client.request(["vget /camera/0/location", "vget /camera/0/rotation"])
        return parse_floats(loc, 3, "pawn location"), float(parse_floats(rot, 3, "pawn rotation")[1])

    def cube(self, location_cm: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Six depth views at the location, in one batch: (camera-to-world pose, planar depth m) each."""
        cid, commands = self.cid, []
        for pitch, yaw in CUBE:
            commands += [f"vset /camera/{cid}/location {fixed(location_cm)}",
                         f"vset /camera/{cid}/rotation {fixed([pitch, yaw, 0.0])}", f"vget /camera/{cid}/depth npy"]
        replies = self.client.request(commands)
        self.stats.probes += 1
        self.stats.renders += len(CUBE)
        size = self.config.size
        return [(ue_to_pose(location_cm, np.array([pitch, yaw, 0.0])),
                 decode_depth(replies[3 * i + 2], size, size, f"{self.client.endpoint} probe depth"))
                for i, (pitch, yaw) in enumerate(CUBE)]

    def walk(self, start_cm: np.ndarray, waypoints_cm: np.ndarray) -> bool:
        """Put the pawn at `start_cm` and sweep it through the waypoints; True when it reached each."""
        commands = [f"vset /camera/0/location {fixed(start_cm)}"]
        for w in waypoints_cm:
            commands += [f"vset /camera/0/moveto {fixed(w)}", "vget /camera/0/location"]
        replies = self.client.request(commands)
        self.stats.moves += len(waypoints_cm)
        reached = np.stack([parse_floats(r, 3, "pawn location") for r in replies[2::2]])
        return bool((np.abs(reached - waypoints_cm).max(axis=1) <= MOVE_TOLERANCE_CM).all())


@dataclass
class _Probe:
    centre: np.ndarray  # internal m
    views: list[tuple[np.ndarray, np.ndarray]]  # (camera-to-world, depth eroded by one pixel)


@dataclass
class ProbeSpace:
    """Free space as the probes, the bounds and the pawn have shown it (the planner's FreeSpace)."""

    probe: LevelProbe
    config: ProbeConfig
    start_height: float  # internal m, the player start's
    box_min: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))
    box_max: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))
    extent: tuple[np.ndarray, np.ndarray] | None = None
    probes: list[_Probe] = field(default_factory=list)
    points: list[np.ndarray] = field(default_factory=list)
    tree: cKDTree | None = None

    def __post_init__(self) -> None:
        lo, hi = self.probe.bounds()
        if len(lo):
            self.extent = (lo.min(axis=0), hi.max(axis=0))
        self._bounds = (lo, hi)

    def ignore_boxes_holding(self, point: np.ndarray) -> None:
        """Object boxes used as obstacles (when `use_bounds`): all but those that hold `point`."""
        lo, hi = self._bounds
        if not self.config.use_bounds:
            return
        keep = ~((lo <= point) & (point <= hi)).all(axis=1)
        self.box_min, self.box_max = lo[keep], hi[keep]

    def add_probe(self, centre: np.ndarray) -> None:
        views = []
        for pose, depth in self.probe.cube(location_to_ue(centre)):
            far = depth * 100.0 >= FAR_CM
            size = depth.shape[0]
            u, v = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
            K = self.probe.K
            rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
            cam = rays[~far] * depth[~far, None]
            self.points.append(cam @ pose[:3, :3].T + pose[:3, 3])
            views.append((pose, minimum_filter(np.where(far, np.inf, depth), size=3, mode="nearest")))
        self.probes.append(_Probe(centre.copy(), views))
        self.tree = None

    def near_probe(self, point: np.ndarray) -> bool:
        return any(np.linalg.norm(p.centre - point) < self.config.reprobe_m for p in self.probes)

    def seen_free(self, points: np.ndarray, radius: float) -> np.ndarray:
        """(N,) whether some probe saw past each point (by more than `radius`)."""
        seen = np.zeros(len(points), dtype=bool)
        K = self.probe.K
        size = self.config.size
        centre = points.mean(axis=0)
        nearest = sorted(self.probes, key=lambda p: float(np.linalg.norm(p.centre - centre)))[:NEAREST_PROBES]
        for probe in nearest:
            for pose, depth in probe.views:
                todo = ~seen
                if not todo.any():
                    return seen
                cam = (points[todo] - pose[:3, 3]) @ pose[:3, :3]
                z = cam[:, 2]
                with np.errstate(divide="ignore", invalid="ignore"):
                    u = np.floor(K[0, 0] * cam[:, 0] / z + K[0, 2])
                    v = np.floor(K[1, 1] * cam[:, 1] / z + K[1, 2])
                inside = (z > 1e-6) & (u >= 0) & (u < size) & (v >= 0) & (v < size)
                ok = np.zeros(len(z), dtype=bool)
                ui, vi = u[inside].astype(int), v[inside].astype(int)
                ok[inside] = z[inside] + radius < depth[vi, ui]
                seen[np.flatnonzero(todo)[ok]] = True
        return seen

    def free(self, points: np.ndarray, radius: float) -> np.ndarray:
        """(N,) free by everything known: inside the level's extent and height band, clear of the
        object boxes, `radius` from every probed surface point, and seen past by a probe."""
        ok = np.abs(points[:, 2] - self.start_height) <= self.config.vertical_range_m
        if self.extent is not None:
            ok &= ((points >= self.extent[0] + radius) & (points <= self.extent[1] - radius)).all(axis=1)
        if len(self.box_min):
            gap = np.maximum(self.box_min[None] - points[:, None], points[:, None] - self.box_max[None])
            ok &= (np.linalg.norm(np.maximum(gap, 0.0), axis=2) > radius).all(axis=1)
        if self.points:
            if self.tree is None:
                self.tree = cKDTree(np.concatenate(self.points))
            ok &= self.tree.query(points, distance_upper_bound=radius)[0] > radius
        return ok & self.seen_free(points, radius)

    def clear(self, start: np.ndarray, poses: np.ndarray, radius: float) -> bool:
        """The planner's question; probes where the camera is when nothing near has, then walks it."""
        self.probe.stats.checks += 1
        here = start[:3, 3]
        if not self.near_probe(here):
            self.add_probe(here)
        if not self.free(poses[:, :3, 3], radius).all():
            return False
        if not self.config.validate:
            return True
        path = np.concatenate([here[None], poses[:, :3, 3]])
        steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
        along = np.concatenate([[0.0], np.cumsum(steps)])
        if along[-1] <= 1e-6:
            return True  # a turn in place: nowhere to walk
        n = max(1, int(math.ceil(along[-1] / self.config.waypoint_m)))
        picks = np.unique(np.searchsorted(along, np.linspace(0, along[-1], n + 1)[1:]).clip(0, len(path) - 1))
        if self.probe.walk(location_to_ue(here), location_to_ue(path[picks])):
            return True
        self.probe.stats.blocked += 1
        return False


@dataclass(frozen=True)
class PlanRequest:
    """Paths to discover in one level, through an engine: names, seeds, and the planner settings."""

    level: str
    trajectories: tuple[str, ...]
    seeds: tuple[int, ...]
    sources: tuple[str, ...]
    config: PlannerConfig
    spec: ActionSpec


@dataclass(frozen=True)
class LevelPlan:
    jobs: tuple[CaptureJob, ...]
    stats: dict[str, int]
    planned_frames: int
    seconds: float


def plan_requests(config: PlannerConfig, spec: ActionSpec) -> list[PlanRequest]:
    """One request per level of `config.scenes` (probe mode): `trajectories_per_scene` names
    plan0000, plan0001, ..., each with a seed from the planner's seed and the level's name."""
    requests = []
    for scene in config.scenes:
        level = config.level(scene)
        salt = int(hashlib.sha256(level.encode()).hexdigest()[:8], 16)
        n = config.trajectories_per_scene
        seeds = tuple(int(np.random.SeedSequence([config.seed, salt, k]).generate_state(1)[0]) for k in range(n))
        requests.append(PlanRequest(level, tuple(f"plan{k:04d}" for k in range(n)), seeds,
                                    tuple(f"planner:{config.seed}:{level}:{k}" for k in range(n)), config, spec))
    return requests


def plan_level(client: EngineClient, request: PlanRequest) -> LevelPlan:
    """Discover `request`'s paths in the level the client's engine has open (the caller opened it)."""
    begin = time.perf_counter()
    config, probe_config = request.config, request.config.probe
    stats = ProbeStats()
    probe = LevelProbe(client, probe_config, stats)
    pawn_cm, pawn_yaw = probe.pawn()
    start = location_from_ue(pawn_cm)
    space = ProbeSpace(probe, probe_config, float(start[2]))
    space.ignore_boxes_holding(start)
    counts = np.zeros(len(CHANNELS))
    visited: list[np.ndarray] = []
    jobs: list[CaptureJob] = []
    for name, seed, source in zip(request.trajectories, request.seeds, request.sources):
        rng = np.random.default_rng(seed)
        if visited:  # a position an earlier path walked (reachable from the player start), any heading
            pool = np.concatenate(visited)
            location, yaw = pool[int(rng.integers(len(pool)))], float(rng.uniform(-180, 180))
        else:
            location, yaw = start, pawn_yaw
        pose = ue_to_pose(location_to_ue(location), np.array([0.0, yaw, 0.0]))
        path: PlannedPath = plan_in(space, request.level, pose, config, request.spec, rng, counts)
        visited.append(path.poses[:, :3, 3])
        faults = [f for f in config.faults if config.level(f.scene) == request.level and f.path == len(jobs)]
        job = damaged(path, faults, seed).to_job(name, source, seed)
        job.meta["planner"]["mode"] = "probe"
        jobs.append(job)
    frames = sum(len(j) for j in jobs)
    return LevelPlan(tuple(jobs), stats.as_dict(), frames, time.perf_counter() - begin)
