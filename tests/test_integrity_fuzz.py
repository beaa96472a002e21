"""The integrity invariant under random damage (hypothesis): ingest folders whose names, pose rows,
bytes and meta.json values are damaged at random, built beside two clean ones. Whatever the damage:
the build exits 0, or 2 for a configuration error (a name clash), never 1; every input folder is one
row of trajectories.parquet; no sample key repeats; and the clean inputs' samples are byte-identical
to those of a build that had only the clean inputs."""

from __future__ import annotations

import json
import pathlib
import shutil

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.integrity_helpers import CLEAN, build, copy_sequence, shard_members, trajectories

# names users really give (spaces, umlauts, CJK, a dash, the clean inputs' own), then any text
TRICKY_NAMES = ["my scene", "my_scene", "szene_ü", "szene_ö", "日本語", "中文", "a-b", "b-c", "t1", "hall", "walk1", "CON"]
NAMES = st.one_of(st.sampled_from(TRICKY_NAMES), st.text(
    st.characters(codec="utf-8", exclude_characters="/\x00", exclude_categories=("Cs",)), min_size=1, max_size=8)
    .filter(lambda s: not s.startswith(".") and s.strip() not in ("", "..") and len(s.encode()) < 100))
TRICKY_VALUES = [[30], "abc", "30", -30, 0, 1000, True, False, None, 1e308, {"a": 1}, ""]
ANY_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=2), max_leaves=3)
JSON = st.one_of(st.sampled_from(TRICKY_VALUES), ANY_JSON)
DAMAGE = st.one_of(
    st.tuples(st.just("delete_row"), st.integers(1, 39)),
    st.tuples(st.just("repeat_row"), st.integers(1, 39)),
    st.tuples(st.just("field"), st.integers(1, 39), st.integers(0, 13),
              st.sampled_from(["nan", "", "inf", "1e308", "-1e308", "abc", "0x1F", "1,2", '"', "\t"])),
    st.tuples(st.just("poses_bytes"), st.integers(0, 4000), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("truncate_poses"), st.integers(0, 3000)),
    st.tuples(st.just("frame_bytes"), st.integers(0, 39), st.integers(0, 3000), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("remove_frame"), st.integers(0, 39)),
    st.tuples(st.just("meta"), st.sampled_from(["fps", "fov", "caption", "captions"]), JSON),
    st.tuples(st.just("meta_text"), st.binary(max_size=20)),
)
DAMAGED_INPUT = st.tuples(NAMES, NAMES, st.sampled_from([0, 1]), st.lists(DAMAGE, min_size=1, max_size=3))


def damage(folder: pathlib.Path, what: tuple) -> None:
    poses, frames = folder / "poses.csv", sorted((folder / "frames").iterdir())
    kind = what[0]
    if kind in ("delete_row", "repeat_row", "field"):
        lines = poses.read_bytes().split(b"\n")
        row = min(what[1], len(lines) - 1)
        if kind == "delete_row":
            del lines[row]
        elif kind == "repeat_row":
            lines.insert(row, lines[row])
        else:
            fields = lines[row].split(b",")
            fields[min(what[2], len(fields) - 1)] = what[3].encode()
            lines[row] = b",".join(fields)
        poses.write_bytes(b"\n".join(lines))
    elif kind == "poses_bytes":
        data = bytearray(poses.read_bytes())
        at = min(what[1], len(data))
        data[at:at + len(what[2])] = what[2]
        poses.write_bytes(bytes(data))
    elif kind == "truncate_poses":
        poses.write_bytes(poses.read_bytes()[:what[1]])
    elif kind == "frame_bytes" and frames:
        frame = frames[min(what[1], len(frames) - 1)]
        data = bytearray(frame.read_bytes())
        at = min(what[2], len(data))
        data[at:at + len(what[3])] = what[3]
        frame.write_bytes(bytes(data))
    elif kind == "remove_frame" and frames:
        frames[min(what[1], len(frames) - 1)].unlink()
    elif kind == "meta":
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except ValueError:  # an earlier damage broke it: start again from a valid object
            meta = {}
        meta = meta if isinstance(meta, dict) else {}
        meta[what[1]] = what[2]
        (folder / "meta.json").write_text(json.dumps(meta))
    elif kind == "meta_text":
        (folder / "meta.json").write_bytes(what[1])


@pytest.fixture(scope="module")
def clean(demo_build, tmp_path_factory):
    """Two clean sequences under scenes `hall` and `yard`, and the samples of a build of them alone."""
    out, done = demo_build
    assert done.returncode == 0, done.stderr[-2000:]
    base = tmp_path_factory.mktemp("fuzz_clean")
    for (scene, trajectory), name in zip(CLEAN, ("hall/walk1", "yard/walk2")):
        copy_sequence(out / "staging" / scene / trajectory, base / "clean" / name)
    ref = base / "ref"
    ref.mkdir()
    done = build(ref, "--ingest", str(base / "clean"), "--set", "splits.val_fraction=0")
    assert done.returncode == 0, done.stderr[-2000:]
    samples = shard_members(ref)
    assert len(samples) >= 2
    return base, Reference(samples)


class Reference(dict):
    """The clean build's samples (a dict), shown briefly in hypothesis's failure report."""

    def __repr__(self) -> str:
        return f"<{len(self)} reference samples>"


@settings(max_examples=3, deadline=None, derandomize=True, phases=(Phase.explicit, Phase.generate),  # a build a case: no shrinking
         
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
@given(inputs=st.lists(DAMAGED_INPUT, min_size=2, max_size=4))
def test_damaged_inputs_never_lose_duplicate_or_change_the_clean_ones(clean, tmp_path_factory, inputs):
    base, reference = clean
    work = tmp_path_factory.mktemp("fuzz")
    root = work / "damaged"
    made = 0
    for scene, trajectory, source, damages in inputs:
        folder = root / scene / trajectory
        if folder.exists():
            continue
        shutil.copytree(base / "clean" / ("hall/walk1", "yard/walk2")[source], folder)
        for what in damages:
            damage(folder, what)
        made += 1
    out = work / "out"
    out.mkdir()
    done = build(out, "--ingest", str(base / "clean"), "--ingest", str(root), "--set", "splits.val_fraction=0")
    assert done.returncode in (0, 2), done.stderr[-3000:]
    if done.returncode == 2:  # a configuration error: two inputs would share an id; nothing was captured
        assert "input name clash" in done.stderr and not (out / "staging").exists(), done.stderr[-2000:]
        return
    table = trajectories(out)
    assert len(table) == made + 2 and not table["source"].duplicated().any()
    assert not table.duplicated(["scene", "trajectory"]).any()
    samples = shard_members(out)  # raises on a key in two shards
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert not manifest["key"].duplicated().any() and set(manifest["key"]) == set(samples)
    pairs = list(zip(manifest["scene"], manifest["trajectory"]))
    clean_keys = {k for k, pair in zip(manifest["key"], pairs) if pair in {("hall", "walk1"), ("yard", "walk2")}}
    assert clean_keys == set(reference)
    for key in clean_keys:
        assert samples[key] == reference[key], key
