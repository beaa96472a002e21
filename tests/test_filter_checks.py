"""Pose and image checks: known answers, invariances (hypothesis) and real trajectories."""

from __future__ import annotations


import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from annotate.geometry import integrate, make_pose
from annotate.readers import ReaderConfig, read_trajectory
from annotate.ue import fov_to_intrinsics, ue_to_pose
from capture.pose_faults import inject_pose_fault
from filter.config import ImageChecks, PoseChecks
from filter.image_checks import FrameScorer, image_flags, image_scores, predicted_shift, shrink
from filter.pose_checks import pose_flags, pose_scores
from filter.reasons import Reason
from filter.stage import FilterError, depth_medians
from tests.conftest import REAL_TRAJECTORIES as REAL
from tests.filter_helpers import planned

FPS = 30.0


def walk(n: int = 90, speed: float = 1.2, turn: float = 20.0) -> tuple[np.ndarray, np.ndarray]:
    """Constant forward speed (m/s) and yaw rate (deg/s)."""
    motion = np.zeros((n - 1, 6))
    motion[:, 2] = speed / FPS
    motion[:, 3] = turn / FPS
    level = ue_to_pose(np.zeros(3), np.zeros(3))  # looking along UE +X, level
    return integrate(level, motion), np.arange(n) / FPS


def flagged(poses, times, config=PoseChecks()) -> dict[Reason, np.ndarray]:
    return pose_flags(pose_scores(poses, times, config), config)


def test_constant_motion_known_answers_and_no_flags():
    poses, times = walk()
    s = pose_scores(poses, times, PoseChecks())
    assert np.isnan(s["speed"][0]) and np.isnan(s["accel"][:2]).all()
    np.testing.assert_allclose(s["speed"][1:], 1.2, rtol=1e-9)
    np.testing.assert_allclose(s["angular_speed"][1:], 20.0, rtol=1e-9)
    np.testing.assert_allclose(s["accel"][2:], 2 * 1.2 * np.sin(np.deg2rad(20 / FPS) / 2) * FPS, rtol=1e-6)
    assert np.nanmax(s["jitter_translation"]) < 1e-3 and np.nanmax(s["jitter_rotation"]) < 1e-6  # circle vs a quadratic fit
    np.testing.assert_allclose(s["gap_ratio"][1:], 1.0)
    assert not any(flag.any() for flag in flagged(poses, times).values())


@pytest.mark.parametrize("kind,magnitude,reason", [
    ("teleport", 1.0, Reason.TELEPORT), ("time_gap", 2, Reason.TIME_GAP), ("invalid_pose", 90.0, Reason.INVALID_POSE),
    ("abrupt_translation", 3.0, Reason.ABRUPT_TRANSLATION), ("abrupt_rotation", 200.0, Reason.ABRUPT_ROTATION),
])
def test_pose_fault_flags_its_frames(kind, magnitude, reason):
    poses, times = walk()
    poses, times, frames = inject_pose_fault(poses, times, kind, magnitude, 40, np.random.default_rng(0))
    flags = flagged(poses, times)
    assert flags[reason][frames].all()
    others = np.ones(len(poses), bool)
    for f in frames:
        others[max(0, f - 1):f + 2] = False  # a transition fault may show on its neighbour too
    assert not flags[reason][others].any()


def test_jitter_is_flagged_where_the_shake_is():
    poses, times = walk(120)
    poses, times, frames = inject_pose_fault(poses, times, "jitter_translation", 4.0, 40, np.random.default_rng(1))
    flags = flagged(poses, times)[Reason.JITTER]
    assert flags[frames].mean() > 0.95
    assert not flags[:30].any() and not flags[85:].any()


def test_non_finite_pose_is_invalid_and_nothing_else_breaks():
    poses, times = walk(30)
    poses[10, 0, 3] = np.nan
    flags = flagged(poses, times)
    assert flags[Reason.INVALID_POSE][10] and flags[Reason.INVALID_POSE].sum() == 1


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_pose_scores_do_not_depend_on_the_world_frame(seed):
    """A rigid change of world coordinates moves no score but pitch/roll (speeds, jitter, gaps, steps)."""
    rng = np.random.default_rng(seed)
    knots = rng.normal(size=(6, 6)) * [0.3, 0.1, 1.0, 30.0, 10.0, 3.0]
    motion = np.stack([np.interp(np.arange(59) / 10, np.arange(6), knots[:, k]) for k in range(6)], axis=1) / FPS
    poses = integrate(np.eye(4), motion)
    times = np.cumsum(rng.uniform(0.03, 0.036, 60))
    world = make_pose(Rotation.random(random_state=seed).as_matrix(), rng.normal(size=3) * 10)
    a = pose_scores(poses, times, PoseChecks())
    b = pose_scores(world @ poses, times, PoseChecks())
    for name in a:
        if name not in ("pitch", "roll"):
            np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-8, err_msg=name)


