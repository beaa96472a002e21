"""Engine instances placed by Ray resources on a two-node local cluster: `fleet.instances_per_node`
runs one game per node that has the `ue` resource (not on a node without it), and a node removed
mid-capture costs its trajectory a retry on the other node; no engine outlives it."""

from __future__ import annotations

import threading
import time

import pytest
import ray
from ray.cluster_utils import Cluster

from capture.config import FleetConfig, RetryConfig
from capture.scheduler import run_capture
from capture.standin.packaged import write_packaged_game
from tests.capture_helpers import in_flight, partial_frames, small_config, standin_pids, walk_job

pytestmark = pytest.mark.serial  # it starts a Ray cluster of its own and counts every stand-in engine on the machine


@pytest.fixture
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "resources": {"ue": 1}})
    cluster.add_node(num_cpus=2)  # no `ue`: never runs an engine
    worker = cluster.add_node(num_cpus=2, resources={"ue": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, worker
    ray.shutdown()
    cluster.shutdown()


def test_instances_per_node_by_resource_and_a_node_removed_mid_capture(cluster, tmp_path):
    cluster, worker = cluster
    game = write_packaged_game(tmp_path / "LinuxNoEditor", "MyGame")
    config = small_config(fleet=FleetConfig(binary=str(game), map="room_0001", instances_per_node=1,
                                            resources={"ue": 1}, startup_deadline_s=60),
                          retry=RetryConfig(max_attempts=3, max_engine_failures=2, actor_cpus=1.0))
    jobs = [walk_job(80, f"t{i}", seed=i) for i in range(4)]
    staging = tmp_path / "staging"
    before = set(standin_pids())
    removed: list[float] = []

    def remover():
        deadline = time.time() + 120
        while time.time() < deadline:
            # both engines have a trajectory open and one is well into it: whichever runs on the worker
            # node is in flight when it goes (under load the two need not both be 20 frames in at once)
            frames = [partial_frames(staging, f"t{i}") for i in range(4) if in_flight(staging, f"t{i}")]
            if len(frames) >= 2 and max(frames) >= 20:
                cluster.remove_node(worker)
                removed.append(time.time())
                return
            time.sleep(0.02)

    thread = threading.Thread(target=remover)
    thread.start()
    try:
        results = run_capture(jobs, config, staging, progress=False)
    finally:
        thread.join()
    assert removed
    assert [r.status for r in results] == ["captured"] * 4, [(r.trajectory, r.reason, r.attempts) for r in results]
    assert any("capture actor died" in a for r in results for a in r.attempts)  # the removed node's trajectory
    logs = sorted(p.name for p in (staging / ".engine_logs").glob("*.log"))
    assert {name.split(".")[0] for name in logs} == {"engine-0", "engine-1"}  # two nodes with `ue`, one each
    deadline = time.monotonic() + 15
    while set(standin_pids()) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert set(standin_pids()) - before == set()
