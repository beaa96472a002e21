"""The protocol-only planner (planner mode `probe`): free space learnt through UnrealCV alone — depth
probes, object bounds, the pawn's `moveto` — over the real client. In every stand-in scene kind,
20 paths keep the clearance from the true geometry, reach the action mix as closely as the
scene planner does, and revisit; collision geometry the probes cannot see (hidden actors, like
UE's invisible blocking volumes) is found by walking the pawn; plans run on the capture actors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from annotate.actions import CHANNELS, ActionSpec
from annotate.ue import ue_to_pose
from capture.client import EngineClient, parse_floats
from capture.config import ClientConfig
from capture.planner import PlannerConfig, ProbeConfig, plan_jobs
from capture.probe_planner import plan_level, plan_requests
from capture.standin.launch import StandinProcess
from capture.standin.scene import make_scene
from tests.capture_helpers import action_shares

SPEC = ActionSpec()
KINDS = ("room-1", "corridor-2", "courtyard-3", "street-4")



def _plan(scene: str, config: PlannerConfig, prepare=None):
    with StandinProcess(["--scene", scene]) as engine:
        client = EngineClient(engine.host, engine.port, ClientConfig())
        client.connect()
        try:
            extra = prepare(client) if prepare else None
            return plan_level(client, plan_requests(config, SPEC)[0]), extra
        finally:
            client.close()


def test_twenty_paths_per_scene_kind_clear_balanced_and_revisiting():
    probe_jobs, scene_jobs = [], []
    for scene in KINDS:
        config = PlannerConfig(mode="probe", scenes=(scene,), trajectories_per_scene=20, frames=300,
                               probe=ProbeConfig(use_bounds=False))  # depth probes and the pawn only
        plan, _ = _plan(scene, config)
        # the true geometry: every box, oriented ones in their own axes (the scene planner's tighter
        # `free region` is its own choice, not geometry: the probe planner may use the whole space)
        truth = dataclasses.replace(make_scene(scene), free_min=np.full(3, -np.inf), free_max=np.full(3, np.inf))
        for job in plan.jobs:
            positions = ue_to_pose(job.locations, job.rotations)[:, :3, 3]
            assert truth.is_free(positions, config.clearance_m - 1e-3).all(), job.key  # no collision, clearance kept
            assert job.meta["planner"]["mode"] == "probe"
        assert sum(len(j.meta["planner"]["revisits"]) for j in plan.jobs) >= 3, scene
        assert plan.stats["renders"] / plan.planned_frames < 0.05, plan.stats  # cheap discovery
        probe_jobs += plan.jobs
        scene_jobs += plan_jobs(PlannerConfig(scenes=(scene,), trajectories_per_scene=20, frames=300), SPEC)
    target = np.full(len(CHANNELS), 1.0 / len(CHANNELS))
    probe_dev, scene_dev = (float(np.abs(action_shares(j) - target).max()) for j in (probe_jobs, scene_jobs))
    assert probe_dev <= scene_dev + 0.01, (probe_dev, scene_dev)


@pytest.mark.parametrize("validate", [True, False])
def test_collision_the_probes_cannot_see_is_found_by_the_pawn(validate):
    """Eight hidden 0.8 x 0.8 x 3 m blockers around the player start: not drawn, still colliding.
    Walking the pawn keeps every path clear of them; without it the paths run through them (which
    shows that the check above can fail)."""
    def blockers(client: EngineClient) -> tuple[np.ndarray, np.ndarray]:
        start = parse_floats(client.text("vget /camera/0/location"), 3, "pawn")
        corners = []
        for k, angle in enumerate(np.radians(np.arange(0, 360, 45))):
            c = start + 200 * np.array([np.cos(angle), np.sin(angle), 0.0])
            client.request([f"vset /objects/spawn CubeActor Blocker{k}", f"vset /object/Blocker{k}/location "
                            f"{c[0]:.3f} {c[1]:.3f} {c[2]:.3f}", f"vset /object/Blocker{k}/scale 0.8 0.8 3.0",
                            f"vset /object/Blocker{k}/hide"])
            corners.append(parse_floats(client.text(f"vget /object/Blocker{k}/bounds"), 6, "bounds"))
        ue = np.array(corners) / 100.0 * np.array([1, -1, 1, 1, -1, 1])  # internal metres
        return np.minimum(ue[:, :3], ue[:, 3:]), np.maximum(ue[:, :3], ue[:, 3:])

    config = PlannerConfig(mode="probe", scenes=("courtyard-3",), trajectories_per_scene=10, frames=300,
                           probe=ProbeConfig(use_bounds=False, validate=validate))
    plan, (lo, hi) = _plan("courtyard-3", config, blockers)
    positions = np.concatenate([ue_to_pose(j.locations, j.rotations)[:, :3, 3] for j in plan.jobs])
    gap = np.maximum(lo[None] - positions[:, None], positions[:, None] - hi[None])
    distance = np.linalg.norm(np.maximum(gap, 0.0), axis=2).min(axis=1)
    too_close = int((distance < config.clearance_m - 1e-3).sum())
    if validate:
        assert too_close == 0 and plan.stats["blocked"] > 0, plan.stats
    else:
        assert too_close > 0


def test_plans_run_on_the_capture_engines_and_a_missing_level_fails_its_paths(tmp_path):
    import ray

    from capture.run import CaptureRunConfig, SourcesConfig, run
    from tests.capture_helpers import small_config

    planner = PlannerConfig(mode="probe", scenes=("room-1", "street-4", "NoSuchMap"), trajectories_per_scene=2,
                            frames=60)
    capture = dataclasses.replace(small_config(), standin=dataclasses.replace(small_config().standin, instances=2))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcome = run(CaptureRunConfig(capture=capture, sources=SourcesConfig(planner=planner)), tmp_path,
                      progress=False)
    finally:
        ray.shutdown()
    by = {(r.scene, r.trajectory): r for r in outcome.results}
    assert len(by) == 6
    for level in ("room_0001", "street_0004"):
        for name in ("plan0000", "plan0001"):
            result = by[(level, name)]
            assert result.status == "captured" and result.frames == 60, result
    for name in ("plan0000", "plan0001"):
        result = by[("NoSuchMap", name)]
        assert result.status == "failed" and "planning failed" in result.reason and "NoSuchMap" in result.reason
