"""Ray-parallel capture: one actor per engine endpoint, a queue of trajectories, retries.

`run_capture(jobs, config, staging)` returns one `CaptureResult` per job, in job order:
- `captured`: staged under `<staging>/<scene>/<trajectory>/` (published atomically);
- `cached`: already staged with the same fingerprint (poses + capture settings), not recaptured;
- `failed`: every attempt failed (reasons listed), or no engine was left to try it on.

A failed attempt is retried on another actor where one is live (`retry.max_attempts` in all).
Each actor relaunches its game or stand-in (or reconnects to its UE instance) after the engine
dies, and retires after `retry.max_engine_failures` failures in a row; an actor process that dies
is retired too, and a watchdog of its own (common/reaper.py) ends the engine it launched. When no
actor is left, the remaining trajectories fail at once: nothing waits forever. Actors ask Ray for
`retry.actor_cpus`, the fleet's `gpus_per_instance` and `resources`; a cluster that cannot hold
them all is a configuration error at start, not a wait. With `fleet.instances_per_node`, every
live node that has the resources runs that many, pinned to it.
Ray must be initialised by the caller (`ray.init(...)`); the entry scripts do it.
"""

from __future__ import annotations

import logging
import pathlib
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tqdm import tqdm

from capture.config import CaptureConfig, EndpointConfig
from capture.nodes import Inventory, live_nodes
from capture.probe_planner import PlanRequest
from capture.records import Attempt, CaptureJob, CaptureResult
from capture.staging import clear_partials, staged_fingerprint
from capture.standin.scene import level_name
from capture.game import GameConfig, GameLaunchError
from capture.worker import CaptureWorker, GameEndpoint, StandinEndpoint, capture_settings
from common.raysession import raise_if_interrupted

log = logging.getLogger(__name__)


class _CaptureActor(CaptureWorker):
    def __init__(self, *args, **kwargs):
        # The unrealcv client hands every reply from its receive thread to the caller; Python's
        # default 5 ms GIL switch interval delays each handoff (bench/render.py measures it).
        sys.setswitchinterval(1e-4)
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s capture %(levelname)s %(message)s")
        from common.reaper import Reaper

        self.reaper = Reaper().start()  # the engines this actor launches die with it, however it dies
        super().__init__(*args, **kwargs)

    def ready(self) -> str:
        return self.describe()

    def stop_reaper(self) -> None:
        self.reaper.stop()

    def engine_pid(self) -> int | None:
        return self.game.process.pid if self.game is not None and self.game.process is not None else None


def endpoints(config: CaptureConfig, staging: pathlib.Path | None = None) -> list[EndpointConfig | StandinEndpoint | GameEndpoint]:
    if config.endpoints:
        return list(config.endpoints)
    fleet = config.fleet
    if fleet.binary is not None:
        cam = config.camera
        game = GameConfig(fleet.binary, fleet.map, fleet.args, cam.width, cam.height, cam.fov, fleet.startup_deadline_s,
                          fleet.log_dir, fleet.offscreen)
        game.check_binary()  # a missing or non-executable binary is a configuration error, before any actor
        logs = fleet.log_dir or str((staging or pathlib.Path(".")) / ".engine_logs")  # hidden: no scene folder
        return [GameEndpoint(game, logs) for _ in range(fleet.instances)]
    pool = config.standin
    return [StandinEndpoint(pool.scene, pool.settings, pool.startup_timeout_s, pool.log_dir)
            for _ in range(pool.instances)]


@dataclass
class _Pending:
    """One piece of work: a trajectory to capture, or (`plan`) a level's paths to discover first."""

    job: CaptureJob | None
    fingerprint: str = ""
    plan: PlanRequest | None = None
    tried: set[int] = field(default_factory=set)  # actor indices
    reasons: list[str] = field(default_factory=list)

    @property
    def level(self) -> str:
        return self.plan.level if self.plan is not None else self.job.scene  # type: ignore[union-attr]

    @property
    def keys(self) -> list[str]:
        """The results it stands for: the trajectory's, or every path of the plan."""
        if self.plan is not None:
            return [f"{self.plan.level}/{t}" for t in self.plan.trajectories]
        return [self.job.key]  # type: ignore[union-attr]


@dataclass
class _Actor:
    index: int
    handle: Any  # ray ActorHandle of _CaptureActor
    name: str
    level: str | None = None
    live: bool = True
    retired: str = ""  # why it is not live: the attempt that retired it


