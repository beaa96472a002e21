"""Publishing a build to a URI through pyarrow.fs (pipelines/publish.py): a location that cannot be
written stops the build before any capture, naming it; a writable one gets the shards, manifest and
reports byte for byte (tests/test_build.py, on its build)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from pipelines.publish import PublishError, check_publish
from tests.test_build import ROOT, SMALL


def test_the_probe_accepts_a_writable_uri_and_names_one_that_is_not(tmp_path):
    check_publish(f"file://{tmp_path}/bucket/run1")
    assert list((tmp_path / "bucket" / "run1").iterdir()) == []  # the probe cleaned up
    (tmp_path / "file").write_text("x")
    with pytest.raises(PublishError, match=f"{tmp_path}/file/run"):
        check_publish(f"file://{tmp_path}/file/run")  # under a file: nothing can be created
    with pytest.raises(PublishError, match="not a location"):
        check_publish("nosuchscheme://bucket/x")


def test_a_build_that_cannot_publish_stops_before_capture(tmp_path):
    (tmp_path / "file").write_text("x")
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({**SMALL, "publish": f"file://{tmp_path}/file/run"}))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(ROOT / "pipelines" / "build_dataset.py"), "--config", str(config),
                           "--out", str(out), "--num-cpus", "2", "--no-progress"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and "publish:" in done.stderr and f"{tmp_path}/file/run" in done.stderr, done.stderr
    assert not (out / "staging").exists() or not list((out / "staging").glob("*/*/meta.json"))
