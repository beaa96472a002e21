"""Nothing lost, nothing duplicated, nothing executed: one build over inputs a careless or hostile
user gives (name clashes, damaged files and values, links, stray files), and the configuration
errors that must stop a build before any work. Each test is one of the failures the data-integrity
issue lists, numbered as there."""

from __future__ import annotations

import html
import json
import os
import pathlib
import pickle
import re

import numpy as np
import pandas as pd
import pytest

from annotate.readers import write_ue_csv
from tests.capture_helpers import walk
from tests.integrity_helpers import CLEAN, build, copy_sequence, png_claiming, shard_members, trajectories


@pytest.fixture(scope="module")
def footage(demo_build, tmp_path_factory) -> pathlib.Path:
    """Two clean 40-frame ingest sequences (from the demo's staged captures) to copy from."""
    out, done = demo_build
    assert done.returncode == 0, done.stderr[-2000:]
    root = tmp_path_factory.mktemp("footage")
    for scene, trajectory in CLEAN:
        copy_sequence(out / "staging" / scene / trajectory, root / scene / trajectory)
    return root


HOSTILE = "<script>alert('caption')</script> & <img src=x onerror=alert(1)>"
HOSTILE_SEGMENT = "<b onmouseover='alert(2)'>segment</b>"


def _meta(folder: pathlib.Path, **values) -> None:
    (folder / "meta.json").write_text(json.dumps({"fov": 90, "fps": 30, **values}))


def hostile_inputs(footage: pathlib.Path, base: pathlib.Path) -> dict[str, pathlib.Path]:
    """The hostile input tree; returns named paths the tests look at."""
    src_a, src_b = (footage / s / t for s, t in CLEAN)
    root = base / "footage"
    paths = {"root": root}

    def seq(scene: str, trajectory: str, src: pathlib.Path = src_a) -> pathlib.Path:
        folder = root / scene / trajectory
        folder.parent.mkdir(parents=True, exist_ok=True)
        import shutil

        shutil.copytree(src, folder)
        return folder

    paths["clean_a"], paths["clean_b"] = seq("hall", "walk1", src_a), seq("yard", "walk2", src_b)
    _meta(paths["clean_a"], caption=HOSTILE, captions=[{"start_s": 0, "end_s": 5, "text": HOSTILE_SEGMENT}])
    # 1: names that sanitise alike, valid and not
    seq("my scene", "t1"), seq("my_scene", "t1", src_b)
    seq("szene_ü", "日本語"), seq("szene_ö", "中文", src_b)
    # 3, 5, 6: values and files outside the caught types
    for name, meta in {"fps_list": {"fps": [30]}, "fps_text": {"fps": "abc"}, "fps_negative": {"fps": -30},
                       "fps_huge": {"fps": 1000}, "fov_bool": {"fov": True}, "captions_text": {"captions": "hi"},
                       "captions_overlap": {"captions": [{"start_s": 0, "end_s": 5, "text": "a"},
                                                         {"start_s": 2, "end_s": 6, "text": "b"}]}}.items():
        _meta(seq("bad", name), **meta)
    latin = seq("bad", "latin1") / "poses.csv"
    latin.write_bytes(latin.read_bytes().replace(b"frame,", b"fr\xe9me,", 1))
    long = seq("bad", "long_line") / "poses.csv"
    lines = long.read_text().splitlines(keepends=True)
    long.write_text("".join(lines[:3]) + lines[3].rstrip("\n") + "," + "9" * 200_000 + "\n" + "".join(lines[4:]))
    bomb = seq("bad", "bomb")
    first = sorted((bomb / "frames").iterdir())[5]
    png_claiming(first, first, 60000, 60000)
    corrupt = seq("bad", "corrupt_body")
    paths["corrupt_frame"] = frame = sorted((corrupt / "frames").iterdir())[7]
    frame.write_bytes(frame.read_bytes()[:200])  # the header parses, the pixels do not decode
    # 5: a repeated time with one frame for each row; reader.duplicate_times=keep_first drops both
    dup = seq("dup", "repeat")
    lines = (dup / "poses.csv").read_text().splitlines(keepends=True)
    fields = lines[12].split(",")
    fields[1] = lines[11].split(",")[1]
    lines[12] = ",".join(fields)
    (dup / "poses.csv").write_text("".join(lines))
    # 7: links and strays
    (root / "loop").symlink_to(root / "loop")
    (root / "hall_link").symlink_to(root / "hall")
    (root / "bad" / "gone").symlink_to(base / "nowhere")
    (root / "empty").mkdir()
    (root / "README.txt").write_text("not a scene")
    # 2, 5, 7: replayed logs: one upper-case .CSV, one far outside the scene, a binary one, a stray
    logs = base / "logs"
    logs.mkdir()
    t, loc, rot = walk(30)
    write_ue_csv(logs / "Walk.CSV", t, loc, rot)
    write_ue_csv(logs / "far.csv", t, loc + 1e9, rot)
    (logs / "blob.csv").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    (logs / "notes.txt").write_text("not a log")
    paths["logs"] = logs
    return paths


