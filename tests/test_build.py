"""The build end to end on the stand-in: formats.md 2-4, reproducible bytes, resume after SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from annotate.actions import ActionSpec, encode_actions
from annotate.geometry import relative_motion
from common.config import from_dict
from datasets.samples import npy_load

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = {
    "capture": {
        "capture": {"camera": {"width": 96, "height": 64, "fov": 90.0}, "standin": {"instances": 2}},
        "sources": {"planner": {"scenes": ["room-1", "street-4", "courtyard-3"], "trajectories_per_scene": 1,
                                "frames": 80}},
    },
    "clips": {"window": {"frames": 17, "stride": 12}, "palindrome": {"share": 0.5}},
    "shards": {"max_samples": 6},
    "splits": {"val_fraction": 0.34},
    "seed": 3,
}


def build(out: pathlib.Path, config: pathlib.Path, wait: bool = True):
    cmd = [sys.executable, str(ROOT / "pipelines" / "build_dataset.py"), "--config", str(config), "--out", str(out),
           "--num-cpus", "2", "--no-progress"]
    if not wait:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def shard_digests(out: pathlib.Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((out / "shards").iterdir())}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("build")
    config = tmp / "small.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    out = tmp / "out"
    build(out, config)
    return out, config


def test_outputs_follow_the_formats(built):
    out, _ = built
    for name in ("config.yaml", "manifest.parquet", "stats.json", "report/filter.parquet", "report/index.html"):
        assert (out / name).is_file(), name
    manifest = pd.read_parquet(out / "manifest.parquet")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["trajectories"]["in"] == 3 and stats["trajectories"]["failed"] == 0
    assert stats["samples"] == {s: int((manifest["split"] == s).sum()) for s in ("train", "val")}
    assert set(manifest["split"]) == {"train", "val"}
    assert manifest.groupby("scene")["split"].nunique().max() == 1  # no scene in two splits
    assert manifest["palindrome"].any() and (~manifest["palindrome"]).any()
    listed = {}
    for shard in sorted((out / "shards").iterdir()):
        names = subprocess.run(["tar", "tf", str(shard)], capture_output=True, text=True, check=True).stdout.split()
        keys = {n.split(".", 1)[0] for n in names}
        listed.update({k: f"shards/{shard.name}" for k in keys})
    assert listed == dict(zip(manifest["key"], manifest["shard"]))


def test_samples_decode_with_webdataset_and_ray_and_match_the_manifest(built):
    import ray
    import webdataset as wds

    out, _ = built
    manifest = pd.read_parquet(out / "manifest.parquet").set_index("key")
    shards = sorted(str(p) for p in (out / "shards").iterdir())
    seen = 0
    for sample in wds.WebDataset(shards, shardshuffle=False).decode("rgb"):
        key, meta = sample["__key__"], sample["json"]
        row = manifest.loc[key]
        frames = sorted(k for k in sample if k.endswith(".jpg"))
        assert len(frames) == row["n_frames"] == len(meta["source_frames"])
        assert sample[frames[0]].shape == (row["height"], row["width"], 3)
        assert sample["actions.npy"].shape == (row["n_frames"] - 1, 13) and sample["actions.npy"].dtype == np.float32
        assert sample["poses.npy"].shape == (row["n_frames"], 4, 4) and sample["poses.npy"].dtype == np.float64
        assert list((sample["actions.npy"] > 0).sum(axis=0)) == list(row["action_counts"])
        seen += 1
    assert seen == len(manifest)
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        rows = ray.data.read_webdataset(shards).take_all()
    finally:
        ray.shutdown()
    assert sorted(r["__key__"] for r in rows) == sorted(manifest.index)


def test_actions_are_recomputed_from_each_samples_own_poses(built):
    import webdataset as wds

    out, _ = built
    shards = sorted(str(p) for p in (out / "shards").iterdir())
    palindromes = moving = 0
    for sample in wds.WebDataset(shards, shardshuffle=False):
        meta = json.loads(sample["json"])
        spec = from_dict(ActionSpec, meta["action_spec"])
        poses, actions = npy_load(sample["poses.npy"]), npy_load(sample["actions.npy"])
        motion = relative_motion(poses)
        np.testing.assert_allclose(npy_load(sample["motion.npy"]), motion, atol=1e-5)
        np.testing.assert_array_equal(actions, encode_actions(motion, np.full(len(motion), 1 / meta["fps"]), spec))
        if meta["palindrome"]:
            palindromes += 1
            turn, n = meta["turn_index"], len(poses)
            assert n == 2 * turn + 1 and meta["source_frames"] == meta["source_frames"][::-1]
            for i in range(n):
                assert sample[f"{i:04d}.jpg"] == sample[f"{n - 1 - i:04d}.jpg"]
            np.testing.assert_array_equal(poses, poses[::-1])
            if actions[:turn, :6].any():  # it moved: replaying the forward actions backwards is wrong
                assert not np.array_equal(actions[turn:], actions[:turn][::-1])
                moving += 1
    assert palindromes > 0 and moving > 0


def test_a_rebuild_reuses_every_cache_and_gives_identical_shards(built):
    """(A build from scratch into another folder giving the same bytes is the SIGKILL test below: its
    victim starts empty and is killed after its first staged trajectory.)"""
    out, config = built
    before = shard_digests(out)
    build(out, config)
    assert shard_digests(out) == before
    assert json.loads((out / "stats.json").read_text())["clip_caches_reused"] == 3


def test_sigkill_mid_build_then_rerun_gives_the_same_bytes(built, tmp_path):
    out, config = built
    reference = shard_digests(out)
    victim = tmp_path / "killed"
    proc = build(victim, config, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        staged = list((victim / "staging").glob("*/*/meta.json")) if (victim / "staging").is_dir() else []
        if len(staged) >= 1:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    build(victim, config)
    assert shard_digests(victim) == reference
    manifest = pd.read_parquet(victim / "manifest.parquet")
    assert manifest["key"].is_unique and len(manifest) == len(pd.read_parquet(out / "manifest.parquet"))


def test_the_trajectory_task_module_imports_no_torch():
    """A Ray worker running the filter+clips task imports pipelines.trajectory; torch (through
    webdataset) would add seconds to every worker's start."""
    probe = ("import sys, pipelines.trajectory; "
             "print(sorted(m for m in ('torch', 'webdataset', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=pathlib.Path(__file__).resolve().parents[1]).stdout
    assert out.strip() == "[]", out


def test_shard_members_are_plain_ustar_entries_with_a_fixed_mtime(built):
    """No per-member PAX header: a float mtime made tarfile write one (1 KiB) before every member."""
    import tarfile

    out, _ = built
    for shard in sorted((out / "shards").iterdir()):
        data = shard.read_bytes()
        assert b"PaxHeader" not in data, shard.name
        with tarfile.open(shard) as tar:
            members = tar.getmembers()
        assert members and all(m.mtime == 0 and not m.pax_headers and m.type == tarfile.REGTYPE for m in members)


def test_publish_copies_the_outputs_manifest_last(built, tmp_path):
    from pipelines.publish import PUBLISHED, publish

    out, _ = built
    copied = publish(out, f"file://{tmp_path}/remote")
    remote = tmp_path / "remote"
    assert copied[-1] == "manifest.parquet" and "stats.json" in copied
    shards = sorted(p.name for p in (out / "shards").iterdir())
    assert sorted(p.name for p in (remote / "shards").iterdir()) == shards
    for name in copied:
        assert (remote / name).read_bytes() == (out / name).read_bytes(), name
    assert not (remote / "staging").exists() and not (remote / ".work").exists()
    assert set(PUBLISHED) >= {p.name for p in remote.iterdir()}
