"""Capture through a fleet of launched game instances (`capture.fleet`): the stand-in laid out as a
packaged UE Linux build, launched by the capture actors themselves. Three instances capture every
trajectory once; an instance SIGKILLed mid-trajectory is relaunched on a fresh port and the
trajectory retried; a build that never comes up is retired with its log named; nothing is left."""

from __future__ import annotations

import time

import psutil
import pytest
import ray

from capture.config import FleetConfig, RetryConfig
from capture.scheduler import run_capture
from capture.standin.packaged import write_packaged_game
from tests.capture_helpers import kill_one_when, partial_frames, small_config, walk_job


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _game_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["cmdline"])
            if "capture.standin.packaged" in " ".join(p.info["cmdline"] or [])]


def test_three_instances_capture_every_trajectory_once_and_a_killed_one_is_relaunched(tmp_path):
    game = write_packaged_game(tmp_path / "LinuxNoEditor", "MyGame")
    config = small_config(fleet=FleetConfig(binary=str(game), map="room_0001", instances=3, startup_deadline_s=60),
                          retry=RetryConfig(max_attempts=3, max_engine_failures=2, actor_cpus=1.0))
    jobs = [walk_job(60, f"t{i}", scene=["room_0001", "street_0004"][i % 2], seed=i) for i in range(6)]
    staging = tmp_path / "staging"
    before = set(_game_pids())
    thread, killed = kill_one_when(lambda: partial_frames(staging) >= 20, _game_pids, before)
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
    assert set(_game_pids()) - before == set()  # no game outlives the capture


def test_a_build_that_hangs_at_start_is_retired_with_its_log(tmp_path):
    game = write_packaged_game(tmp_path / "LinuxNoEditor", "MyGame")
    config = small_config(fleet=FleetConfig(binary=str(game), instances=1, startup_deadline_s=3,
                                            args=("-RelicFault=hang_at_start",)))
    before = set(_game_pids())
    results = run_capture([walk_job(10, "a"), walk_job(10, "b", seed=1)], config, tmp_path / "staging",
                          progress=False)
    assert [r.status for r in results] == ["failed", "failed"]
    reasons = " ".join(r.reason + " ".join(r.attempts) for r in results)
    assert "did not serve UnrealCV" in reasons and ".engine_logs/engine-0." in reasons
    assert set(_game_pids()) - before == set()


def test_a_missing_binary_is_a_configuration_error(tmp_path):
    config = small_config(fleet=FleetConfig(binary=str(tmp_path / "Nope.sh")))
    with pytest.raises(ValueError, match="Nope.sh does not exist"):
        run_capture([walk_job(5)], config, tmp_path / "staging", progress=False)
