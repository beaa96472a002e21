"""Capture through a fleet of launched game instances (`capture.fleet`): the stand-in laid out as a
packaged UE Linux build, launched by the capture actors themselves. Three instances capture every
trajectory once; an instance SIGKILLed mid-trajectory is relaunched on a fresh port and the
trajectory retried; a build that never comes up is retired with its log named; nothing is left."""

from __future__ import annotations

import time

import pytest
import ray

from capture.config import FleetConfig, RetryConfig
from capture.scheduler import run_capture
from capture.standin.packaged import write_packaged_game
from tests.capture_helpers import kill_one_when, partial_frames, small_config, standin_pids, walk_job

pytestmark = pytest.mark.serial  # it counts and kills stand-in engines machine-wide (tests.capture_helpers.standin_pids)


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_three_instances_capture_every_trajectory_once_and_a_killed_one_is_relaunched(tmp_path):
    game = write_packaged_game(tmp_path / "LinuxNoEditor", "MyGame")
    config = small_config(fleet=FleetConfig(binary=str(game), map="room_0001", instances=3, startup_deadline_s=60),
                          retry=RetryConfig(max_attempts=3, max_engine_failures=2, actor_cpus=1.0))
    jobs = [walk_job(60, f"t{i}", scene=["room_0001", "street_0004"][i % 2], seed=i) for i in range(6)]
    staging = tmp_path / "staging"
    before = set(standin_pids())
    thread, killed = kill_one_when(lambda: partial_frames(staging) >= 20, standin_pids, before)
    results = run_capture(jobs, config, staging, progress=False)
    thread.join()
    assert killed
    assert [r.status for r in results] == ["captured"] * 6, [(r.trajectory, r.reason, r.attempts) for r in results]
    assert len({r.trajectory for r in results}) == 6 and all(r.frames == 60 for r in results)
    assert any("EngineConnectionLost" in a for r in results for a in r.attempts)
    assert len({r.endpoint.split(" ")[0] for r in results}) >= 2
    logs = sorted((staging / ".engine_logs").glob("*.log"))
    assert len(logs) >= 4  # three launches and at least one relaunch, a log each
    time.sleep(0.5)
    assert set(standin_pids()) - before == set()  # no game outlives the capture


def test_a_build_that_hangs_at_start_is_retired_with_its_log(tmp_path):
    game = write_packaged_game(tmp_path / "LinuxNoEditor", "MyGame")
    config = small_config(fleet=FleetConfig(binary=str(game), instances=1, startup_deadline_s=3,
                                            args=("-RelicFault=hang_at_start",)))
    before = set(standin_pids())
    results = run_capture([walk_job(10, "a"), walk_job(10, "b", seed=1)], config, tmp_path / "staging",
                          progress=False)
    assert [r.status for r in results] == ["failed", "failed"]
    reasons = " ".join(r.reason + " ".join(r.attempts) for r in results)
    assert "did not serve UnrealCV" in reasons and ".engine_logs/engine-0." in reasons
    assert set(standin_pids()) - before == set()


def test_a_missing_binary_is_a_configuration_error(tmp_path):
    config = small_config(fleet=FleetConfig(binary=str(tmp_path / "Nope.sh")))
    with pytest.raises(ValueError, match="Nope.sh does not exist"):
        run_capture([walk_job(5)], config, tmp_path / "staging", progress=False)


def test_a_build_that_crashes_at_start_is_retried_then_retired_with_its_log(tmp_path):
    game = write_packaged_game(tmp_path / "LinuxNoEditor", "MyGame")
    config = small_config(fleet=FleetConfig(binary=str(game), instances=1, startup_deadline_s=30,
                                            args=("-RelicFault=crash_at_start",)),
                          retry=RetryConfig(max_attempts=3, max_engine_failures=2, actor_cpus=1.0))
    results = run_capture([walk_job(10, "a"), walk_job(10, "b", seed=1)], config, tmp_path / "staging",
                          progress=False)
    assert [r.status for r in results] == ["failed", "failed"]
    first = results[0].attempts
    assert len(first) == 2 and all("exited with code 1 before serving UnrealCV" in a for a in first), first
    assert "no live engine left to capture on (engine-0: " in results[1].reason
    assert "exited with code 1" in results[1].reason and ".engine_logs/engine-0.2.log" in results[1].reason
    logs = sorted((tmp_path / "staging" / ".engine_logs").glob("engine-0.*.log"))
    assert [p.name for p in logs] == ["engine-0.1.log", "engine-0.2.log"]  # a launch each, then no more
    assert "injected crash at start" in logs[0].read_text()
    assert str(logs[-1]) in " ".join(first)


def test_more_gpus_than_the_cluster_has_is_a_configuration_error(tmp_path):
    game = write_packaged_game(tmp_path / "LinuxNoEditor", "MyGame")
    config = small_config(fleet=FleetConfig(binary=str(game), instances=2, gpus_per_instance=1))
    with pytest.raises(ValueError, match=r"2 capture actors x 1 GPU need 2 GPU but the Ray cluster has 0"):
        run_capture([walk_job(5), walk_job(5, "b")], config, tmp_path / "staging", progress=False)
    config = small_config(fleet=FleetConfig(binary=str(game), instances_per_node=1, resources={"ue_license": 1}))
    with pytest.raises(ValueError, match=r"no live node has 1 x CPU 0.5, ue_license 1"):
        run_capture([walk_job(5)], config, tmp_path / "staging", progress=False)


def test_an_actor_that_dies_takes_its_engine_with_it(tmp_path):
    from capture.scheduler import _CaptureActor
    from capture.worker import StandinEndpoint

    actor = ray.remote(_CaptureActor).options(num_cpus=1).remote(StandinEndpoint("room-1"), small_config(),
                                                                 str(tmp_path), "engine-0")
    attempt = ray.get(actor.capture.remote(walk_job(3), "fp"))
    assert attempt.ok, attempt.reason
    pid = ray.get(actor.engine_pid.remote())
    assert pid in standin_pids()
    ray.kill(actor)  # SIGKILL: no close(), no finally
    deadline = time.monotonic() + 15
    while pid in standin_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert pid not in standin_pids()
