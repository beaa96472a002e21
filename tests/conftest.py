"""Shared test helpers: the real trajectories in tests/data (see its README) and small pose generators."""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

ROOT = pathlib.Path(__file__).resolve().parents[1]
REAL_TRAJECTORIES = ROOT / "tests" / "data" / "real_trajectories"

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def real_trajectory_files() -> list[pathlib.Path]:
    """Every pose file in tests/data/real_trajectories. Fails loudly if absent."""
    files = sorted(REAL_TRAJECTORIES.iterdir())
    assert files, f"no pose files in {REAL_TRAJECTORIES}"
    return files


@pytest.fixture
def write(tmp_path):
    """write(name, text) -> path of a new file under tmp_path."""

    def _write(name: str, text: str) -> pathlib.Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


def random_poses(rng: np.random.Generator, n: int, step_deg: float = 20.0, step_m: float = 1.0) -> np.ndarray:
    """A random walk of camera-to-world poses with per-step rotations up to ~step_deg."""
    from scipy.spatial.transform import Rotation

    from annotate.geometry import make_pose

    steps = Rotation.from_rotvec(rng.normal(size=(n, 3)) * np.deg2rad(step_deg) / np.sqrt(3))
    rot = Rotation.random(rng=rng)
    rotations = []
    for step in steps:
        rot = rot * step
        rotations.append(rot.as_matrix())
    positions = np.cumsum(rng.normal(size=(n, 3)) * step_m, axis=0)
    return make_pose(np.array(rotations), positions)


@pytest.fixture(scope="session")
def user_tree(tmp_path_factory) -> pathlib.Path:
    """A working directory laid out like the checkout (its top-level entries linked in, out/ and
    runs/ left out), where documented commands run as a user runs them, from the root, without
    touching the checkout's own out/."""
    tree = tmp_path_factory.mktemp("user_tree")
    for entry in ROOT.iterdir():
        if entry.name not in ("out", "runs", ".git") and not entry.name.startswith(".ci-venv"):
            (tree / entry.name).symlink_to(entry)
    return tree


@pytest.fixture(scope="session")
def demo_build(user_tree):
    """README's command 1 (its build part): `python pipelines/build_dataset.py`, as it is, in the
    user tree. Returns (out folder, the finished process with its stdout and stderr)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    done = subprocess.run([sys.executable, "pipelines/build_dataset.py"], cwd=user_tree, env=env,
                          capture_output=True, text=True, timeout=900)
    return user_tree / "out" / "demo", done
