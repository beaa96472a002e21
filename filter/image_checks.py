"""Per-frame checks on images, streamed one frame at a time (only the previous frame is held).

`FrameScorer.add(bgr)` measures each frame on a grey copy at most `work_width` wide; `image_scores`
then adds what needs the whole trajectory and the poses; `image_flags` applies the thresholds.

Scores (per frame, all kept in the report):
    luma_mean, luma_std   0-255   Rec.601 luma of the working copy
    clip_high, clip_low   0-1     fraction of pixels with luma >= 250 / <= 5
    sharpness             -       variance of the Laplacian (fine detail)
    detail                -       median over `blur_window_s` of the half-size Laplacian variance: how much
                                  structure the scene around the frame has (too little: blur is not judged)
    sharpness_rel         -       sharpness over its median in the `blur_window_s` around the frame: the
                                  trajectory's own sharpness there (a blur of up to half the window stands out)
    diff_prev             0-255   mean |luma change| from the previous frame
    diff_rel              -       diff_prev over its median in the `blur_window_s` around the frame
    flicker               0-1     brightness spike: |L_t - median of L over t-2..t+2| / that median
                                  (a change lasting 1-2 frames; lasting steps score 0)
    hist_distance         0-1     Bhattacharyya distance of the hue-saturation histogram to the previous
                                  frame (a glitch flags the frame and the one after it; a cut, the first new frame)
    shift_x, shift_y      px      global image motion from the previous frame (phase correlation on a copy
                                  `flow_width` wide, in full-size px)
    shift_response        0-1     the phase-correlation peak (how much to trust the shift)
    shift_error           0-1     |measured - pose-predicted shift| / image width
    depth_median          m       the depth used for the translation part of the prediction
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import median_filter

from annotate.geometry import relative_rotations
from filter.config import ImageChecks
from filter.reasons import Reason

IMAGE_SCORES = ("luma_mean", "luma_std", "clip_high", "clip_low", "sharpness", "detail", "sharpness_rel", "diff_prev",
                "diff_rel", "flicker", "hist_distance", "shift_x", "shift_y", "shift_response", "shift_error",
                "depth_median")
_RAW = ("luma_mean", "luma_std", "clip_high", "clip_low", "sharpness", "detail", "diff_prev", "hist_distance", "shift_x",
        "shift_y", "shift_response")


_LEVELS = np.arange(256, dtype=np.float64)
_LEVELS_SQ = _LEVELS**2


class FrameScorer:
    """Measures frames of one trajectory in order; holds only the previous frame's working copy."""

    def __init__(self, config: ImageChecks, width: int, height: int):
        self.width, self.height = width, height
        self.scale = min(1.0, config.work_width / width)
        self.size = (max(8, round(width * self.scale)), max(8, round(height * self.scale)))
        # image motion is measured on a smaller copy still (phase correlation is the costliest check)
        self.flow_scale = min(1.0, config.flow_width / self.size[0])
        self.flow_size = (max(8, round(self.size[0] * self.flow_scale)), max(8, round(self.size[1] * self.flow_scale)))
        self.window = cv2.createHanningWindow(self.flow_size, cv2.CV_32F)
        self.rows: list[tuple[float, ...]] = []
        self._prev_grey: np.ndarray | None = None
        self._prev_windowed: np.ndarray | None = None
        self._prev_hist: np.ndarray | None = None

    def add(self, bgr: np.ndarray, where: str = "frame") -> None:
        if bgr.shape[:2] != (self.height, self.width):
            raise ValueError(f"{where}: image is {bgr.shape[1]}x{bgr.shape[0]}, expected {self.width}x{self.height}")
        small = bgr if self.scale == 1.0 else shrink(bgr, self.size)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [18, 8], [0, 180, 0, 256])
        cv2.normalize(hist, hist, 1.0, 0.0, cv2.NORM_L1)
        # luma mean, std and clipped shares from one 256-bin histogram (exact: the values are integers)
        counts = cv2.calcHist([grey], [0], None, [256], [0, 256]).reshape(-1).astype(np.float64)
        n = grey.size
        mean = float(counts @ _LEVELS) / n
        std = max(float(counts @ _LEVELS_SQ) / n - mean * mean, 0.0) ** 0.5
        high = float(counts[250:].sum()) / n
        low = float(counts[:6].sum()) / n
        sharp = _variance(cv2.Laplacian(grey, cv2.CV_32F))
        detail = _variance(cv2.Laplacian(cv2.pyrDown(grey), cv2.CV_32F))
        # windowed here, not by phaseCorrelate: OpenCV 5.0's phaseCorrelate(a, b, window) windows a and b in place
        grey_f = grey.astype(np.float32)
        flow = grey_f if self.flow_scale == 1.0 else shrink(grey_f, self.flow_size)
        windowed = flow * self.window
        if self._prev_grey is None or self._prev_hist is None or self._prev_windowed is None:
            diff = hist_d = dx = dy = response = np.nan
        else:
            diff = float(cv2.mean(cv2.absdiff(grey, self._prev_grey))[0])
            hist_d = float(cv2.compareHist(self._prev_hist, hist, cv2.HISTCMP_BHATTACHARYYA))
            (dx, dy), response = cv2.phaseCorrelate(self._prev_windowed, windowed)
            dx, dy = dx / (self.scale * self.flow_scale), dy / (self.scale * self.flow_scale)
        self.rows.append((mean, std, high, low, sharp, detail, diff, hist_d, dx, dy, response))
        self._prev_grey, self._prev_windowed, self._prev_hist = grey, windowed, hist

    def raw(self) -> dict[str, np.ndarray]:
        table = np.array(self.rows, dtype=np.float64).reshape(-1, len(_RAW))
        return {name: table[:, i] for i, name in enumerate(_RAW)}


