"""bench/pretrain_table.py: issue 27's table and curve, from the committed GPU results."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "pretrain"
SPLITS = ROOT / "bench" / "results" / "pretrain_splits"


@pytest.mark.parametrize("results", [RESULTS, SPLITS], ids=["amounts", "splits"])
def test_the_table_is_the_committed_one_the_readme_shows_it_and_the_curve_is_drawn(tmp_path, results):
    png = tmp_path / "curve.png"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "pretrain_table.py"), str(results), "--plot", str(png)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert table == (results / "table.md").read_text().splitlines()
    readme = (ROOT / "README.md").read_text()
    assert all(line in readme for line in table[2:]), "the README's table should be the committed one"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_a_folder_without_scratch_runs_is_named_in_the_error(tmp_path):
    shutil.copytree(RESULTS / "eval_tune_4", tmp_path / "eval_tune_4")
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "pretrain_table.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and f"{tmp_path}: no eval_scratch_<scenes> folder" in done.stderr


def test_a_run_over_splits_of_the_budget_gets_a_row_per_split_and_a_curve_against_pretraining_steps(tmp_path):
    """PRE="300 900": the arms are named by their split (eval_tune_p300_16, tune_p300_16_vs_scratch_16.json,
    tune_p300_16_summary.json); the committed 16-scene evaluations stand in for them."""
    shutil.copytree(RESULTS / "eval_scratch_16", tmp_path / "eval_scratch_16")
    for pre, source in ((900, "tune"), (300, "tunegap")):  # out of order on purpose
        shutil.copytree(RESULTS / f"eval_{source}_16", tmp_path / f"eval_tune_p{pre}_16")
        shutil.copy(RESULTS / f"{source}_vs_scratch_16.json", tmp_path / f"tune_p{pre}_vs_scratch_16.json")
        (tmp_path / f"tune_p{pre}_16_summary.json").write_text(json.dumps({"steps": 1200 - pre}))
    png = tmp_path / "splits.png"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "pretrain_table.py"), str(tmp_path), "--plot", str(png)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| 16 ")]
    committed = {line.split(" | ")[1]: line for line in (RESULTS / "table.md").read_text().splitlines()
                 if line.startswith("| 16 ")}
    assert [line.split(" | ")[1] for line in table] == [
        "action-labelled only", "plain video 300 steps, then tuned 900", "plain video 900 steps, then tuned 300"]
    # each split's figures are its own evaluation's and pairing's, not another row's
    assert table[1].split(" | ")[2:] == committed["plain video (streets only), then tuned"].split(" | ")[2:]
    assert table[2].split(" | ")[2:] == committed["plain video, then tuned"].split(" | ")[2:]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