def run_capture(jobs: list[CaptureJob], config: CaptureConfig, staging: str | pathlib.Path,
                progress: bool = True, plans: Sequence[PlanRequest] = (), inventory: Inventory | None = None,
                on_planned: Callable[[CaptureJob], None] | None = None) -> list[CaptureResult]:
    """One result per job, then one per path of each plan (in order). A plan (planner mode `probe`)
    runs on an actor in its level first; its paths then join the queue like any job (each is passed
    to `on_planned`). `inventory` (capture/nodes.py): what every node has staged, when the nodes share
    no disk; a staged copy is then looked up there, not on this machine's disk."""
    staging = pathlib.Path(staging)
    keys = [job.key for job in jobs] + [f"{r.level}/{t}" for r in plans for t in r.trajectories]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"trajectory names must be unique per scene; repeated: {', '.join(duplicates[:5])}")
    staging.mkdir(parents=True, exist_ok=True)
    stale = clear_partials(staging) if inventory is None else 0  # the inventory cleared each node's
    if stale:
        log.warning("removed %d partial trajectories left by an interrupted run", stale)

    settings = capture_settings(config)
    results: dict[str, CaptureResult] = {}
    queue: deque[_Pending] = deque(_Pending(None, plan=r) for r in plans)

    def enqueue(job: CaptureJob, first: bool = False) -> bool:
        """Queue the job, or (True) take its staged copy when that has the same fingerprint."""
        fp = job.fingerprint(settings)
        if inventory is not None:
            holders = sorted(node for node, staged in inventory.get(job.key, {}).items() if staged == fp)
        else:
            holders = [""] if staged_fingerprint(staging, job.scene, job.trajectory) == fp else []
        if config.staging.resume and holders:
            results[job.key] = _result(job, "cached", "", (), "", 0.0, str(staging / job.scene / job.trajectory),
                                       frames=len(job), fingerprint=fp, node=holders[0])
            return True
        if first:
            queue.appendleft(_Pending(job, fp))
        else:
            queue.append(_Pending(job, fp))
        return False

    for job in jobs:
        enqueue(job)
    if not queue:
        return [results[k] for k in keys]

    try:
        specs = endpoints(config, staging)[: max(1, sum(len(p.keys) for p in queue))]
    except GameLaunchError as exc:
        raise ValueError(str(exc)) from exc
    fleet = any(isinstance(s, GameEndpoint) for s in specs)
    need = {"CPU": config.retry.actor_cpus}
    if fleet:
        need |= {"GPU": config.fleet.gpus_per_instance, **config.fleet.resources}
    need = {k: v for k, v in need.items() if v > 0}
    nodes: list[str | None] = [None] * len(specs)
    per_node = config.fleet.instances_per_node if fleet else config.standin.instances_per_node
    if not config.endpoints and per_node is not None:
        nodes = list[str | None](_nodes_for(need, per_node)[: max(1, sum(len(p.keys) for p in queue))])
        specs = [specs[0]] * len(nodes)
    else:
        _check_room(need, len(specs), ray.cluster_resources())
    remote = ray.remote(_CaptureActor)
    options = {"num_cpus": need.get("CPU", 0), "num_gpus": need.get("GPU", 0), "max_restarts": 0,
               "resources": {k: v for k, v in need.items() if k not in ("CPU", "GPU")}}
    actors = []
    for i, (spec, node) in enumerate(zip(specs, nodes)):
        placed = remote.options(**options) if node is None else remote.options(
            **options, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
        actors.append(_Actor(i, placed.remote(spec, config, str(staging), f"engine-{i}"), f"engine-{i}",
                             level_name(spec.scene) if isinstance(spec, StandinEndpoint) else None))
    in_flight: dict[ray.ObjectRef, tuple[_Actor, _Pending]] = {}
    bar = tqdm(total=len(keys), initial=len(results), unit="traj", desc="capture", disable=not progress)
    frames, planned_frames, start = 0, 0, time.perf_counter()
    finished = False
    try:
        while queue or in_flight:
            busy = {a.index for a, _ in in_flight.values()}
            for actor in actors:
                if queue and actor.live and actor.index not in busy:
                    pending = _take(queue, actor, [a for a in actors if a.live])
                    if pending is None:
                        continue
                    if pending.plan is not None:
                        ref = actor.handle.plan.remote(pending.plan)
                    else:
                        ref = actor.handle.capture.remote(pending.job, pending.fingerprint)
                    in_flight[ref] = (actor, pending)
                    actor.level = pending.level
            if not in_flight:  # queue non-empty, no live actor
                why = "; ".join(f"{a.name}: {a.retired}" for a in actors if a.retired) or "none started"
                for pending in queue:
                    _fail(results, pending, f"no live engine left to capture on ({why})")
                    bar.update(len(pending.keys))
                queue.clear()
                break
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            raise_if_interrupted()  # a Ctrl-C Ray's wait consumed
            for ref in done:
                actor, pending = in_flight.pop(ref)
                try:
                    attempt: Attempt = ray.get(ref)
                except RayActorError as exc:
                    attempt = Attempt(pending.keys[0], False, actor.name, f"capture actor died: {exc}",
                                      engine_lost=True, retired=True)
                except RayTaskError as exc:  # a bug on the actor's side: this work fails, the run goes on
                    attempt = Attempt(pending.keys[0], False, actor.name, f"capture actor error: {exc.cause!r}")
                if attempt.retired:
                    actor.live = False
                    actor.retired = attempt.reason
                if attempt.ok and pending.plan is not None:
                    planned_frames += attempt.frames
                    log.info("%s: planned %d paths in %s (%s)", attempt.endpoint, len(attempt.planned),
                             pending.plan.level, attempt.plan_stats)
                    for job in reversed(attempt.planned):  # first in line, for the actor already in the level
                        if on_planned is not None:
                            on_planned(job)
                        bar.update(enqueue(job, first=True))
                    continue
                if attempt.ok:
                    assert pending.job is not None
                    frames += attempt.frames
                    results[pending.job.key] = _result(pending.job, "captured", "", tuple(pending.reasons),
                                                       attempt.endpoint, attempt.seconds, attempt.path, attempt.frames,
                                                       pending.fingerprint, attempt.node)
                    bar.update(1)
                    bar.set_postfix(fps=f"{frames / (time.perf_counter() - start):.1f}", failed=_count_failed(results))
                    continue
                pending.reasons.append(f"{attempt.endpoint}: {attempt.reason}")
                pending.tried.add(actor.index)
                if len(pending.reasons) >= config.retry.max_attempts:
                    _fail(results, pending, f"{len(pending.reasons)} attempts failed; last: {attempt.reason}")
                    bar.update(len(pending.keys))
                else:
                    queue.appendleft(pending)
        finished = True
    finally:
        bar.close()
        for actor in actors:
            if finished:  # idle actors close their engines; after Ctrl-C or an error a busy one is not waited for:
                try:      # killed at once, its reaper ends the engine it launched
                    ray.get(actor.handle.close.remote(), timeout=30)
                    ray.get(actor.handle.stop_reaper.remote(), timeout=30)
                except Exception:  # noqa: BLE001 - a dead actor has nothing left to close
                    pass
            ray.kill(actor.handle)
    return [results[k] for k in keys]


def _check_room(need: dict[str, float], count: int, have: dict[str, float]) -> None:
    """ValueError unless the cluster has `count` x `need` of every resource (Ray would wait forever)."""
    for name, amount in need.items():
        if count * amount > have.get(name, 0.0) + 1e-9:
            raise ValueError(f"{count} capture actors x {amount:g} {name} need {count * amount:g} {name} but the Ray "
                             f"cluster has {have.get(name, 0.0):g}: lower the instances (capture.fleet.instances, "
                             "capture.standin.instances or the endpoints) or what each asks for "
                             "(retry.actor_cpus, fleet.gpus_per_instance, fleet.resources), or add nodes")


def _nodes_for(need: dict[str, float], per_node: int) -> list[str]:
    """The ids of every live node whose resources hold `per_node` x `need`, `per_node` times each."""
    chosen: list[str] = []
    short: list[str] = []
    for node in live_nodes():
        have = node.get("Resources", {})
        if all(per_node * amount <= have.get(name, 0.0) + 1e-9 for name, amount in need.items()):
            chosen.append(node["NodeID"])
        else:
            short.append(f"{node.get('NodeManagerAddress', '?')} ({', '.join(f'{k} {have.get(k, 0):g}' for k in need)})")
    if not chosen:
        raise ValueError(f"fleet.instances_per_node={per_node}: no live node has {per_node} x "
                         f"{', '.join(f'{k} {v:g}' for k, v in need.items())}; nodes: {'; '.join(short) or 'none'}")
    return chosen * per_node  # node by node, so that a short queue still spreads over the nodes


def _take(queue: deque[_Pending], actor: _Actor, live: list[_Actor]) -> _Pending | None:
    """The next job for `actor`: one not tried on it yet, unless every live actor has tried it;
    preferring the level the actor is in. Removes it from the queue; None if none fits."""
    def allowed(p: _Pending) -> bool:
        return actor.index not in p.tried or all(a.index in p.tried for a in live)

    candidates = [p for p in queue if allowed(p)]
    if not candidates:
        return None
    same = [p for p in candidates if p.level == actor.level]
    chosen = (same or candidates)[0]
    queue.remove(chosen)
    return chosen


def _count_failed(results: dict[str, CaptureResult]) -> int:
    return sum(r.status == "failed" for r in results.values())


def _result(job: CaptureJob, status, reason: str, attempts: tuple[str, ...], endpoint: str, seconds: float,
            path: str | None, frames: int = 0, fingerprint: str = "", node: str = "") -> CaptureResult:
    return CaptureResult(job.scene, job.trajectory, status, reason, frames, attempts, endpoint, seconds, path, job.source,
                         fingerprint, node)


def _fail(results: dict[str, CaptureResult], pending: _Pending, reason: str) -> None:
    """Every result `pending` stands for, failed; a plan's paths name the planning as the stage."""
    attempts = tuple(pending.reasons)
    if pending.plan is None:
        job = pending.job
        assert job is not None
        results[job.key] = _result(job, "failed", reason, attempts, "", 0.0, None)
        return
    plan = pending.plan
    for trajectory, source in zip(plan.trajectories, plan.sources):
        results[f"{plan.level}/{trajectory}"] = CaptureResult(plan.level, trajectory, "failed",
                                                              f"planning failed: {reason}", 0, attempts, "", 0.0,
                                                              None, source)
