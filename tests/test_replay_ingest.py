"""Replay placement of real logs, and ingest of pre-rendered folders (formats.md 1.2)."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from annotate.geometry import relative_motion
from annotate.readers import ReaderConfig, read_trajectory, read_ue_csv, write_ue_csv
from annotate.ue import ue_to_pose
from capture.ingest import IngestConfig, ingest_sequence
from capture.inputs import find_sequences
from capture.replay import ReplayConfig, ReplaySource, replay_job
from capture.run import SourcesConfig, collect_jobs
from capture.planner import PlannerConfig
from capture.standin.scene import make_scene
from annotate.actions import ActionSpec
from tests.capture_helpers import walk
from tests.conftest import REAL_TRAJECTORIES

TUM = REAL_TRAJECTORIES / "tum_freiburg1_xyz_rgbdslam.tum"


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_placement_keeps_the_recorded_motion_up_to_the_stated_scale(scale):
    job = replay_job(ReplaySource(str(TUM), "room-1", scale=scale), ReplayConfig())
    placed = ue_to_pose(job.locations, job.rotations)
    original = read_trajectory(TUM).poses
    a, b = relative_motion(placed), relative_motion(original)
    np.testing.assert_allclose(a[:, :3], b[:, :3] * scale, atol=1e-6)  # camera-frame steps, scaled
    np.testing.assert_allclose(a[:, 3:], b[:, 3:], atol=1e-6)  # turns unchanged
    placement = job.meta["replay"]["placement"]
    assert placement["scale"] == scale and placement["free_fraction"] == 1.0
    assert make_scene("room-1").is_free(placed[:, :3, 3], 0.29).all()
    assert abs(job.locations[0, 2] - 160.0) < 1e-6  # first camera at eye height


def test_explicit_anchor_and_heading_are_honoured():
    job = replay_job(ReplaySource(str(TUM), "SomeUELevel", scale=1.0, anchor_cm=(100.0, 200.0, 150.0), yaw_deg=30.0),
                     ReplayConfig())
    np.testing.assert_allclose(job.locations[0], [100.0, 200.0, 150.0], atol=1e-6)
    forward = ue_to_pose(job.locations[:1], job.rotations[:1])[0, :3, 2]
    assert np.degrees(np.arctan2(-forward[1], forward[0])) == pytest.approx(30.0, abs=1e-6)  # UE yaw
    assert job.scene == "SomeUELevel"


def test_placement_needs_a_stated_scale_and_a_ue_csv_none(tmp_path):
    with pytest.raises(ValueError, match="tum_freiburg1_xyz_rgbdslam.tum: tum poses have no known scale"):
        replay_job(ReplaySource(str(TUM), "room-1"), ReplayConfig())
    with pytest.raises(ValueError, match="not a stand-in scene; give anchor_cm and yaw_deg"):
        replay_job(ReplaySource(str(TUM), "MyLevel", scale=1.0), ReplayConfig())
    t, loc, rot = walk(5)
    write_ue_csv(tmp_path / "log.csv", t, loc, rot)
    with pytest.raises(ValueError, match="log.csv: a UE CSV is replayed in the level's own coordinates"):
        replay_job(ReplaySource(str(tmp_path / "log.csv"), "room-1", scale=2.0), ReplayConfig())


def test_unreadable_logs_are_failures_and_the_rest_goes_on(tmp_path):
    t, loc, rot = walk(5)
    write_ue_csv(tmp_path / "good.csv", t, loc, rot)
    bad = tmp_path / "bad.csv"
    bad.write_text((tmp_path / "good.csv").read_text().replace("0.033333", "nan", 1))
    sources = SourcesConfig(
        replay=ReplayConfig(sources=(ReplaySource(str(bad), "room-1"), ReplaySource(str(tmp_path / "good.csv"), "room-1"))),
        planner=PlannerConfig(trajectories_per_scene=1, frames=20))
    _, jobs, failed = collect_jobs(sources, ActionSpec())
    assert [j.trajectory for j in jobs] == ["good", "plan0000"]
    assert len(failed) == 1 and failed[0].status == "failed" and failed[0].scene == "room_0001"
    assert "bad.csv:3: column 'time': 'nan' is not finite" in failed[0].reason


# -- ingest ----------------------------------------------------------------------------------------
def _sequence(root, scene, name, n=6, ext="png", meta=True):
    folder = root / scene / name
    (folder / "frames").mkdir(parents=True)
    t, loc, rot = walk(n)
    write_ue_csv(folder / "poses.csv", t, loc, rot)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / "frames" / f"{i:06d}.{ext}"), rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    if meta:
        (folder / "meta.json").write_text(json.dumps({"fov": 70, "fps": 30, "caption": "a test walk", "lens": "wide"}))
    return folder


def test_ingest_stages_good_sequences_and_reports_bad_ones_by_file_and_row(tmp_path):
    root, staging = tmp_path / "footage", tmp_path / "staging"
    good = _sequence(root, "hall", "good")
    _sequence(root, "hall", "jpgs", ext="jpg")
    short = _sequence(root, "hall", "short")
    os.remove(short / "frames" / "000005.png")
    broken = _sequence(root, "hall", "broken")
    (broken / "frames" / "000003.png").write_bytes(b"not an image")
    nan = _sequence(root, "hall", "nanpose")
    text = (nan / "poses.csv").read_text().splitlines()
    text[2] = ",".join(text[2].split(",")[:2] + ["nan"] + text[2].split(",")[3:])
    (nan / "poses.csv").write_text("\n".join(text) + "\n")
    nofov = _sequence(root, "hall", "nofov", meta=False)
    results = {r.trajectory: r for r in (ingest_sequence(s, staging, IngestConfig()) for s in find_sequences(root))}
    assert results["good"].status == "captured" and results["jpgs"].status == "captured"
    assert results["short"].status == "failed" and "5 frame files for 6 pose rows in poses.csv" in results["short"].reason
    assert results["broken"].status == "failed"
    assert "000003.png (row 3 of poses.csv): unreadable image" in results["broken"].reason
    assert results["nanpose"].status == "failed" and "poses.csv:3: column 'x': 'nan' is not finite" in results["nanpose"].reason
    assert results["nofov"].status == "failed" and "no fov given" in results["nofov"].reason
    staged = staging / "hall" / "good"
    meta = json.loads((staged / "meta.json").read_text())
    assert meta["fov"] == 70.0 and meta["caption"] == "a test walk" and meta["lens"] == "wide" and meta["frames"] == 6
    assert (meta["width"], meta["height"]) == (32, 24)
    np.testing.assert_array_equal(cv2.imread(str(staged / "frames" / "000002.png")), cv2.imread(str(good / "frames" / "000002.png")))
    assert len(read_ue_csv(staged / "poses.csv", ReaderConfig()).poses) == 6
    assert sorted(p.name for p in (staging / "hall").iterdir()) == ["good", "jpgs"]
    assert not any((staging / ".partial").iterdir())
    # a default FOV makes the FOV-less folder usable, and says so; an unchanged folder is cached
    again = ingest_sequence(next(s for s in find_sequences(root) if s.trajectory == "nofov"), staging, IngestConfig(default_fov=90.0))
    assert again.status == "captured"
    assert json.loads((staging / "hall" / "nofov" / "meta.json").read_text())["fov_source"] == "ingest.default_fov"
    assert ingest_sequence(next(s for s in find_sequences(root) if s.trajectory == "good"), staging, IngestConfig()).status == "cached"
