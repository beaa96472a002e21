"""bench/quality_curve.py: a teacher run's snapshots evaluated on the same clips, fitted, resumable."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import re
from dataclasses import asdict

import torch

from tests.training_helpers import randomized_model, tiny_config
from training.runtime import save_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("quality_curve", ROOT / "bench" / "quality_curve.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_snapshot_is_evaluated_once_tabled_and_drawn(tmp_path):
    config = tiny_config(height=16, width_px=32)
    run = tmp_path / "run"
    for step, seconds in ((10, 70.0), (20, 100.0), (30, 130.0), (40, 160.0)):
        _snapshot(run, config, step, seconds)
    final = run / "checkpoint.pt"  # the final step: the same point once
    save_checkpoint(final, {**torch.load(run / "snapshots" / "step0000040.pt", weights_only=True), "optim": {}})
    bench = _bench()
    out = tmp_path / "curve"
    argv = [str(run), "--out", str(out), "--", "--scenes", "room_0001", "--frames", "5", "--starts", "1",
            "--steps", "2", "--device", "cpu", "--precision", "fp32", "--workers", "1", "--no-rpe",
            "--cache", str(tmp_path / "set.npz")]
    assert bench.main(argv) == 0
    curve = json.loads((out / "curve.json").read_text())
    assert [p["step"] for p in curve["points"]] == [10, 20, 30, 40]
    assert curve["steps_per_minute"] == 30.0 * 60 / 90  # (40 - 10) steps in 90 s
    assert curve["machine"].startswith("no GPU | ") and "cores" in curve["machine"]  # not the host's name alone
    for p in curve["points"]:
        report = json.loads((out / f"eval_step{p['step']:07d}" / "metrics.json").read_text())
        assert p["gain_over_copy_first"] == report["paired"]["model-copy_first"]["psnr_db"]
    table = (out / "table.md").read_text()
    rows = [line.split(" | ")[0] for line in table.splitlines() if re.match(r"\| \d+ \|", line)]
    assert rows == ["| 10", "| 20", "| 30", "| 40"] and "fit: gain =" in table
    assert (out / "curve.png").stat().st_size > 5_000
    stamp = (out / "eval_step0000020" / "metrics.json").stat().st_mtime_ns
    assert bench.main(argv) == 0  # resumed: nothing evaluated again
    assert (out / "eval_step0000020" / "metrics.json").stat().st_mtime_ns == stamp


def test_a_run_without_weights_is_named(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="no snapshots/step"):
        _bench().main([str(tmp_path), "--out", str(tmp_path / "o")])


def _snapshot(run: pathlib.Path, config, step: int, seconds: float) -> None:
    torch.manual_seed(step)
    state = {"model": randomized_model(config).state_dict(), "ema": None, "model_config": asdict(config),
             "config": {"flow": {"shift": 3.0}}, "step": step, "elapsed": seconds}
    save_checkpoint(run / "snapshots" / f"step{step:07d}.pt", state)


def test_follow_evaluates_snapshots_while_the_training_runs_and_the_last_ones_after(tmp_path):
    """--follow PID: a snapshot is evaluated while the training process still runs (what a run cut
    short keeps), and one written just before it exits is evaluated after; then the whole run is tabled."""
    import subprocess
    import sys
    import threading
    import time

    config = tiny_config(height=16, width_px=32)
    run, out = tmp_path / "run", tmp_path / "curve"
    eval_args = ["--scenes", "room_0001", "--frames", "5", "--starts", "1", "--steps", "2", "--device", "cpu",
                 "--precision", "fp32", "--workers", "1", "--no-rpe", "--cache", str(tmp_path / "set.npz")]
    bench = _bench()
    training = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        assert bench.alive(training.pid)
        result: list[bool] = []
        thread = threading.Thread(target=lambda: result.append(bench.follow(run, training.pid, out, eval_args, 0.05)))
        _snapshot(run, config, 10, 60.0)
        thread.start()
        first = out / "eval_step0000010" / "metrics.json"
        deadline = time.monotonic() + 120
        while not first.is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert first.is_file() and training.poll() is None  # evaluated while the training runs
        _snapshot(run, config, 20, 90.0)
        training.kill()
        training.wait()  # reaped here; a zombie would count as exited too
        assert not bench.alive(training.pid)
        thread.join(timeout=120)
        assert result == [True]
        assert (out / "eval_step0000020" / "metrics.json").is_file()
    finally:
        training.kill()
    stamp = first.stat().st_mtime_ns
    for step, seconds in ((30, 120.0), (40, 150.0)):
        _snapshot(run, config, step, seconds)
    assert bench.main([str(run), "--out", str(out), "--follow", str(training.pid), "--", *eval_args]) == 0
    curve = json.loads((out / "curve.json").read_text())
    assert [p["step"] for p in curve["points"]] == [10, 20, 30, 40]
    assert first.stat().st_mtime_ns == stamp  # not evaluated twice
