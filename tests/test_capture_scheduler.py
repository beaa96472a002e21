"""Ray capture over stand-in subprocesses: retries on another actor, dead endpoints, reports."""

from __future__ import annotations

import socket
import time

import pytest
import ray

from annotate.readers import read_ue_csv
from capture.config import EndpointConfig, RetryConfig, StandinPoolConfig
from capture.scheduler import run_capture
from tests.capture_helpers import kill_one_when, partial_frames, small_config, standin_pids, walk_job

pytestmark = pytest.mark.serial  # it kills a stand-in engine it finds machine-wide (tests.capture_helpers.standin_pids)


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_engines_capture_every_trajectory_once_and_a_rerun_is_cached(tmp_path):
    config = small_config(standin=StandinPoolConfig(instances=2, scene="room-1"))
    jobs = [walk_job(15, f"t{i}", scene=["room_0001", "street_0004"][i % 2], seed=i) for i in range(6)]
    results = run_capture(jobs, config, tmp_path, progress=False)
    assert [r.trajectory for r in results] == [j.trajectory for j in jobs]
    assert all(r.status == "captured" and r.frames == 15 and not r.attempts for r in results), results
    assert len({r.endpoint for r in results}) == 2  # both engines worked
    again = run_capture(jobs, config, tmp_path, progress=False)
    assert [r.status for r in again] == ["cached"] * 6


def test_killed_engine_costs_a_retry_on_the_other_actor_not_the_run(tmp_path):
    config = small_config(standin=StandinPoolConfig(instances=2, scene="room-1"))
    jobs = [walk_job(400, "long", seed=1), walk_job(300, "short", seed=2)]  # long enough to overlap under load
    before = set(standin_pids())
    # both engines busy (each job part-written), so whichever is killed interrupts one job
    thread, killed = kill_one_when(lambda: partial_frames(tmp_path, "long") >= 20 and
                                   partial_frames(tmp_path, "short") >= 20, standin_pids, before)
    results = run_capture(jobs, config, tmp_path, progress=False)
    thread.join()
    assert killed
    assert [r.status for r in results] == ["captured", "captured"], results
    retried = [r for r in results if r.attempts]
    assert len(retried) == 1 and "EngineConnectionLost" in retried[0].attempts[0]
    assert not retried[0].attempts[0].startswith(retried[0].endpoint + ":")  # retried on the other engine
    for r, n in zip(results, (400, 300)):
        assert len(read_ue_csv(tmp_path / "room_0001" / r.trajectory / "poses.csv").poses) == n
        assert len(list((tmp_path / "room_0001" / r.trajectory / "frames").glob("*.png"))) == n
    assert sorted(p.name for p in (tmp_path / "room_0001").iterdir()) == ["long", "short"]
    assert not any((tmp_path / ".partial").iterdir())


def test_a_dead_endpoint_yields_failed_records_not_a_hang(tmp_path):
    config = small_config(endpoints=(EndpointConfig("127.0.0.1", _free_port()),),
                          retry=RetryConfig(max_attempts=3, max_engine_failures=2, actor_cpus=0.5))
    start = time.monotonic()
    results = run_capture([walk_job(10, "a"), walk_job(10, "b")], config, tmp_path, progress=False)
    assert time.monotonic() - start < 60
    assert [r.status for r in results] == ["failed", "failed"]
    for r in results:
        assert "refused" in r.reason or "no live engine" in r.reason, r.reason
        assert r.path is None
    assert not (tmp_path / "room_0001").exists()


def test_an_engine_that_keeps_dying_is_restarted_then_retired(tmp_path):
    """Lost on three different trajectories in a row: retired (a trajectory's own repeated losses
    count once, so the first two trajectories used up their attempts first)."""
    config = small_config(standin=StandinPoolConfig(instances=1, scene="room-1", settings=("faults.crash_after=30",)),
                          retry=RetryConfig(max_attempts=2, max_engine_failures=3, actor_cpus=0.5))
    jobs = [walk_job(40, name) for name in ("a", "b", "c", "after")]
    a, b, c, after = run_capture(jobs, config, tmp_path, progress=False)
    for doomed in (a, b):
        assert doomed.status == "failed" and len(doomed.attempts) == 2, doomed
        assert all("EngineConnectionLost" in x and f"of test:{doomed.trajectory})" in x for x in doomed.attempts)
    assert c.status == "failed" and len(c.attempts) == 1 and "no live engine" in c.reason
    assert after.status == "failed" and "no live engine" in after.reason
    assert not (tmp_path / "room_0001" / "a").exists()


def test_poses_that_kill_the_engine_fail_their_trajectory_not_the_engine(tmp_path):
    """A log far outside the level kills the engine on every attempt; it fails, naming the row, and
    the relaunched engine captures the rest."""
    config = small_config(standin=StandinPoolConfig(instances=1, scene="room-1",
                                                   settings=("faults.crash_outside_cm=100000",)),
                          retry=RetryConfig(max_attempts=3, max_engine_failures=2, actor_cpus=0.5))
    far = walk_job(10, "far")
    far = type(far)(far.scene, "far", far.locations + [5e6, 0, 0], far.rotations, far.times, "logs/far.csv")
    results = run_capture([walk_job(5, "before"), far, walk_job(5, "next", seed=1)], config, tmp_path, progress=False)
    before, far_result, after = results
    assert before.status == "captured" and after.status == "captured", results
    assert far_result.status == "failed" and len(far_result.attempts) == 3
    assert "at pose row 0 of logs/far.csv" in far_result.reason


def test_more_actors_than_the_cluster_can_place_is_a_clear_error(tmp_path):
    config = small_config(standin=StandinPoolConfig(instances=3, scene="room-1"),
                          retry=RetryConfig(max_attempts=3, max_engine_failures=2, actor_cpus=1.0))
    with pytest.raises(ValueError, match=r"3 capture actors x 1 CPU need 3 CPU but the Ray cluster has 2: .*retry.actor_cpus"):
        run_capture([walk_job(10, "a"), walk_job(10, "b"), walk_job(10, "c")], config, tmp_path, progress=False)
