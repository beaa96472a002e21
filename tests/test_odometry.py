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
from capture.standin.render import Renderer
from capture.standin.scene import make_scene
from training.eval.groundtruth import EvalSetConfig, make_eval_set, shrunk_translation, textured_share
from training.eval.odometry import TRACKERS, OdometryConfig, estimate_path, opencv_intrinsics, two_view
from training.eval.rpe import path_rpe

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clips():
    return make_eval_set(EvalSetConfig(scenes=("room_0001", "corridor_0007"), starts=1, frames=9), workers=2).clips


@pytest.mark.parametrize("tracker", TRACKERS)
def test_a_synthetic_turn_is_recovered_exactly_enough(tracker):
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
    path = estimate_path(np.stack(frames), K, np.eye(4), OdometryConfig(tracker=tracker))
    motion = relative_motion(path.poses)
    assert path.kinds == ["turned"] * 4 and path.parallax_px[0] < 0.3  # a turn leaves no parallax
    assert np.allclose(motion[:, 3], 2.0, atol=0.15) and np.abs(motion[:, 4:]).max() < 0.15
    assert np.abs(motion[:, :3]).max() == 0.0


@pytest.mark.parametrize("tracker", TRACKERS)
def test_ground_truth_renders_score_far_below_standing_still(clips, tracker):
    """The estimator's floor (its error on the true renders) against the ceiling (a still video)."""
    K, cfg = opencv_intrinsics(90.0, 128, 72), OdometryConfig(tracker=tracker)
    truth, still = [], []
    for clip in clips:
        truth.append(path_rpe(estimate_path(clip.frames, K, clip.poses[0], cfg).poses, clip.poses))
        frozen = np.repeat(clip.frames[:1], len(clip.frames), axis=0)
        still.append(path_rpe(estimate_path(frozen, K, clip.poses[0], cfg).poses, clip.poses))
    for key in ("rpe_t", "rpe_r"):
        floor, ceiling = np.mean([r[key] for r in truth]), np.mean([r[key] for r in still])
        assert floor < 0.6 * ceiling, (key, floor, ceiling)


@pytest.mark.parametrize("tracker", TRACKERS)
def test_directions_of_travel_come_out_right(clips, tracker):
    K, cfg = opencv_intrinsics(90.0, 128, 72), OdometryConfig(tracker=tracker)
    axes = {"forward": (2, 1), "backward": (2, -1), "right": (0, 1), "left": (0, -1), "down": (1, 1), "up": (1, -1)}
    for clip in clips:
        if clip.script not in axes:
            continue
        travel = relative_motion(estimate_path(clip.frames, K, clip.poses[0], cfg).poses)[:, :3].sum(axis=0)
        column, sign = axes[clip.script]
        assert sign * travel[column] > 0.8 * np.linalg.norm(travel), (clip.scene, clip.script, travel)


@pytest.mark.parametrize("tracker", TRACKERS)
def test_a_blank_view_is_lost_not_invented(tracker):
    blank = np.full((5, 72, 128, 3), 120, dtype=np.uint8)
    path = estimate_path(blank, opencv_intrinsics(90.0, 128, 72), make_pose(np.eye(3), np.ones(3)),
                         OdometryConfig(tracker=tracker))
    assert path.kinds == ["lost"] * 4 and np.allclose(path.poses, path.poses[0])
    assert np.isnan(path.parallax_px).all()  # nothing measured, not "no parallax"
    assert textured_share(blank[0]) == 0.0


def test_parallax_measures_how_far_the_camera_translated_even_below_what_rpe_reads(clips):
    """The same forward and sideways walks rendered at 1, 1/2, 1/4 and 1/10 of their translation: the
    parallax falls with the translation, a still video has none, and where the estimator reads a
    walk as a turn only (RPE-t then equals a still video's) its parallax still shows the motion."""
    K, cfg = opencv_intrinsics(90.0, 128, 72), OdometryConfig()
    scales = (1.0, 0.5, 0.25, 0.1)
    walks = [c for c in clips if c.script in ("forward", "backward", "left", "right")]
    assert len(walks) == 8
    parallax = np.zeros((len(walks), len(scales)))
    turned = np.zeros_like(parallax)
    renderers = {scene: Renderer(make_scene(scene)) for scene in {c.scene for c in walks}}
    for i, clip in enumerate(walks):
        for j, scale in enumerate(scales):
            poses = shrunk_translation(clip.poses, scale)
            frames = np.stack([renderers[clip.scene].render(p, 128, 72, 90.0).lit for p in poses])
            path = estimate_path(frames, K, poses[0], cfg)
            parallax[i, j] = path.parallax_px[0]
            turned[i, j] = path.kinds.count("turned") / len(path.kinds)
        frozen = estimate_path(np.repeat(clip.frames[:1], len(clip.frames), axis=0), K, clip.poses[0], cfg)
        assert frozen.parallax_px[0] < 0.05 and frozen.kinds == ["turned"] * 8
    means = parallax.mean(axis=0)
    assert (np.diff(means) < 0).all() and means[0] > 2.0, means  # measured: 4.7, 2.5, 1.6, 0.6
    assert (parallax[:, 0] > 2 * parallax[:, 3]).all(), parallax
    assert turned[:, 0].max() == 0.0 and turned[:, 3].mean() >= 0.5, turned  # at 1/10 most read as turns
    assert means[3] > 0.2  # ... yet their parallax is not a still video's