@pytest.fixture(scope="module")
def hostile(footage, tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    paths = hostile_inputs(footage, base)
    out = base / "out"
    out.mkdir()
    (out / "verdicts.csv").write_bytes("\ufeffsegment_id,verdict,reviewer,note\n".encode())  # a spreadsheet's BOM
    root = paths["root"]
    done = build(out, "--ingest", str(root), "--ingest", f"{root}/", "--trajectories", str(paths["logs"]),
                 "--set", "splits.val_fraction=0", "--set", "capture.sources.ingest.reader.duplicate_times=keep_first",
                 "--set", "capture.capture.camera.width=128", "--set", "capture.capture.camera.height=72")
    return out, paths, done


def _rows(out: pathlib.Path) -> pd.DataFrame:
    return trajectories(out).set_index(["scene", "trajectory"])


def _row(out: pathlib.Path, source_part: str) -> pd.Series:
    table = trajectories(out)
    match = table[table["source"].str.contains(source_part, regex=False)]
    assert len(match) == 1, (source_part, table[["scene", "trajectory", "source"]].to_string())
    return match.iloc[0]


# 1 -----------------------------------------------------------------------------------------------
def test_1_every_input_is_one_row_and_no_sample_key_repeats(hostile):
    out, paths, done = hostile
    assert done.returncode == 0, done.stderr[-3000:]
    table = trajectories(out)
    assert not table.duplicated(["scene", "trajectory"]).any()
    assert not table["source"].duplicated().any()
    folders = [p for p in paths["root"].glob("*/*") if not p.parent.is_symlink() and (p.is_dir() or p.is_symlink())]
    assert len(table) == len(folders) + 3  # every trajectory folder (the dangling link too), 3 .csv logs
    assert _row(out, "my scene").trajectory == "t1" and _row(out, "my scene").scene.startswith("my_scene_")
    assert _row(out, "my_scene/t1").scene == "my_scene"
    ids = {(_row(out, "szene_ü").scene, _row(out, "szene_ü").trajectory),
           (_row(out, "szene_ö").scene, _row(out, "szene_ö").trajectory)}
    assert len(ids) == 2
    for part in ("my scene", "my_scene/t1", "szene_ü", "szene_ö", "hall/walk1"):
        assert _row(out, part)["clips"] > 0, part
    manifest = pd.read_parquet(out / "manifest.parquet")
    samples = shard_members(out)
    assert not manifest["key"].duplicated().any() and set(manifest["key"]) == set(samples)


def test_1_inputs_that_would_share_an_id_stop_the_build_naming_both(footage, tmp_path):
    room = tmp_path / "footage" / "room_0001" / "plan0000"  # the planner's first room-1 path is named so
    room.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(footage / CLEAN[0][0] / CLEAN[0][1], room)
    config = tmp_path / "build.yaml"
    config.write_text("capture:\n  sources:\n    planner: {scenes: [room-1], trajectories_per_scene: 1, frames: 20}\n"
                      f"    ingest: {{roots: ['{tmp_path / 'footage'}']}}\n")
    for folder in ("a", "b"):  # two logs with one stem, replayed in one scene
        (tmp_path / folder).mkdir()
        t, loc, rot = walk(10)
        write_ue_csv(tmp_path / folder / "x.csv", t, loc, rot)
    out = tmp_path / "out"
    done = build(out, "--config", str(config))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "room_0001/plan0000 from planner" in done.stderr and str(room) in done.stderr
    assert not (out / "staging").exists() and not (out / "capture_report.parquet").exists()
    done = build(out, "--trajectories", str(tmp_path / "a"), "--trajectories", str(tmp_path / "b"))
    assert done.returncode == 2 and str(tmp_path / "a" / "x.csv") in done.stderr
    assert str(tmp_path / "b" / "x.csv") in done.stderr


# 2 -----------------------------------------------------------------------------------------------
def test_2_a_log_outside_the_scene_does_not_take_out_the_capture(hostile):
    out, paths, done = hostile
    assert done.returncode == 0, done.stderr[-3000:]
    assert _row(out, "Walk.CSV")["capture"] == "captured"
    far = _row(out, "far.csv")
    assert far["capture"] in ("captured", "failed")
    if far["capture"] == "failed":
        assert re.search(r"pose row \d+ of .*far\.csv", far["reason"]), far["reason"]
    assert "no live engine" not in " ".join(trajectories(out)["reason"])


# 3 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, message", [
    ("fps_list", r"meta\.json: key 'fps': \[30\] is not a number"),
    ("latin1", r"poses\.csv:1: .*UTF-8"),
    ("long_line", r"poses\.csv:4: .*field larger than field limit"),
    ("bomb", r"000005\.png \(row 5 of poses\.csv\): the header claims more pixels than Pillow opens"),
])
def test_3_inputs_outside_the_caught_types_are_failed_rows_naming_the_file(hostile, name, message):
    out, paths, done = hostile
    assert done.returncode == 0, done.stderr[-3000:]
    row = _row(out, f"bad/{name}")
    assert row["stage"] == "capture" and re.search(message, row["reason"]), row["reason"]
    assert str(paths["root"] / "bad" / name) in row["reason"]
    assert "Traceback" not in done.stderr


