"""The filter over a staging area: report files, every frame accounted for, verdicts honoured, CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from filter.config import FilterConfig
from filter.report import write_report
from filter.review import DISTRIBUTIONS, _svg_histogram
from filter.run import filter_staging, segments_table, totals
from filter.segments import ReviewVerdict, Verdict
from filter.verdicts import write_verdicts
from tests.filter_helpers import small_staging


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    root = tmp_path_factory.mktemp("staging")
    truth = small_staging(root)
    return root, truth


def test_every_frame_is_covered_and_faults_are_dropped(staged, tmp_path):
    root, truth = staged
    run = filter_staging(root, FilterConfig())
    assert [r.trajectory for r in run.results] == ["clean", "faulty"] and not run.failed
    segments = segments_table(run)
    for (scene, trajectory), group in segments.groupby(["scene", "trajectory"]):
        group = group.sort_values("start")
        assert group["start"].iloc[0] == 0 and (group["start"].to_numpy()[1:] == group["end"].to_numpy()[:-1]).all()
        assert group["end"].iloc[-1] == 60
    faulty = next(r for r in run.results if r.trajectory == "faulty").frames
    assert truth["black"], "the fault rate should have produced black frames"
    for i in truth["black"]:
        assert not faulty["kept"][i] and "black" in faulty["reasons"][i]
    for i in truth["teleport"]:
        assert "teleport" in faulty["reasons"][i]
    clean = next(r for r in run.results if r.trajectory == "clean").frames
    assert clean["kept"].all()
    stats = totals(run)
    assert stats["frames"] == 120 and stats["frames_kept"] + stats["frames_dropped"] == 120
    assert stats["frames_dropped_per_reason"]["black"] == len(truth["black"])

    out = write_report(run, tmp_path / "report")
    table = pd.read_parquet(out / "filter.parquet")
    for column in ("segment_id", "scene", "trajectory", "start", "end", "verdict", "reasons", "jitter_rotation",
                   "sharpness_rel", "shift_error"):
        assert column in table.columns
    assert set(table["verdict"]) == {"keep", "drop"}
    frames = pd.read_parquet(out / "frames.parquet")
    assert len(frames) == 120 and "flag_black" in frames.columns
    page = (out / "index.html").read_text()
    assert "faulty" in page and "data:image/jpeg;base64," in page and "<script src" not in page
    charts = re.findall(r"<svg class='chart hist' data-score='([a-z_]+)' data-kept='(\d+)' data-dropped='(\d+)'", page)
    assert [c[0] for c in charts] == [name for name, _ in DISTRIBUTIONS]
    finite = {name: frames[name].notna() for name, _ in DISTRIBUTIONS}  # every frame with a finite score counted once
    kept = frames["kept"].astype(bool)
    assert all((int(k), int(d)) == (int((finite[n] & kept).sum()), int((finite[n] & ~kept).sum())) for n, k, d in charts)


def test_histogram_outline_known_answer():
    """Two classes over 4 bins: each a closed step outline (2 points a bin + 2 on the floor), the
    tallest count at the top of the log axis, empty bins and NaNs on the floor, labels in range."""
    values = np.array([0.0, 0.0, 0.0, 1.0, 2.0, 4.0, np.nan])
    kept = np.array([True, True, True, False, True, False, True])
    svg = _svg_histogram("luma_mean", "0-255", values, kept, bins=4)
    assert "data-kept='4' data-dropped='2'" in svg
    polygons = re.findall(r"<polygon[^>]*points='([^']*)'", svg)
    assert len(polygons) == 2
    kept_points = [tuple(map(float, p.split(","))) for p in polygons[0].split()]
    assert len(kept_points) == 2 * 4 + 2
    ys = [y for _, y in kept_points]
    floor_y = ys[0]
    assert ys[-1] == floor_y and min(ys) < floor_y
    assert ys[1] == min(ys)  # bin 0 (three zeros) is the kept class's tallest
    assert ys[3] == ys[7] == floor_y and ys[1] < ys[5] < floor_y  # kept counts per bin: 3, 0, 1 (the 2.0), 0
    assert ">0</text>" in svg and ">4</text>" in svg
    assert "no finite values" in _svg_histogram("flicker", "ratio", np.full(3, np.nan), np.ones(3, bool))


def test_verdicts_are_honoured_on_the_next_run(staged):
    root, _ = staged
    first = filter_staging(root, FilterConfig())
    faulty = next(r for r in first.results if r.trajectory == "faulty")
    clean = next(r for r in first.results if r.trajectory == "clean")
    dropped = next(s for s in faulty.segments if s.verdict is Verdict.DROP)
    kept = next(s for s in clean.segments if s.verdict is Verdict.KEEP)
    verdicts = {dropped.segment_id: ReviewVerdict(dropped.segment_id, Verdict.KEEP, "ann", "looks fine"),
                kept.segment_id: ReviewVerdict(kept.segment_id, Verdict.DROP, "ann", "")}
    second = filter_staging(root, FilterConfig(), verdicts)
    frames = next(r for r in second.results if r.trajectory == "faulty").frames
    assert frames["kept"][dropped.start:dropped.end].all()
    frames = next(r for r in second.results if r.trajectory == "clean").frames
    assert not frames["kept"][kept.start:kept.end].any()
    assert all(r == ["reviewer"] for r in frames["reasons"][kept.start:kept.end])
    assert second.verdicts_applied == 2 and second.verdicts_changed == 2
    with pytest.raises(ValueError, match="unknown segment room_0001-faulty-000000-000001"):
        filter_staging(root, FilterConfig(), {"room_0001-faulty-000000-000001": verdicts[kept.segment_id]})


def test_a_broken_trajectory_fails_alone(tmp_path):
    root = tmp_path / "staging"
    small_staging(root, frames=40)
    victim = root / "room_0001" / "faulty" / "frames" / "000007.png"
    victim.write_bytes(b"not a png")
    run = filter_staging(root, FilterConfig())
    assert [r.trajectory for r in run.results] == ["clean"]
    assert len(run.failed) == 1 and "000007.png: cannot decode image (poses.csv row 7)" in run.failed[0].reason


def test_cli_writes_the_report_and_reads_verdicts(staged, tmp_path):
    root, _ = staged
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "filter", str(root), "--out", str(out), "--num-cpus", "1", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "report" / "index.html").is_file() and (out / "filter_config.yaml").is_file()
    stats = json.loads(done.stdout[: done.stdout.rindex("}") + 1])
    assert stats["frames"] == 120 and stats["verdicts_applied"] == 0
    table = pd.read_parquet(out / "report" / "filter.parquet")
    first = table.iloc[0]
    write_verdicts([ReviewVerdict(first["segment_id"], Verdict.DROP, "ann", "")], out / "verdicts.csv")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout[: done.stdout.rindex("}") + 1])["verdicts_applied"] == 1
    write_verdicts([ReviewVerdict("nope-000000-000001", Verdict.DROP, "", "")], out / "verdicts.csv")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "unknown segment nope-000000-000001" in done.stderr
    assert np.isfinite(table["speed"]).any()