def test_dense_flow_reads_motion_through_blur_that_loses_corners(clips):
    """Why dense flow is the default: a generated video is softer than a render. On renders blurred by
    4 px the corner tracker's error reaches what a still video scores; dense flow stays well under it
    (bench/odometry_blur.py measures this on the 504 held-out clips: 0.027 m against 0.048)."""
    K = opencv_intrinsics(90.0, 128, 72)
    rpe: dict[str, list[float]] = {tracker: [] for tracker in TRACKERS}
    still = []
    for clip in clips:
        soft = np.stack([cv2.GaussianBlur(f, (0, 0), 4.0) for f in clip.frames])
        for tracker in TRACKERS:
            estimate = estimate_path(soft, K, clip.poses[0], OdometryConfig(tracker=tracker))
            rpe[tracker].append(path_rpe(estimate.poses, clip.poses)["rpe_t"])
        still.append(path_rpe(np.repeat(clip.poses[:1], len(clip.poses), axis=0), clip.poses)["rpe_t"])
    dense, corners, ceiling = np.mean(rpe["dense"]), np.mean(rpe["corners"]), np.mean(still)
    assert dense < 0.75 * ceiling and dense < 0.8 * corners, (dense, corners, ceiling)


def test_an_unknown_tracker_is_named():
    with pytest.raises(ValueError, match="'sift'.*dense, corners"):
        OdometryConfig(tracker="sift")


# 36 dense-flow tracks (pixel, flow) on which OpenCV's five-point solver fails (its polynomial has no
# leading term) at every RANSAC seed; found on a blurred held-out clip
DEGENERATE = np.array([
    (34, 38, -0.244, 3.177), (42, 38, 0.059, 3.311), (46, 38, 0.044, 3.942), (50, 38, 0.426, 4.225),
    (34, 42, -2.157, 4.575), (38, 42, -0.980, 4.579), (42, 42, -0.212, 4.697), (46, 42, -0.608, 4.896),
    (50, 42, -0.875, 5.158), (22, 46, -0.360, 15.736), (26, 46, -1.556, 15.051), (30, 46, -5.950, 12.844),
    (34, 46, -8.927, 9.168), (38, 46, -4.083, 6.471), (54, 46, -0.298, 5.057), (10, 50, 0.157, 10.281),
    (14, 50, 0.525, 13.635), (18, 50, -0.032, 15.439), (22, 50, 0.422, 16.178), (26, 50, 0.681, 16.074),
    (30, 50, 0.167, 15.155), (34, 50, -2.107, 12.407), (38, 50, -4.287, 8.750), (2, 54, -0.840, 9.765),
    (6, 54, -0.141, 9.313), (10, 54, 0.542, 10.018), (14, 54, 0.069, 13.494), (18, 54, 0.437, 15.733),
    (22, 54, 1.059, 15.628), (26, 54, 1.139, 15.697), (30, 54, 0.849, 15.629), (34, 54, 0.759, 15.419),
    (38, 54, -0.488, 11.395), (42, 54, -1.814, 7.762), (6, 58, -0.284, 11.743), (110, 58, 2.717, 8.564)])


def test_a_degenerate_essential_matrix_sample_costs_that_start_not_the_evaluation():
    K = opencv_intrinsics(90.0, 128, 72)
    p0 = DEGENERATE[:, :2].copy()
    p1 = p0 + DEGENERATE[:, 2:]
    with pytest.raises(cv2.error, match="solvePoly"):  # what killed a whole evaluation before
        cv2.findEssentialMat(p0, p1, K, method=cv2.RANSAC, prob=0.999, threshold=1.0)
    step = two_view(p0, p1, K, OdometryConfig())
    assert step.kind == "moved" and np.isclose(np.linalg.norm(step.direction), 1.0)


HANG_SCRIPT = """
import numpy as np, cv2
from training.eval.evaluate import path_errors
from training.eval.groundtruth import EvalSetConfig, make_eval_set


def main():
    clips = make_eval_set(EvalSetConfig(scenes=("room_0001",), starts=1, frames=9)).clips[:4]
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