def shrink(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` downscaled to `size` (width, height): halved with INTER_AREA while at least twice
    as large in both directions, then resampled with INTER_LINEAR to the exact size. OpenCV's
    INTER_AREA has a fast path only at exactly half size: at a fractional scale it is several times
    slower (640x480 BGR to 256x192 on one core: 1.7 ms, against 0.11 ms for 320x240 and 0.28 ms
    for this), and after the halvings the last step is under 2x, where bilinear sampling aliases
    little. An exact halving (256 to 128 wide) is one INTER_AREA step."""
    width, height = size
    if width > image.shape[1] or height > image.shape[0]:
        raise ValueError(f"shrink: {image.shape[1]}x{image.shape[0]} cannot shrink to {width}x{height}")
    while image.shape[1] >= 2 * width and image.shape[0] >= 2 * height:
        half = (image.shape[1] // 2, image.shape[0] // 2)
        # an odd last row or column is left out: the exact 2x keeps the fast path (1 px in hundreds)
        image = cv2.resize(image[:2 * half[1], :2 * half[0]], half, interpolation=cv2.INTER_AREA)
    if (image.shape[1], image.shape[0]) != (width, height):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return image


def _variance(image: np.ndarray) -> float:
    """Population variance of all pixels (OpenCV's pass in float64, about 1.7x faster than numpy's .var())."""
    return float(cv2.meanStdDev(image)[1][0, 0]) ** 2


def image_scores(raw: dict[str, np.ndarray], poses: np.ndarray, fps: float, intrinsics: np.ndarray, width: int,
                 depth_median: np.ndarray | None, config: ImageChecks) -> dict[str, np.ndarray]:
    """Add the trajectory-level scores to `FrameScorer.raw()`. intrinsics: (3, 3) K at full size;
    depth_median: (N,) median depth (m) of each frame, or None to use `assumed_depth_m`."""
    n = len(raw["luma_mean"])
    out = {name: np.full(n, np.nan) for name in IMAGE_SCORES}
    out.update(raw)
    window = max(5, round(config.blur_window_s * fps) // 2 * 2 + 1)
    reference = _local_median(raw["sharpness"], window)
    out["sharpness_rel"] = raw["sharpness"] / np.maximum(reference, 1e-6)
    out["detail"] = _local_median(raw["detail"], window)
    out["diff_rel"] = raw["diff_prev"] / np.maximum(_local_median(raw["diff_prev"], window), 1e-6)
    out["flicker"] = _spike(raw["luma_mean"])
    depth = np.full(n, config.assumed_depth_m) if depth_median is None else np.asarray(depth_median, np.float64)
    out["depth_median"] = depth
    if n > 1 and np.isfinite(poses).all():
        predicted = predicted_shift(poses, intrinsics, depth[:-1])
        measured = np.stack([raw["shift_x"][1:], raw["shift_y"][1:]], axis=1)
        out["shift_error"][1:] = np.linalg.norm(measured - predicted, axis=1) / width
    return out


def image_flags(scores: dict[str, np.ndarray], step_m: np.ndarray, step_deg: np.ndarray,
                config: ImageChecks) -> dict[Reason, np.ndarray]:
    """{reason: (N,) bool}. step_m / step_deg: (N,) translation and rotation since the previous frame."""
    s = {name: np.nan_to_num(value, nan=0.0) for name, value in scores.items()}
    black = (s["luma_mean"] < config.black_luma) | (s["luma_std"] < config.blank_std)
    moved = (np.nan_to_num(step_m) >= config.frozen_motion_m) | (np.nan_to_num(step_deg) >= config.frozen_motion_deg)
    trusted = s["shift_response"] >= config.mismatch_min_response
    mismatch = trusted & (s["shift_error"] > config.mismatch_fraction)  # transition into the frame
    mismatch[:-1] |= mismatch[1:]  # either frame of a disagreeing transition may be the wrong one: both go
    return {
        Reason.BLACK: black,
        Reason.OVEREXPOSED: s["clip_high"] > config.over_fraction,
        Reason.UNDEREXPOSED: ~black & (s["clip_low"] > config.under_fraction),
        Reason.BLUR: (s["sharpness_rel"] < config.blur_ratio) & (s["detail"] >= config.blur_min_detail) & ~black,
        Reason.FROZEN: np.isfinite(scores["diff_prev"]) & (s["diff_prev"] < config.frozen_diff)
        & (s["diff_rel"] < config.frozen_ratio) & moved,
        Reason.FLICKER: s["flicker"] > config.flicker_ratio,
        Reason.GLITCH: s["hist_distance"] > config.glitch_distance,
        Reason.MOTION_MISMATCH: mismatch,
    }


def predicted_shift(poses: np.ndarray, intrinsics: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """(N, 4, 4) camera-to-world, K, (N-1,) depth (m) -> (N-1, 2) px: where the content at the image
    centre of frame t (at that depth) appears in frame t+1, relative to the centre."""
    rel = relative_rotations(poses)  # camera t+1 axes in camera t
    centres = np.einsum("nki,nk->ni", poses[:-1, :3, :3], poses[1:, :3, 3] - poses[:-1, :3, 3])  # in camera t
    point = np.zeros((len(rel), 3))
    point[:, 2] = depth
    in_next = np.einsum("nki,nk->ni", rel, point - centres)  # R_rel^T (X - c)
    z = np.maximum(in_next[:, 2], 1e-3)
    fx, fy = intrinsics[0, 0], intrinsics[1, 1]
    return np.stack([fx * in_next[:, 0] / z, fy * in_next[:, 1] / z], axis=1)


def _local_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median of the `window` frames around each frame (NaN-free input; the first frame's NaN diff is
    replaced by its neighbour's value)."""
    v = np.asarray(values, np.float64)
    if not len(v):
        return v
    v = np.where(np.isfinite(v), v, np.nanmedian(v) if np.isfinite(v).any() else 0.0)
    return median_filter(v, size=min(window, len(v)), mode="nearest")


def _spike(values: np.ndarray, width: int = 5) -> np.ndarray:
    """|v_t - median of the `width` frames around t| / that median: large for a change lasting at
    most width // 2 frames, zero at a lasting step (a median keeps steps)."""
    v = np.asarray(values, np.float64)
    reference = _local_median(v, width)
    return np.abs(v - reference) / np.maximum(reference, 1.0)
