"""The packages type-check (annotations are inline; mypy keeps them honest)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PACKAGES = ["common", "annotate", "capture", "filter", "augment", "datasets", "training", "pipelines"]


@pytest.mark.slow
def test_mypy_is_clean():
    if shutil.which("mypy") is None and subprocess.run([sys.executable, "-m", "mypy", "--version"]).returncode:
        pytest.fail("mypy is not installed: pip install -e '.[dev]'")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", *PACKAGES], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
