"""bench/pretrain_table.py: issue 27's table and curve, from the committed GPU results."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "pretrain"


def test_the_table_is_the_committed_one_and_the_curve_is_drawn(tmp_path):
    png = tmp_path / "curve.png"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "pretrain_table.py"), str(RESULTS), "--plot", str(png)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert table == (RESULTS / "table.md").read_text().splitlines()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_a_folder_without_scratch_runs_is_named_in_the_error(tmp_path):
    shutil.copytree(RESULTS / "eval_tune_4", tmp_path / "eval_tune_4")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "pretrain_table.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"{tmp_path}: no eval_scratch_<scenes> folder" in done.stderr
