"""`python -m annotate` end to end, as a subprocess (formats.md section 6)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from annotate.actions import CHANNELS, ActionSpec
from annotate.annotation import read_metadata
from annotate.geometry import integrate
from annotate.readers import read_tum
from tests.conftest import REAL_TRAJECTORIES, ROOT

COLUMNS = ["frame", "time", "dt", "dx", "dy", "dz", "yaw", "pitch", "roll", *CHANNELS]


def run(*args):
    return subprocess.run([sys.executable, "-m", "annotate", *map(str, args)], capture_output=True, text=True, cwd=ROOT)


def test_annotates_a_real_file(tmp_path):
    src = REAL_TRAJECTORIES / "tum_freiburg1_xyz_rgbdslam.tum"
    out = tmp_path / "actions.parquet"
    result = run(src, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "788 poses" in result.stdout and "787 transitions" in result.stdout
    table = pd.read_parquet(out)
    assert list(table.columns) == COLUMNS
    assert len(table) == 787 and table["frame"].tolist() == list(range(787))
    motion = table[["dx", "dy", "dz", "yaw", "pitch", "roll"]].to_numpy()
    traj = read_tum(src)
    np.testing.assert_allclose(integrate(traj.poses[0], motion), traj.poses, atol=1e-10)
    actions = table[list(CHANNELS)].to_numpy()
    assert ((actions[:, :12] > 0).any(axis=1) != (actions[:, 12] == 1)).all()
    meta = read_metadata(out)
    assert meta["action_spec"] == ActionSpec().to_metadata() | {"translation": meta["action_spec"]["translation"],
                                                                "rotation": meta["action_spec"]["rotation"]}
    assert meta["action_spec"]["translation"]["centers"] == [0.4, 1.4, 3.0]
    assert meta["format"] == "tum" and meta["config"]["resample"]["fps"] is None


def test_resample_and_override(tmp_path):
    out = tmp_path / "a.parquet"
    result = run(REAL_TRAJECTORIES / "kitti_00_first1200.kitti", "--source-fps", 10, "--fps", 5,
                 "--set", "actions.translation.dead_zone=0.3", "--out", out)
    assert result.returncode == 0, result.stderr
    table = pd.read_parquet(out)
    np.testing.assert_allclose(table["dt"], 0.2, atol=1e-9)
    assert len(table) == 599
    meta = read_metadata(out)
    assert meta["config"]["resample"]["fps"] == 5.0
    assert meta["action_spec"]["translation"]["dead_zone"] == 0.3


def test_config_file(tmp_path):
    cfg = tmp_path / "annotate.yaml"
    cfg.write_text("reader:\n  source_fps: 10\nresample:\n  fps: 2\n")
    out = tmp_path / "a.parquet"
    assert run(REAL_TRAJECTORIES / "kitti_00_first1200.kitti", "--config", cfg, "--out", out).returncode == 0
    assert len(pd.read_parquet(out)) == 239


@pytest.mark.parametrize(
    "content,message",
    [
        ("frame,time,x,y,z,pitch,yaw,roll\n0,0,0,0,0,0,0,0\n1,0.1,0,0,nan,0,0,0\n", r"bad.csv:3: column 'z': 'nan' is not finite"),
        ("frame,time,x,y,z,pitch,yaw,roll\n0,0,0,0,0,0,0,0\n", r"bad.csv:2: only one pose"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(tmp_path, content, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    out = tmp_path / "a.parquet"
    result = run(bad, "--out", out)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert pytest.importorskip("re").search(message, result.stderr)
    assert not out.exists()


def test_bad_config_exits_2(tmp_path):
    result = run(REAL_TRAJECTORIES / "tum_freiburg1_xyz_rgbdslam.tum", "--set", "resample.fsp=3", "--out", tmp_path / "a.parquet")
    assert result.returncode == 2 and "unknown key(s) resample.fsp" in result.stderr
