"""A two-node local Ray cluster whose second node does not see OUT: the build moves data through
Ray, byte-identical to one machine, survives losing that node mid-build (its capture actor's work
retried, its staged trajectories captured again), and is refused when shared storage is asked for."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from tests.test_build import ROOT

pytestmark = pytest.mark.serial  # it starts a `ray start` cluster, which any ray.init() on this machine would join


def _can_unshare() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "--mount", "true"], capture_output=True).returncode == 0


SCENES = ["room-1", "street-4", "courtyard-3"]
#: two paths per scene, each with a 1 m teleport (the filter flags it: every trajectory has thumbnails)
SPREAD = {
    "capture": {
        "capture": {"camera": {"width": 64, "height": 48, "fov": 90.0}, "standin": {"instances_per_node": 1}},
        "sources": {"planner": {"scenes": SCENES, "trajectories_per_scene": 2, "frames": 60,
                                "faults": [{"scene": s, "path": k, "kind": "teleport", "magnitude": 1.0, "at_s": 1.0}
                                           for s in SCENES for k in (0, 1)]}},
    },
    "clips": {"window": {"frames": 17, "stride": 12}, "palindrome": {"share": 0.5}},
    "shards": {"max_samples": 6},
    "splits": {"val_fraction": 0.34},
    "seed": 5,
}


def _build(config: pathlib.Path, out: pathlib.Path, env: dict, *extra: str, wait: bool = True):
    cmd = [sys.executable, str(ROOT / "pipelines" / "build_dataset.py"), "--config", str(config), "--out", str(out),
           "--no-progress", *extra]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)


def _digests(out: pathlib.Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "shards").iterdir())}


def _namespace(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return ""


def _private_node_pids() -> list[int]:
    """The processes of the node started in its own mount namespace (its raylet, workers, engines)."""
    mine = _namespace(os.getpid())
    raylets = [int(p) for p in subprocess.run(["pgrep", "-f", "raylet/raylet"], capture_output=True,
                                               text=True).stdout.split()]
    theirs = {_namespace(p) for p in raylets} - {mine, ""}
    assert len(theirs) == 1, f"expected one raylet in a mount namespace of its own, got {theirs}"
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _namespace(int(p)) in theirs]


def _accounted(out: pathlib.Path, stats: dict) -> pd.DataFrame:
    table = pd.read_parquet(out / "trajectories.parquet")
    assert len(table) == stats["trajectories"]["in"] == 6
    assert (table["stage"] == "").all() and (table["clips"] > 0).all(), table[["trajectory", "stage", "reason"]]
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert set(manifest["scene"] + "/" + manifest["trajectory"]) == set(table["scene"] + "/" + table["trajectory"])
    return table


@pytest.mark.skipif(not _can_unshare(), reason="needs root and unshare(1) for a node with its own mount namespace")
def test_nodes_that_share_no_disk(tmp_path):
    """A two-node cluster whose second node has a private OUT (its own mount namespace, a tmpfs over
    the folder), as nodes without shared storage have. With capture actors on both nodes the build
    moves data through Ray and its shards are byte-identical to a one-node build; asked for shared
    storage, it refuses before any capture, naming the node; when the second node dies mid-build,
    what it had staged is captured again on the first, and a later re-run on the one node left
    captures again what the dead node held, counted as such; the shards stay the same bytes."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}, "RAY_AUTH_MODE": "disabled"}
    config = tmp_path / "spread.yaml"
    config.write_text(yaml.safe_dump(SPREAD))
    one = _build(config, tmp_path / "one", env, "--num-cpus", "4")  # before the cluster: a local Ray of its own
    assert one.returncode == 0, one.stderr[-3000:]
    reference = _digests(tmp_path / "one")
    assert json.loads((tmp_path / "one" / "stats.json").read_text())["storage"]["mode"] == "shared"

    private = tmp_path / "cluster"  # the second node sees a tmpfs here
    private.mkdir()
    port = "6391"
    ray_cli = str(pathlib.Path(sys.executable).parent / "ray")
    head_env = {**env, "RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "1000",
                "RAY_health_check_failure_threshold": "3"}  # a killed node is noticed in seconds
    address = ["--ray-address", f"127.0.0.1:{port}"]
    try:
        subprocess.run([ray_cli, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"],
                       env=head_env, check=True, capture_output=True, timeout=120)
        subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f"mount -t tmpfs none {private} && exec {ray_cli} start --address=127.0.0.1:{port} "
                        "--num-cpus=2"], env=env, check=True, capture_output=True, timeout=120)

        refused = _build(config, private / "shared", env, *address, "--set", "storage=shared")
        assert refused.returncode == 2, refused.stderr[-3000:]
        assert "not shared storage on every node" in refused.stderr
        assert "does not see what this machine wrote" in refused.stderr
        assert re.search(r"node \d+\.\d+\.\d+\.\d+ \(Ray node [0-9a-f]{12}\)", refused.stderr)
        assert str((private / "shared").resolve()) in refused.stderr
        assert not list((private / "shared").glob("staging/*/*/meta.json"))
        assert not (private / "shared" / "manifest.parquet").exists()
        assert not (private / "shared" / ".probe").exists()  # the probe cleans up after itself

        done = _build(config, private / "a", env, *address)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "storage: node_local" in done.stderr
        stats = json.loads((private / "a" / "stats.json").read_text())
        assert stats["storage"]["mode"] == "node_local" and stats["storage"]["nodes"] == 2
        table = _accounted(private / "a", stats)
        assert table["node"].nunique() == 2, "capture actors on both nodes should each have staged trajectories"
        assert stats["trajectories"]["recaptured"] == 0
        assert _digests(private / "a") == reference
        page = (private / "a" / "report" / "index.html").read_text()
        assert page.count("<div class='thumbs'>") == 6  # the other node's thumbnails came through Ray too
        assert len(list((private / "a" / "staging").glob("*/*/meta.json"))) < 6  # some are staged over there only

        pids = _private_node_pids()
        view = pathlib.Path(f"/proc/{pids[0]}/root") / str(private / "b").lstrip("/")  # node 2's own OUT
        running = _build(config, private / "b", env, *address, wait=False)
        deadline = time.time() + 300
        while not list(view.glob("staging/*/*/meta.json")) and time.time() < deadline and running.poll() is None:
            time.sleep(0.02)
        assert list(view.glob("staging/*/*/meta.json")), "the second node should have staged a trajectory"
        for pid in _private_node_pids():  # the node dies: raylet, workers, its engine
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        stdout, stderr = running.communicate(timeout=400)
        assert running.returncode == 0, stderr[-3000:]
        stats = json.loads((private / "b" / "stats.json").read_text())
        table = _accounted(private / "b", stats)
        assert stats["trajectories"]["recaptured"] >= 1
        lost = table[table["recaptured"] != ""]
        assert lost["recaptured"].str.contains("not staged on node").all() and (lost["capture"] == "captured").all()
        assert _digests(private / "b") == reference

        again = _build(config, private / "a", env, *address)  # the node that held some of it is gone
        assert again.returncode == 0, again.stderr[-3000:]
        stats = json.loads((private / "a" / "stats.json").read_text())
        table = _accounted(private / "a", stats)
        assert stats["storage"]["nodes"] == 1
        assert 1 <= stats["trajectories"]["recaptured"] == stats["trajectories"]["captured"] < 6
        assert table.loc[table["recaptured"] != "", "recaptured"].str.contains("not found on any live node").all()
        assert _digests(private / "a") == reference
    finally:
        subprocess.run([ray_cli, "stop", "--force"], env=env, capture_output=True, timeout=120)
