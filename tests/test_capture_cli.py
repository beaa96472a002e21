"""`python -m capture` end to end: planner + replay + ingest into staging, one report row each."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import yaml

from annotate.readers import write_ue_csv
from tests.capture_helpers import walk
from tests.conftest import ROOT
from tests.test_replay_ingest import _sequence


def test_capture_cli_accounts_for_every_trajectory(tmp_path):
    t, loc, rot = walk(8)
    write_ue_csv(tmp_path / "log.csv", t, loc, rot)
    (tmp_path / "broken.csv").write_text("frame,time,x\n0,0,1\n")
    _sequence(tmp_path / "footage", "hall", "walk")
    config = {
        "capture": {"standin": {"instances": 1, "scene": "room-1"}, "camera": {"width": 32, "height": 24},
                    "client": {"warmup_frames": 0}},
        "sources": {
            "planner": {"scenes": ["street-4"], "trajectories_per_scene": 1, "frames": 10},
            "replay": {"sources": [{"path": str(tmp_path / "log.csv"), "scene": "room-1"},
                                   {"path": str(tmp_path / "broken.csv"), "scene": "room-1"}]},
            "ingest": {"roots": [str(tmp_path / "footage")]},
        },
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "staging"
    proc = subprocess.run([sys.executable, "-m", "capture", "--config", str(tmp_path / "run.yaml"), "--out", str(out),
                           "--num-cpus", "2", "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 trajectories: 3 captured, 0 cached, 1 failed; 24 frames" in proc.stdout
    assert "failed: room_0001/broken: " in proc.stderr and "broken.csv:1: missing column(s) y, z, pitch" in proc.stderr
    report = pd.read_parquet(out / "capture_report.parquet").set_index("trajectory")
    assert report.loc["log", "status"] == "captured" and report.loc["plan0000", "scene"] == "street_0004"
    assert report.loc["walk", "endpoint"] == "ingest" and report.loc["broken", "status"] == "failed"
    assert (out / "room_0001" / "log" / "frames" / "000007.png").exists()
    assert (out / "capture_config.yaml").exists()
    bad = subprocess.run([sys.executable, "-m", "capture", "--out", str(out), "--set", "capture.camera.widht=3"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "capture.camera.widht" in bad.stderr
