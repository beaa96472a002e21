"""A two-node local Ray cluster loses a node mid-build; the build still accounts for every trajectory."""

from __future__ import annotations

import threading
import time

import pandas as pd
from ray.cluster_utils import Cluster

from common.config import from_dict
from pipelines.config import BuildConfig
from tests.test_build import SMALL


def test_node_removed_mid_build(tmp_path):
    import ray

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    worker = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    removed: list[float] = []
    out = tmp_path / "out"

    def remover():
        deadline = time.time() + 300
        while time.time() < deadline:
            if list((out / "staging").glob("*/*/meta.json")) if (out / "staging").is_dir() else []:
                cluster.remove_node(worker)
                removed.append(time.time())
                return
            time.sleep(0.05)

    from pipelines.stages import build

    thread = threading.Thread(target=remover)
    thread.start()
    try:
        stats = build(from_dict(BuildConfig, SMALL), out, progress=False)
    finally:
        thread.join()
        ray.shutdown()
        cluster.shutdown()
    assert removed, "the node should have been removed during the build"
    table = pd.read_parquet(out / "trajectories.parquet")
    assert len(table) == stats["trajectories"]["in"] == 3
    done = table[table["stage"] == ""]
    assert (done["clips"] > 0).all()
    assert stats["trajectories"]["failed"] + len(done) == 3
    assert len(done) == 3  # work lost with the node is redone on the other one (actor retry, task retry)
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert set(manifest["trajectory"] + manifest["scene"]) == set(done["trajectory"] + done["scene"])
