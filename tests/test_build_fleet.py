"""The demo build through a launched game fleet: three instances of the stand-in laid out as a
packaged UE Linux build (`capture.fleet.binary`), as a data engineer runs it against their project.
One instance SIGKILLed mid-build is relaunched and every trajectory is captured exactly once; a
build interrupted with Ctrl-C (SIGINT) leaves no engine process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from capture.standin.packaged import write_packaged_game
from tests.capture_helpers import kill_one_when, partial_frames, standin_pids
from tests.integrity_helpers import ROOT, shard_members

pytestmark = pytest.mark.serial  # it counts and kills stand-in engines machine-wide (tests.capture_helpers.standin_pids)


def _build(out, game, *more: str) -> subprocess.Popen:
    # PYTHONFAULTHANDLER: a build that hangs can be made to print every thread's stack (SIGABRT)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}, "PYTHONFAULTHANDLER": "1"}
    return subprocess.Popen([sys.executable, str(ROOT / "pipelines" / "build_dataset.py"), "--out", str(out),
                             "--no-progress", "--num-cpus", "3", "--set", f"capture.capture.fleet.binary={game}",
                             "--set", "capture.capture.fleet.instances=3", *more],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=out.parent)


def _gone(pids: set[int], timeout_s: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout_s
    while pids & set(standin_pids()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return pids & set(standin_pids())


def test_demo_through_three_launched_instances_one_killed(tmp_path):
    game = write_packaged_game(tmp_path / "LinuxNoEditor", "MyProject")
    out = tmp_path / "out"
    before = set(standin_pids())
    seen: set[int] = set()

    def ready() -> bool:
        seen.update(set(standin_pids()) - before)
        return partial_frames(out / "staging") >= 30

    thread, killed = kill_one_when(ready, standin_pids, before, timeout_s=300)
    # the demo's paths and faults, at a smaller size: the fleet is under test, not the renderer
    build = _build(out, game, "--set", "capture.sources.planner.frames=100", "--set", "capture.capture.camera.width=128",
                   "--set", "capture.capture.camera.height=72")
    try:
        stdout, stderr = build.communicate(timeout=600)
    finally:
        thread.join()
    assert build.returncode == 0, stderr[-3000:]
    assert killed, "an engine should have been killed mid-build"
    report = pd.read_parquet(out / "trajectories.parquet")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["trajectories"]["in"] == 8 and stats["trajectories"]["captured"] == 8, stats["trajectories"]
    assert len(report) == 8 and (report["stage"] == "").all()
    staged = sorted(p.parent.relative_to(out / "staging") for p in (out / "staging").glob("*/*/meta.json"))
    assert len(staged) == len(set(staged)) == 8  # each trajectory staged once
    assert not list((out / "staging" / ".partial").iterdir())
    shard_members(out)  # no sample key twice
    logs = sorted(p.name for p in (out / "staging" / ".engine_logs").glob("*.log"))
    assert {n.split(".")[0] for n in logs} == {"engine-0", "engine-1", "engine-2"} and len(logs) >= 4, logs
    assert _gone(seen) == set()


def test_ctrl_c_during_the_build_leaves_no_engine(tmp_path):
    game = write_packaged_game(tmp_path / "LinuxNoEditor", "MyProject")
    out = tmp_path / "out"
    before = set(standin_pids())
    # long paths: the interrupt must land mid-capture even when a loaded machine polls slowly (with
    # the demo's 8 short paths a full-suite run once saw the build finish before the SIGINT)
    build = _build(out, game, "--set", "capture.sources.planner.frames=1200")
    ours: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (len(ours) >= 3 and partial_frames(out / "staging") >= 10):
            ours |= set(standin_pids()) - before
            time.sleep(0.1)
        assert len(ours) >= 3, "three engines should be running"
        build.send_signal(signal.SIGINT)
        sent = time.monotonic()
        try:
            _, stderr = build.communicate(timeout=120)
        except subprocess.TimeoutExpired:  # where it hangs: every thread's stack, then fail with it
            build.send_signal(signal.SIGABRT)
            _, stderr = build.communicate(timeout=60)
            pytest.fail(f"the build did not end within 120 s of Ctrl-C; its stderr:\n{stderr[-6000:]}")
        waited = time.monotonic() - sent
    finally:
        if build.poll() is None:
            build.kill()
    assert build.returncode == 130, "the build should have been interrupted, not finished"
    assert "interrupted: what was staged and cached" in stderr and "Traceback" not in stderr, stderr[-2000:]
    # busy capture actors are not waited for (they once held Ctrl-C up for 30 s each)
    assert waited < 20, f"Ctrl-C took {waited:.0f} s to end the build"
    assert _gone(ours) == set(), "engines outlived the interrupted build"
