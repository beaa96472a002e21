"""bench/loader.py's GPU-decode rows read the frames they say, in all, whatever the worker count
(`epoch_samples` is per DataLoader worker: a run sized per worker read workers² x the frames meant)."""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

from tests.training_helpers import write_tiny_shards

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_decode_row_reads_its_frames_in_all(tmp_path, workers):
    write_tiny_shards(tmp_path / "shards", clips=8, frames=4, height=16, width=24)
    per_worker = 800  # above the floor of 30 batches (480 frames here)
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "loader.py"), "--out", str(tmp_path),
                           "--workers", str(workers), "--decode", "device", "--repeats", "1",
                           "--frames-per-worker", str(per_worker)], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "frames/s per worker" not in done.stdout, "--decode device prints only its own rows"
    row = re.search(rf"{workers} worker\(s\), (\d+) frames a run: the workers decode \d+", done.stdout)
    assert row, done.stdout
    total = per_worker * workers  # all workers together; the first batch (4 clips of 4 frames) is not counted
    assert total - 16 * workers <= int(row.group(1)) <= total


def test_a_run_is_at_least_thirty_batches_a_worker(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # the script imports its neighbour _common
    spec = importlib.util.spec_from_file_location("loader_bench", ROOT / "bench" / "loader.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.run_frames(20_000, batch=4, clip_frames=33) == 20_000  # 256x144: 151 batches
    assert bench.run_frames(800, batch=4, clip_frames=33) == 3_960  # 1280x720's 800 frames: 6 batches, warm-up
