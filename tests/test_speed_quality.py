"""bench/speed_quality.py: the speed/quality curve's join and headline, on reports built here with
known per-clip PSNR, and on the real speed file bench/student.py writes."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CLIPS = [f"room_0001/{i}/{name}" for i in range(3) for name in ("forward", "yaw_left", "forward+yaw_right", "square")]


def _bench():
    spec = importlib.util.spec_from_file_location("speed_quality", ROOT / "bench" / "speed_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["speed_quality"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def report(psnr: np.ndarray, *, student_steps: int | None = None, steps: int = 20, guidance: float = 1.0,
           commit: str | None = None) -> dict:
    student = {"block_frames": 2, "steps": [1.0, 0.9, 0.8, 0.6][:student_steps]} if student_steps else None
    if student is not None and commit is not None:  # reports from before the option have no "commit"
        student["commit"] = commit
    return {"clip_ids": CLIPS, "sampler": {"frames": 9, "steps": steps, "guidance": guidance}, "student": student,
            "methods": {"model": {"psnr": {"mean": float(psnr.mean()), "se": 0.1, "n": len(psnr)},
                                  "psnr_per_clip": psnr.tolist()}},
            "paths": {"methods": {"model": {"rpe_t": {"mean": 0.07, "se": 0.003, "n": len(psnr)}}}}}


def speed_file() -> dict:
    return {"machine": "test", "curve": {
        "student": {"1": {"1": 400.0, "16": 6000.0}, "2": {"1": 250.0, "16": 3500.0}, "4": {"1": 110.0, "16": 1900.0}},
        "teacher": {"10_cfg1": {"1": 60.0, "16": 900.0}, "20_cfg1": {"1": 30.0, "16": 460.0},
                    "20_cfg2": {"1": 16.0, "16": 230.0}}}}


@pytest.fixture
def evals():
    rng = np.random.default_rng(0)
    base = 24 + rng.normal(0, 1, len(CLIPS))
    return {"t20": report(base, steps=20), "t20g2": report(base - 0.4, steps=20, guidance=2.0),
            "t10": report(base - 0.2, steps=10),
            "s4": report(base - 0.5 + rng.normal(0, 0.05, len(CLIPS)), student_steps=4),
            "s2": report(base - 1.2, student_steps=2),  # within 1.5 dB of the best teacher
            "s1": report(base - 3.0, student_steps=1)}  # not within


def test_headline_is_the_fastest_student_within_the_margin_against_the_best_sampler(evals):
    result = _bench().join(speed_file()["curve"], evals, within=1.5, target=10)
    assert result["best_teacher"] == "teacher, 20 steps, CFG 1"
    by_method = {r["method"]: r for r in result["rows"]}
    assert by_method["student, 2 steps + commit"]["vs_best_teacher"]["mean"] == pytest.approx(-1.2)
    assert by_method["student, 1 step + commit"]["vs_best_teacher"]["mean"] == pytest.approx(-3.0)
    # the 1-step student is fastest but 3 dB down: the 2-step one is the headline, 250 / 30 and 3500 / 460
    assert result["headline"]["1"] == {"student": "student, 2 steps + commit", "vs_best_teacher_db": pytest.approx(-1.2),
                                       "speedup": pytest.approx(250 / 30), "met": False}
    assert result["headline"]["16"]["speedup"] == pytest.approx(3500 / 460)
    # a looser margin lets the 1-step student in: 400 / 30 meets 10x at batch 1
    loose = _bench().join(speed_file()["curve"], evals, within=3.5, target=10)["headline"]["1"]
    assert loose["student"] == "student, 1 step + commit" and loose["met"] and loose["speedup"] == pytest.approx(400 / 30)


def test_no_student_within_the_margin_is_said(evals):
    result = _bench().join(speed_file()["curve"], {k: v for k, v in evals.items() if k in ("t20", "s1")}, within=1.5)
    assert result["headline"]["1"] == {"student": None, "speedup": None, "met": False}
    assert "no student within 1.5 dB" in _bench().table(result)


def test_a_sampler_without_speed_or_two_evals_of_one_method_are_errors(evals):
    bench = _bench()
    missing = dict(evals, t50=report(np.full(len(CLIPS), 25.0), steps=50))
    with pytest.raises(SystemExit, match="t50: the speed file has no teacher, 50 steps, CFG 1"):
        bench.join(speed_file()["curve"], missing)
    with pytest.raises(SystemExit, match="both evaluated student, 4 steps"):
        bench.join(speed_file()["curve"], dict(evals, again=evals["s4"]))
    with pytest.raises(SystemExit, match="at least one teacher and one student"):
        bench.join(speed_file()["curve"], {"s4": evals["s4"]})


def test_cli_writes_table_json_and_plot_from_a_real_speed_file(tmp_path, evals):
    """The speed file from bench/student.py's curve section itself (tiny model on CPU), joined with
    evaluations of the step counts and samplers it timed."""
    speed = tmp_path / "speed.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "student.py"), "--preset", "tiny", "--quick", "--device", "cpu",
                    "--sections", "curve", "--student-steps", "2,4", "--curve-commits", "clean,fold",
                    "--curve-teacher-steps", "20",
                    "--curve-batches", "1", "--json", str(speed)], check=True, capture_output=True, cwd=ROOT)
    curve = json.loads(speed.read_text())["curve"]
    assert set(curve["student"]) == {"2", "4", "2_fold", "4_fold"} and set(curve["teacher"]) == {"20_cfg1", "20_cfg2"}
    assert all(fps["1"] > 0 for table in (curve["student"], curve["teacher"]) for fps in table.values())
    evals["s2f"] = report(np.asarray(evals["s2"]["methods"]["model"]["psnr_per_clip"]) - 0.1, student_steps=2,
                          commit="fold")
    paths = []
    for name in ("t20", "t20g2", "s4", "s2", "s2f"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(evals[name]))
        paths.append(str(tmp_path / name))
    out = tmp_path / "out"
    assert _bench().main([*paths, "--speed", str(speed), "--out", str(out)]) == 0
    result = json.loads((out / "speed_quality.json").read_text())
    assert [r["method"] for r in result["rows"]] == ["student, 2 steps + commit", "student, 2 steps with its commit folded",
                                                     "student, 4 steps + commit", "teacher, 20 steps, CFG 1",
                                                     "teacher, 20 steps, CFG 2"]
    folded = result["rows"][1]
    assert folded["commit"] == "fold" and folded["frames_per_s"]["1"] == curve["student"]["2_fold"]["1"]
    table = (out / "table.md").read_text()
    assert "| teacher, 20 steps, CFG 1 |" in table and "0 (itself)" in table and "batch 1: fastest student" in table
    assert (out / "curve.png").stat().st_size > 1000
