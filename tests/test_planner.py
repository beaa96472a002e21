"""The path planner: free space, acceleration and attitude limits, the requested action mix
(measured with the annotator), revisits, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from annotate.actions import CHANNELS, ActionSpec, encode_actions
from annotate.geometry import relative_motion
from annotate.ue import pose_to_ue, ue_to_pose
from capture.planner import PlannerConfig, plan_jobs, plan_path
from capture.standin.scene import make_scene
from tests.capture_helpers import action_shares

SCENES = ("room-1", "corridor-2", "courtyard-3", "street-4")
SPEC = ActionSpec()


@pytest.fixture(scope="module")
def uniform_jobs():
    return plan_jobs(PlannerConfig(scenes=SCENES, trajectories_per_scene=3, frames=600), SPEC)



def test_paths_stay_in_free_space_within_limits(uniform_jobs):
    config = PlannerConfig()
    for job in uniform_jobs:
        poses = ue_to_pose(job.locations, job.rotations)
        scene = make_scene(job.scene)
        assert len(job) == 600
        assert scene.is_free(poses[:, :3, 3], config.clearance_m - 1e-6).all(), job.key
        pitch, roll = pose_to_ue(poses)[1][:, 0], pose_to_ue(poses)[1][:, 2]
        assert np.abs(pitch).max() <= config.max_pitch_deg + 1e-6 and np.abs(roll).max() <= config.max_roll_deg + 1e-6


def test_rates_change_no_faster_than_the_acceleration_limits(uniform_jobs):
    config = PlannerConfig()
    dt = 1.0 / config.fps
    for job in uniform_jobs:
        rates = relative_motion(ue_to_pose(job.locations, job.rotations)) / dt  # camera-frame m/s, deg/s
        accel = np.abs(np.diff(rates, axis=0)) / dt
        # UE poses carry 4 decimals (0.1 mm, 1e-4 deg): allow that rounding on top of the limit
        assert accel[:, :3].max() <= config.max_accel * 1.05 + 2e-4 / dt**2, job.key
        assert accel[:, 3:].max() <= config.max_angular_accel * 1.05 + 2e-4 / dt**2, job.key


def test_uniform_mix_is_reached_as_measured_by_the_annotator(uniform_jobs):
    shares = action_shares(uniform_jobs)
    target = 1.0 / len(CHANNELS)
    assert np.abs(shares - target).max() < 0.035, dict(zip(CHANNELS, shares.round(3)))
    combos = 0
    for job in uniform_jobs:
        a = encode_actions(relative_motion(ue_to_pose(job.locations, job.rotations)), 1 / 30, SPEC)
        combos += ((a[:, :6] > 0).any(axis=1) & (a[:, 6:12] > 0).any(axis=1)).sum()
    assert combos / (599 * len(uniform_jobs)) > 0.15  # translations combined with turns


def test_a_skewed_mix_is_followed():
    mix = {"forward": 4.0, "yaw_left": 2.0, "yaw_right": 2.0, "roll_left": 0.0, "roll_right": 0.0, "static": 2.0}
    config = PlannerConfig(scenes=SCENES, trajectories_per_scene=3, frames=600, mix=mix)
    shares = action_shares(plan_jobs(config, SPEC))
    target = config.weights() / config.weights().sum()
    got = dict(zip(CHANNELS, shares.round(3)))
    assert shares[CHANNELS.index("roll_left")] == 0 and shares[CHANNELS.index("roll_right")] == 0, got
    assert np.abs(shares - target).max() < 0.04, got
    assert shares[CHANNELS.index("forward")] > 3 * shares[CHANNELS.index("left")], got


def test_revisits_return_to_their_start(uniform_jobs):
    revisits = [(job, r) for job in uniform_jobs for r in job.meta["planner"]["revisits"]]
    assert len(revisits) >= 6
    assert {r["kind"] for _, r in revisits} == {"loop", "out_and_back"}
    for job, r in revisits:
        poses = ue_to_pose(job.locations, job.rotations)
        assert np.linalg.norm(poses[r["end"], :3, 3] - poses[r["start"], :3, 3]) < 0.05, r
        assert r["end"] - r["start"] > 30


def test_planning_is_deterministic():
    scene = make_scene("courtyard-3")
    a = plan_path(scene, PlannerConfig(frames=200), SPEC, seed=7)
    b = plan_path(scene, PlannerConfig(frames=200), SPEC, seed=7)
    c = plan_path(scene, PlannerConfig(frames=200), SPEC, seed=8)
    np.testing.assert_array_equal(a.poses, b.poses)
    assert not np.allclose(a.poses[-1], c.poses[-1])


def test_bad_planner_settings_are_named():
    with pytest.raises(ValueError, match="unknown channel.*'sideways'"):
        PlannerConfig(mix={"sideways": 1.0})
    with pytest.raises(ValueError, match="not all zero"):
        PlannerConfig(mix={c: 0.0 for c in CHANNELS})


def test_planned_faults_damage_only_the_chosen_path():
    """planner.faults: the chosen path carries the fault (recorded with its frames), the others are
    the same paths as without it, and the filter's pose checks flag the damaged frames."""
    from capture.planner import PlannedFault
    from filter.config import PoseChecks
    from filter.pose_checks import pose_flags, pose_scores

    base = PlannerConfig(scenes=("room-1", "street-4"), trajectories_per_scene=2, frames=150)
    fault = PlannedFault(scene="street-4", path=0, kind="teleport", magnitude=1.0, at_s=2.5)
    clean = {j.key: j for j in plan_jobs(base, SPEC)}
    damaged = {j.key: j for j in plan_jobs(PlannerConfig(**{**base.__dict__, "faults": (fault,)}), SPEC)}
    assert set(clean) == set(damaged)
    for key, job in damaged.items():
        if key != "street_0004/plan0000":
            np.testing.assert_array_equal(job.locations, clean[key].locations)
            assert "injected" not in job.meta["planner"]
    job = damaged["street_0004/plan0000"]
    (injected,) = job.meta["planner"]["injected"]
    assert injected["kind"] == "teleport" and injected["frames"] == [75, 90]
    jump = np.linalg.norm(np.diff(job.locations, axis=0), axis=1)
    assert jump[74] > 90 and jump[89] > 90  # cm: out and back
    poses = ue_to_pose(job.locations, job.rotations)
    flags = pose_flags(pose_scores(poses, job.times, PoseChecks()), PoseChecks())
    assert flags["teleport"][[75, 90]].all()


@pytest.mark.parametrize("fault,message", [
    ({"scene": "corridor-9", "path": 0}, "is not planned"),
    ({"path": 2}, "is not planned"),
    ({"at_s": 99.0}, "past the paths"),
    ({"kind": "wobble"}, "unknown kind"),
])
def test_planned_fault_config_errors(fault, message):
    from capture.planner import PlannedFault

    with pytest.raises(ValueError, match=message):
        spec = {"scene": "room-1", "path": 0, "kind": "jitter_rotation", "magnitude": 0.5, "at_s": 1.0, **fault}
        PlannerConfig(scenes=("room-1",), trajectories_per_scene=2, frames=90, faults=(PlannedFault(**spec),))