def _jitter(poses, times, q: float) -> tuple[float, float]:
    s = pose_scores(poses, times, PoseChecks())
    return float(np.nanpercentile(s["jitter_rotation"], q)), float(np.nanpercentile(s["jitter_translation"], q))


def test_real_hand_held_and_drone_paths_rank_above_smooth_synthetic_ones():
    """The typical (median) frame of a real hand-held or drone path shakes more than the 90th
    percentile frame of a planned path; rotation is compared (scale-free), translation by medians."""
    rough = []
    for name in ("tum_freiburg1_xyz_rgbdslam.tum", "tum_fr2_desk_orb_keyframes.tum", "euroc_v102.tum"):
        traj = read_trajectory(REAL / name, config=ReaderConfig(duplicate_times="keep_first"))
        rough.append(_jitter(traj.poses, traj.timestamps, 50))
    paths = [planned(scene, 300, seed) for scene, seed in (("room-1", 1), ("street-4", 2))]
    smooth_p90 = [_jitter(*path, 90) for path in paths]
    smooth_median = [_jitter(*path, 50) for path in paths]
    assert min(r for r, _ in rough) > 2 * max(r for r, _ in smooth_p90)
    assert min(t for _, t in rough) > 5 * max(t for _, t in smooth_median)


# -- images ------------------------------------------------------------------------------------
def texture(seed: int = 0, width: int = 256, height: int = 144) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.uniform(40, 220, (height // 4, width // 4, 3)).astype(np.uint8), (width, height),
                      interpolation=cv2.INTER_CUBIC)
    return cv2.add(base, rng.integers(0, 30, base.shape, dtype=np.uint8))


def score(frames: list[np.ndarray], poses: np.ndarray | None = None) -> tuple[dict, dict]:
    h, w = frames[0].shape[:2]
    scorer = FrameScorer(ImageChecks(), w, h)
    for frame in frames:
        scorer.add(frame)
    n = len(frames)
    poses = np.stack([make_pose(np.eye(3), [0.05 * i, 0, 0]) for i in range(n)]) if poses is None else poses
    s = image_scores(scorer.raw(), poses, FPS, fov_to_intrinsics(90, w, h), w, None, ImageChecks())
    step = np.concatenate([[np.nan], np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)])
    return s, image_flags(s, step, np.zeros(n), ImageChecks())


def shifted_sequence(n: int = 15, step: int = 1, width: int = 256, height: int = 144) -> list[np.ndarray]:
    big = texture(0, width + step * n, height)
    return [big[:, step * i:step * i + width].copy() for i in range(n)]


def test_clean_sequence_raises_no_image_flag():
    _, flags = score(shifted_sequence())
    assert not any(f.any() for r, f in flags.items() if r is not Reason.MOTION_MISMATCH)


@pytest.mark.parametrize("fault,reason", [
    (lambda f: np.zeros_like(f), Reason.BLACK),
    (lambda f: np.full_like(f, 128), Reason.BLACK),  # blank
    (lambda f: cv2.convertScaleAbs(f, alpha=3.0), Reason.OVEREXPOSED),
    (lambda f: cv2.GaussianBlur(f, (0, 0), 1.5 * f.shape[1] / 256), Reason.BLUR),  # 1.5 px on the 256-px copy
    (lambda f: cv2.convertScaleAbs(f, alpha=0.8), Reason.FLICKER),
])
@pytest.mark.parametrize("size", [(256, 144), (640, 480)])  # scored at full size, and on a shrunk copy
def test_single_frame_faults(fault, reason, size):
    frames = shifted_sequence(width=size[0], height=size[1])
    frames[7] = fault(frames[7])
    _, flags = score(frames)
    assert flags[reason][7]
    assert not flags[reason][:6].any() and not flags[reason][9:].any()


def test_phase_correlation_on_frames_scored_downscaled_is_in_full_size_px():
    frames = shifted_sequence(6, step=10, width=640, height=480)  # 2 px on the 128-px flow copy
    s, flags = score(frames)
    np.testing.assert_allclose(s["shift_x"][1:], -10.0, atol=0.35 * 640 / 256)
    np.testing.assert_allclose(s["shift_y"][1:], 0.0, atol=0.35 * 640 / 256)
    assert not any(f.any() for r, f in flags.items() if r is not Reason.MOTION_MISMATCH)


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 700), st.integers(8, 500), st.floats(0.05, 1.0), st.floats(0.05, 1.0), st.sampled_from([1, 3]),
       st.sampled_from([np.uint8, np.float32]), st.integers(0, 255))
def test_shrink_gives_the_exact_size_and_keeps_a_flat_image_flat(width, height, fx, fy, channels, dtype, value):
    shape = (height, width) if channels == 1 else (height, width, channels)
    size = (max(1, round(width * fx)), max(1, round(height * fy)))
    out = shrink(np.full(shape, value, dtype), size)
    assert out.shape == (size[1], size[0], *shape[2:]) and out.dtype == dtype
    np.testing.assert_allclose(out, value, rtol=1e-6)