def test_3_config_errors_stop_before_any_work(tmp_path, footage):
    out = tmp_path / "out"
    for args, message in ((["--ingest", str(tmp_path / "missing")], f"ingest root {tmp_path / 'missing'} does not exist"),
                          (["--ingest", str(tmp_path / "none")], "no inputs: nothing found in ingest root"),
                          (["--trajectories", str(tmp_path / "nolog.csv")], "nolog.csv does not exist")):
        (tmp_path / "none").mkdir(exist_ok=True)
        done = build(out, *args)
        assert done.returncode == 2, done.stderr[-2000:]
        assert message in done.stderr and "Traceback" not in done.stderr
        assert not (out / "staging").exists() and not (out / "stats.json").exists()
    out.mkdir(exist_ok=True)
    (out / "verdicts.csv").write_bytes(b"segment_id,verdict\nhall-walk1-000000-000040,dr\xf6p\n")
    done = build(out, "--ingest", str(footage))
    assert done.returncode == 2 and f"{out / 'verdicts.csv'}:2: not UTF-8 (byte 0xf6)" in done.stderr


# 4 -----------------------------------------------------------------------------------------------
class _Payload:
    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_4_the_build_cache_runs_no_code(footage, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert build(out, "--ingest", str(footage), "--set", "splits.val_fraction=0").returncode == 0
    before = shard_members(out)
    marker = tmp_path / "executed"
    planted = 0
    for scene in (out / ".work" / "clips").iterdir():
        for stem in {p.name.split(".")[0] for p in scene.iterdir()}:
            for name in (f"{stem}.samples.pkl", f"{stem}.filter.pkl", f"{stem}.samples.tar", f"{stem}.frames.parquet"):
                (scene / name).write_bytes(pickle.dumps(_Payload(marker)))
                planted += 1
    assert planted >= 8
    done = build(out, "--ingest", str(footage), "--set", "splits.val_fraction=0")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not marker.exists(), "a planted cache file ran code"
    assert shard_members(out) == before
    assert json.loads((out / "stats.json").read_text())["clip_caches_reused"] == 0  # tampered: recomputed


# 5 -----------------------------------------------------------------------------------------------
def test_5_messages_name_the_users_file_and_key(hostile):
    out, paths, done = hostile
    assert done.returncode == 0, done.stderr[-3000:]
    blob = _row(out, "blob.csv")
    assert blob["stage"] == "capture" and str(paths["logs"] / "blob.csv") in blob["reason"]
    fps = _row(out, "bad/fps_text")
    assert f"{paths['root'] / 'bad' / 'fps_text' / 'meta.json'}: key 'fps': \"abc\" is not a number" in fps["reason"]
    corrupt = _row(out, "bad/corrupt_body")
    assert corrupt["stage"] == "filter" and str(paths["corrupt_frame"]) in corrupt["reason"], corrupt["reason"]
    repeat = _row(out, "dup/repeat")  # keep_first drops the row and its frame; the filter sees the gap
    assert repeat["stage"] == "" and repeat["frames"] == 39 and 0 < repeat["kept_frames"] < 39


# 6 -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, message", [("fps_negative", "key 'fps': -30 is not in (0, 240]"),
                                           ("fps_huge", "key 'fps': 1000 is not in (0, 240]"),
                                           ("fov_bool", "key 'fov': true is not a number"),
                                           ("captions_text", "key 'captions': expected a list"),
                                           ("captions_overlap", "captions[1] starts at 2 s, before captions[0] ends")])
def test_6_meta_values_are_validated(hostile, name, message):
    out, paths, done = hostile
    row = _row(out, f"bad/{name}")
    assert row["stage"] == "capture" and message in row["reason"], row["reason"]
    assert not (pd.read_parquet(out / "manifest.parquet")["fps"] > 240).any()


