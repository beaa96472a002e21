"""Two-node local Ray clusters: one loses a node mid-build and the build still accounts for every
trajectory; one whose second node does not see OUT is refused before any capture."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest
import yaml
from ray.cluster_utils import Cluster

from common.config import from_dict
from pipelines.config import BuildConfig
from tests.test_build import ROOT, SMALL


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


def _can_unshare() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--mount", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare(1) for a node with its own mount namespace")
def test_a_node_that_does_not_see_out_stops_the_build_before_any_capture(tmp_path):
    """A two-node cluster whose second node has a private OUT (its own mount namespace, a tmpfs
    over the folder), as nodes without shared storage have: the build refuses at start, naming the
    node, and captures nothing."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}, "RAY_AUTH_MODE": "disabled"}
    out = tmp_path / "out"
    out.mkdir()
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    port = "6391"
    ray_cli = str(pathlib.Path(sys.executable).parent / "ray")
    try:
        subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"],
                       env=env, check=True, capture_output=True, timeout=120)
        subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f"mount -t tmpfs none {out} && exec {ray_cli} start --address=127.0.0.1:{port} --num-cpus=2"],
                       env=env, check=True, capture_output=True, timeout=120)
        done = subprocess.run([sys.executable, str(ROOT / "pipelines" / "build_dataset.py"), "--config", str(config),
                               "--out", str(out), "--ray-address", f"127.0.0.1:{port}", "--no-progress"],
                              env=env, capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "not shared storage on every node" in done.stderr and "does not see what this machine wrote" in done.stderr
    assert re.search(r"node \d+\.\d+\.\d+\.\d+ \(Ray node [0-9a-f]{12}\)", done.stderr), done.stderr[-2000:]
    assert str(out.resolve()) in done.stderr
    assert not list(out.glob("staging/*/*/meta.json")) and not (out / "manifest.parquet").exists()
    assert not (out / ".probe").exists()  # the probe cleans up after itself