def test_shrink_known_answers():
    image = np.arange(4 * 6 * 3, dtype=np.float32).reshape(4, 6, 3)
    expected = image.reshape(2, 2, 3, 2, 3).mean(axis=(1, 3))  # the mean of each 2x2 block
    np.testing.assert_allclose(shrink(image, (3, 2)), expected)
    frame = texture(1)  # an exact halving is INTER_AREA's own result, bit for bit (the 256 -> 128 flow copy)
    assert np.array_equal(shrink(frame, (128, 72)), cv2.resize(frame, (128, 72), interpolation=cv2.INTER_AREA))
    odd = texture(2, 257, 145)  # odd sizes: the last row and column are left out of the halving
    assert np.array_equal(shrink(odd, (128, 72)), cv2.resize(odd[:144, :256], (128, 72), interpolation=cv2.INTER_AREA))
    with pytest.raises(ValueError, match="cannot shrink"):
        shrink(frame, (300, 100))


def test_shrink_does_not_alias_fine_detail():
    """A one-pixel checkerboard (the finest detail a frame holds) shrunk 2.5x averages out to grey;
    sampled without the halvings it comes out as a strong pattern (the aliasing the checks would
    read as sharpness)."""
    board = ((np.indices((480, 640)).sum(axis=0) % 2) * 255).astype(np.uint8)
    assert shrink(board, (256, 192)).std() < 3
    assert cv2.resize(board, (256, 192), interpolation=cv2.INTER_LINEAR).std() > 30


def test_frozen_frame_needs_pose_motion():
    frames = shifted_sequence()
    frames[7] = frames[6].copy()
    _, flags = score(frames)
    assert flags[Reason.FROZEN][7] and flags[Reason.FROZEN].sum() == 1
    still = np.stack([np.eye(4)] * len(frames))
    _, flags = score(frames, still)
    assert not flags[Reason.FROZEN].any()


def test_glitch_band_is_a_histogram_jump():
    frames = shifted_sequence()
    rng = np.random.default_rng(3)
    blocks = rng.integers(0, 256, (5, 16, 3), dtype=np.uint8)
    frames[7][40:100] = np.repeat(np.repeat(blocks, 12, axis=0), 16, axis=1)[:60]
    _, flags = score(frames)
    assert flags[Reason.GLITCH][7]


def test_phase_correlation_measures_the_image_shift():
    frames = shifted_sequence(4, step=4)  # content moves 4 px left per frame (2 px on the 128-px flow copy)
    s, _ = score(frames)
    np.testing.assert_allclose(s["shift_x"][1:], -4.0, atol=0.35)  # 0.35 px = 0.14% of the width
    np.testing.assert_allclose(s["shift_y"][1:], 0.0, atol=0.35)


def test_predicted_shift_known_answers():
    K = fov_to_intrinsics(90, 256, 144)  # fx = 128
    yaw = ue_to_pose(np.zeros((2, 3)), np.array([[0, 0, 0], [0, 5.0, 0]]))  # turn right 5 deg
    np.testing.assert_allclose(predicted_shift(yaw, K, np.array([4.0])), [[-128 * np.tan(np.deg2rad(5)), 0]], atol=1e-9)
    right = ue_to_pose(np.array([[0, 0, 0], [0, 10.0, 0]]), np.zeros((2, 3)))  # 10 cm right, depth 2 m
    np.testing.assert_allclose(predicted_shift(right, K, np.array([2.0])), [[-128 * 0.1 / 2.0, 0]], atol=1e-9)


def test_depth_medians_known_answers_and_bad_files(tmp_path):
    folder = tmp_path / "t0"
    (folder / "depth").mkdir(parents=True)
    near = np.full((480, 640), 2.0, np.float32)
    near[:, 384:] = 6.0  # 60% of the pixels at 2 m, 40% at 6 m
    near[::7, ::5] = np.nan  # invalid pixels (not finite, <= 0) are left out
    near[100:110] = 0.0
    far = np.full((480, 640), 9.0, np.float32)
    far[:300] = 4.0  # 300 of 480 rows at 4 m
    blank = np.full((480, 640), np.inf, np.float32)  # nothing valid: the trajectory's median
    for i, d in enumerate([near, far, blank]):
        np.save(folder / "depth" / f"{i:06d}.npy", d)
    medians = depth_medians(folder, 3, 3.0, 256)
    np.testing.assert_array_equal(medians, [2.0, 4.0, 3.0])  # the blank frame: the median of 2 and 4
    assert depth_medians(folder, 4, 3.0, 256) is None  # a file missing: not captured
    np.save(folder / "depth" / "000001.npy", np.zeros(5, np.float32))
    with pytest.raises(FilterError, match="000001.npy: depth map must be 2-D"):
        depth_medians(folder, 3, 3.0, 256)
    (folder / "depth" / "000002.npy").write_bytes(b"not an npy file")
    np.save(folder / "depth" / "000001.npy", far)
    with pytest.raises(FilterError, match="000002.npy: unreadable depth map"):
        depth_medians(folder, 3, 3.0, 256)