# 7 -----------------------------------------------------------------------------------------------
def test_7_nothing_is_skipped_without_a_word_and_links_add_no_rows(hostile):
    out, paths, done = hostile
    root = paths["root"]
    skipped = {pathlib.Path(s["path"]).name: s["reason"] for s in json.loads((out / "stats.json").read_text())["skipped"]}
    assert "loop" in skipped and "not a scene folder" in skipped["loop"]
    assert skipped["empty"] == "a scene folder with no trajectory folders"
    assert "not a scene folder" in skipped["README.txt"] and skipped["notes.txt"] == "not a .csv log"
    assert "walk1" in skipped and "read once" in skipped["walk1"]  # hall_link/walk1 is hall/walk1
    assert any("the same folder as ingest root" in r for r in skipped.values())  # the root given twice
    assert _row(out, "Walk.CSV")["trajectory"] == "Walk"
    gone = _row(out, str(root / "bad" / "gone"))
    assert gone["stage"] == "capture" and "cannot be opened" in gone["reason"]
    assert not trajectories(out)["source"].str.contains("hall_link").any()
    assert "skipped" in done.stderr


# 8 -----------------------------------------------------------------------------------------------
def test_8_the_review_page_shows_relative_paths_and_capture_failures(hostile):
    out, paths, done = hostile
    page = (out / "report" / "index.html").read_text()
    for form in {str(out), str(out.resolve())}:
        assert form not in page
    stats = json.loads((out / "stats.json").read_text())
    assert f"{stats['trajectories']['failed']} failed" in page
    table = trajectories(out)
    for _, row in table[table["stage"] == "capture"].iterrows():
        assert f"{row['scene']} / {row['trajectory']} (capture)" in page
    assert "staging/hall/walk1" in page


def test_8_captions_are_carried_and_escaped_in_every_page(hostile):
    """A footage caption and segment caption full of markup reach the samples and the manifest as
    given, and no page the build writes shows them unescaped."""
    out, paths, done = hostile
    manifest = pd.read_parquet(out / "manifest.parquet")
    hall = manifest[manifest["scene"] == "hall"]
    assert len(hall) and all(list(c) == [HOSTILE_SEGMENT] for c in hall["captions"])
    members = shard_members(out)
    meta = json.loads(members[hall["key"].iloc[0]]["json"])
    assert meta["caption"] == HOSTILE and meta["captions"][0]["text"] == HOSTILE_SEGMENT
    assert meta["captions"][0]["source"] == "ingest"
    pages = sorted(out.rglob("*.html"))
    assert {p.name for p in pages} >= {"index.html", "dataset.html"}
    for page in pages:
        text = page.read_text()
        for raw in (HOSTILE, HOSTILE_SEGMENT, "<script>alert", "onmouseover='alert"):
            assert raw not in text, (page, raw)
    assert html.escape(HOSTILE_SEGMENT, quote=True) in (out / "report" / "dataset.html").read_text()


def test_8_the_dataset_card_counts_every_failure_by_stage(hostile):
    out, paths, done = hostile
    stats = json.loads((out / "stats.json").read_text())
    failed = stats["card"]["filter"]["trajectories_failed"]
    assert {stage: sum(kinds.values()) for stage, kinds in failed.items()} == stats["trajectories"]["failed_by_stage"]
    for kinds in failed.values():  # kinds of failure, not one row per file: no user path in them
        assert not any(str(paths["root"]) in kind for kind in kinds), kinds


# 10 ----------------------------------------------------------------------------------------------
def test_10_no_empty_shard_for_a_split_without_samples(hostile):
    out, paths, done = hostile
    stats = json.loads((out / "stats.json").read_text())
    assert stats["samples"]["val"] == 0 and stats["shards"]["val"] == 0
    assert not list((out / "shards").glob("val-*.tar"))


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_10_no_ray_process_outlives_a_killed_build(tmp_path, how):
    import signal
    import subprocess
    import sys
    import time

    import psutil

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    proc = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve().parents[1] / "pipelines" /
                                                 "build_dataset.py"), "--out", str(tmp_path / "out"), "--no-progress"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    deadline = time.time() + 120
    started: list[psutil.Process] = []
    while time.time() < deadline:  # wait until the capture actors run
        started = parent.children(recursive=True)
        if any("_CaptureActor" in " ".join(_cmdline(p)) for p in started):
            break
        time.sleep(0.5)
    assert any("DashboardAgent" in " ".join(_cmdline(p)) or "raylet" in " ".join(_cmdline(p)) for p in started)
    proc.send_signal(getattr(signal, how))
    proc.wait()
    _, alive = psutil.wait_procs(started, timeout=15)
    assert [(p.pid, _cmdline(p)[:2]) for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []


def _cmdline(proc) -> list[str]:
    import psutil

    try:
        return proc.cmdline()
    except psutil.Error:
        return []
