"""training.eval.odometry: the camera path recovered from frames alone, on the stand-in's renders."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from annotate.geometry import make_pose, relative_motion
from training.eval.groundtruth import EvalSetConfig, make_eval_set, textured_share
from training.eval.odometry import estimate_path, opencv_intrinsics
from training.eval.rpe import path_rpe

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clips():
    return make_eval_set(EvalSetConfig(scenes=("room_0001", "corridor_0007"), starts=1, frames=9), workers=2)


def test_a_synthetic_turn_is_recovered_exactly_enough():
    # frames made by warping one textured render with K R K^-1: a pure 2-degree yaw per frame
    rng = np.random.default_rng(0)
    K = opencv_intrinsics(90.0, 128, 72)
    base = cv2.resize(rng.integers(0, 255, (36, 64, 3), dtype=np.uint8), (512, 288), interpolation=cv2.INTER_CUBIC)
    big = opencv_intrinsics(90.0, 512, 288)
    frames = []
    for i in range(5):
        own = Rotation.from_euler("YXZ", [2.0 * i, 0, 0], degrees=True).as_matrix()  # camera i in camera 0
        H = big @ own.T @ np.linalg.inv(big)
        frames.append(cv2.resize(cv2.warpPerspective(base, H, (512, 288)), (128, 72), interpolation=cv2.INTER_AREA))
    poses, kinds = estimate_path(np.stack(frames), K, np.eye(4))
    motion = relative_motion(poses)
    assert kinds == ["turned"] * 4
    assert np.allclose(motion[:, 3], 2.0, atol=0.15) and np.abs(motion[:, 4:]).max() < 0.15
    assert np.abs(motion[:, :3]).max() == 0.0


def test_ground_truth_renders_score_far_below_standing_still(clips):
    """The estimator's floor (its error on the true renders) against the ceiling (a still video)."""
    K = opencv_intrinsics(90.0, 128, 72)
    truth, still = [], []
    for clip in clips:
        truth.append(path_rpe(estimate_path(clip.frames, K, clip.poses[0])[0], clip.poses))
        frozen = np.repeat(clip.frames[:1], len(clip.frames), axis=0)
        still.append(path_rpe(estimate_path(frozen, K, clip.poses[0])[0], clip.poses))
    for key in ("rpe_t", "rpe_r"):
        floor, ceiling = np.mean([r[key] for r in truth]), np.mean([r[key] for r in still])
        assert floor < 0.6 * ceiling, (key, floor, ceiling)


def test_directions_of_travel_come_out_right(clips):
    K = opencv_intrinsics(90.0, 128, 72)
    axes = {"forward": (2, 1), "backward": (2, -1), "right": (0, 1), "left": (0, -1), "down": (1, 1), "up": (1, -1)}
    for clip in clips:
        if clip.script not in axes:
            continue
        estimate, _ = estimate_path(clip.frames, K, clip.poses[0])
        travel = relative_motion(estimate)[:, :3].sum(axis=0)
        column, sign = axes[clip.script]
        assert sign * travel[column] > 0.8 * np.linalg.norm(travel), (clip.scene, clip.script, travel)


def test_a_blank_view_is_lost_not_invented():
    blank = np.full((5, 72, 128, 3), 120, dtype=np.uint8)
    poses, kinds = estimate_path(blank, opencv_intrinsics(90.0, 128, 72), make_pose(np.eye(3), np.ones(3)))
    assert kinds == ["lost"] * 4 and np.allclose(poses, poses[0])
    assert textured_share(blank[0]) == 0.0


HANG_SCRIPT = """
import numpy as np, cv2
from training.eval.evaluate import path_errors
from training.eval.groundtruth import EvalSetConfig, make_eval_set


def main():
    clips = make_eval_set(EvalSetConfig(scenes=("room_0001",), starts=1, frames=9))[:4]
    cv2.GaussianBlur(np.zeros((720, 1280, 3), np.uint8), (0, 0), 2.0)  # OpenCV's thread pool runs here now
    video = np.ascontiguousarray(np.stack([c.frames for c in clips]).transpose(0, 1, 4, 2, 3))
    print("rpe_t", path_errors(video, clips, 90.0, workers=2)["rpe_t"].tolist())


if __name__ == "__main__":
    main()
"""


def test_workers_start_clean_after_this_process_ran_opencv_threads(tmp_path):
    """A pool forked from a process whose OpenCV thread pool had run (a blur before the RPE, as
    bench/odometry_blur.py does) hung for ever in its workers' first OpenCV call; OpenCV's threads are
    now stopped while the workers fork (training/eval/pool.py)."""
    script = tmp_path / "blur_then_rpe.py"
    script.write_text(HANG_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rpe_t [" in done.stdout


def test_the_pool_gives_opencvs_threads_back():
    from training.eval.pool import process_pool

    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        with process_pool(1) as pool:
            assert cv2.getNumThreads() == 1 and pool.submit(abs, -3).result() == 3
            assert pool.submit(cv2.getNumThreads).result() == 1  # a worker runs one item, on one thread
        assert cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(before)
