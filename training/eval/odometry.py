"""Camera path recovered from a video alone: windowed visual odometry with OpenCV, no learned weights.

The clip is cut into windows of `window` steps that share their end frames. In each window, with
the known pinhole intrinsics K:
1. points of its first frame are followed frame to frame. `tracker: dense` (the default) takes a
   grid of points every `grid_px` pixels wherever the image has texture (a local standard deviation
   of at least `texture_std` grey levels) and moves them by dense optical flow (OpenCV's DIS, at full
   resolution with variational refinement); `tracker: corners` tracks Shi–Tomasi corners by
   pyramidal Lucas–Kanade. Either way a track is kept while following it back lands within `fb_px`
   of where it started;
2. the widest baseline with at least `min_tracks` tracks (usually first -> last frame) anchors the
   window. If a pure rotation (Kabsch on the tracks' bearing rays) explains it to a median
   residual of `parallax_px`, the window only turned: every frame gets its own rotation-only fit
   and no translation (monocular footage cannot show a translation without parallax);
3. otherwise the anchor's relative pose is fitted twice — from the essential matrix (RANSAC,
   `cv2.recoverPose`) and from the rotation-only fit plus the direction that explains the rest —
   each refined by robust least squares on the Sampson error; the better fit wins and cheirality
   picks the sign of its direction. The anchor's tracks are triangulated, and every other frame
   of the window is placed against those points by PnP (`cv2.solvePnP`), so all frames of a window
   share one unit of length;
4. consecutive windows are chained at their shared frame by the ratio of the scene's median depth
   there, as each window measured it. The path's overall scale is the Sim(3) alignment's (rpe.py).
A frame with fewer than `min_tracks` live tracks is `lost`: it keeps the previous pose, and counts.

Each window also reports its anchor's parallax: the median pixel residual a pure rotation leaves,
what only a translation (or an error) explains. Unlike RPE-t it does not stop at `parallax_px`: a
video that translates too little to be read as moving still shows how much it translated. The
forward, backward and sideways walks of two held-out scenes show 4.7 px a window on average, and
2.5, 1.6 and 0.6 px rendered at 1/2, 1/4 and 1/10 of their translation (tests/test_odometry.py;
`bench/odometry_blur.py --translation-scales` on every script).

Why windows: at 128x72 a track is good to about 0.3 px and one step of a slow walk moves the image
by about as much, so two-view estimates of single steps are mostly noise; over 8 steps the parallax
is 8x larger (docs/training.md, "Action following (RPE)", has the calibration).

Why dense flow: a generated video is softer than a render, and corners are what blur removes
first. On the 504 held-out clips blurred by a Gaussian of 4 px (25.7 dB from the renders, the
teacher's distance) the corner tracker lost 9% of the steps and scored RPE-t 0.0475 m, above what a
still video scores; dense flow loses 0.1% and scores 0.0266 m, and its floor on the sharp renders is
lower too (0.0107 m against 0.0140; `bench/odometry_blur.py`).

Axes are OpenCV's, which are the project's camera axes (conventions.md §2): a recovered
x_j = R x_0 + t is camera j at [[Rᵀ, −Rᵀt], [0, 1]] in camera 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from annotate.geometry import make_pose
from annotate.ue import fov_to_intrinsics


TRACKERS = ("dense", "corners")


@dataclass(frozen=True)
class OdometryConfig:
    tracker: str = "dense"  # dense (DIS optical flow on a grid) | corners (Shi–Tomasi + Lucas–Kanade)
    grid_px: int = 4  # dense: one point every grid_px pixels ...
    texture_std: float = 0.5  # ... where the 9x9 neighbourhood's grey levels vary by at least this
    flow_patch_px: int = 8  # dense: DIS patch size, stride, gradient-descent and variational iterations
    flow_stride_px: int = 2
    flow_iterations: int = 25
    flow_refinement: int = 5
    max_corners: int = 400  # corners: Shi–Tomasi settings, then the Lucas–Kanade window and pyramid
    corner_quality: float = 0.001
    min_distance_px: int = 3
    window_px: int = 9  # Lucas–Kanade window
    levels: int = 2  # pyramid levels above the image
    fb_px: float = 0.5  # forward-backward agreement a track needs
    parallax_px: float = 0.6  # median residual of the rotation-only model above which the camera moved
    ransac_px: float = 0.5
    min_tracks: int = 12
    window: int = 8  # steps per window: tracks from its first frame, poses by PnP
    max_depth_ratio: float = 20.0  # triangulated points beyond this times the median depth are dropped

    def __post_init__(self) -> None:
        if self.tracker not in TRACKERS:
            raise ValueError(f"odometry tracker {self.tracker!r}: expected one of {', '.join(TRACKERS)}")


@dataclass(frozen=True)
class StepEstimate:
    """The relative pose of two views from their tracks."""

    rotation: np.ndarray  # (3, 3) R: a point in the first camera -> the second (x' = R x + t)
    direction: np.ndarray  # (3,) unit t, or zeros for a pure turn / too few tracks
    tracks: int
    kind: str  # "moved" | "turned" | "lost"
    parallax_px: float  # median residual of the rotation-only fit (NaN when lost): what a turn cannot explain


@dataclass(frozen=True, eq=False)
class PathEstimate:
    """A camera path recovered from a video, up to scale."""

    poses: np.ndarray  # (T, 4, 4) camera-to-world, from the given start
    kinds: list[str]  # per step: moved | turned | lost
    parallax_px: list[float]  # per window: its anchor's parallax (StepEstimate.parallax_px; NaN when lost)


def opencv_intrinsics(fov_deg: float, width: int, height: int) -> np.ndarray:
    """K for OpenCV pixel coordinates (pixel u's centre at u) from the project's intrinsics, whose
    rays pass through pixel centres at u + 0.5 (conventions.md §1)."""
    K = fov_to_intrinsics(fov_deg, width, height)
    K[:2, 2] -= 0.5
    return K


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def _track(a: np.ndarray, b: np.ndarray, points: np.ndarray, cfg: OdometryConfig) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 2) of gray image a tracked into b -> (their positions in b, kept mask)."""
    if len(points) == 0:
        return points, np.zeros(0, dtype=bool)
    lk = dict(winSize=(cfg.window_px, cfg.window_px), maxLevel=cfg.levels,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    p0 = points.reshape(-1, 1, 2).astype(np.float32)
    flow: Any = cv2.calcOpticalFlowPyrLK  # OpenCV's stubs have no overload for keyword settings
    p1, ok1, _ = flow(a, b, p0, None, **lk)
    back, ok2, _ = flow(b, a, p1, None, **lk)
    fb = np.linalg.norm(back.reshape(-1, 2) - points, axis=1)
    h, w = a.shape
    inside = (p1[:, 0, 0] >= 0) & (p1[:, 0, 0] <= w - 1) & (p1[:, 0, 1] >= 0) & (p1[:, 0, 1] <= h - 1)
    keep = ok1[:, 0].astype(bool) & ok2[:, 0].astype(bool) & (fb < cfg.fb_px) & inside
    return p1.reshape(-1, 2).astype(np.float64), keep


def _bearings(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    rays = np.column_stack([points, np.ones(len(points))]) @ np.linalg.inv(K).T
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def _project(rays: np.ndarray, K: np.ndarray) -> np.ndarray:
    pixels = rays @ K.T
    return pixels[:, :2] / np.maximum(pixels[:, 2:3], 1e-9)


def _kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation R minimising Σ |b_i − R a_i|² over unit rays."""
    u, _, vt = np.linalg.svd(b.T @ a)
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    return u @ fix @ vt


def rotation_only(p0: np.ndarray, p1: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pure-rotation fit of tracks p0 -> p1 (pixels): (R_cv, per-track residual in pixels)."""
    a, b = _bearings(p0, K), _bearings(p1, K)
    rot = _kabsch(a, b)
    residual = np.linalg.norm(_project(a @ rot.T, K) - p1, axis=1)
    explained = residual <= max(3.0 * float(np.median(residual)), 0.5)
    if explained.sum() >= 3:
        rot = _kabsch(a[explained], b[explained])
        residual = np.linalg.norm(_project(a @ rot.T, K) - p1, axis=1)
    return rot, residual


def _skew(t: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])


def sampson(rotation: np.ndarray, direction: np.ndarray, p0: np.ndarray, p1: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Per-track Sampson distance (pixels) of p0 -> p1 to the epipolar geometry of (R, t)."""
    k_inv = np.linalg.inv(K)
    fundamental = k_inv.T @ _skew(direction) @ rotation @ k_inv
    a, b = np.column_stack([p0, np.ones(len(p0))]), np.column_stack([p1, np.ones(len(p1))])
    fa, ftb = a @ fundamental.T, b @ fundamental
    denom = np.sqrt(fa[:, 0] ** 2 + fa[:, 1] ** 2 + ftb[:, 0] ** 2 + ftb[:, 1] ** 2)
    return np.einsum("ij,ij->i", b, fa) / np.maximum(denom, 1e-12)


def _refine(rotation: np.ndarray, direction: np.ndarray, p0: np.ndarray, p1: np.ndarray, K: np.ndarray,
            cfg: OdometryConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """(R, unit t) minimising the robust (Huber) Sampson error from a start; with its median |error|."""

    def residual(x: np.ndarray) -> np.ndarray:
        return sampson(Rotation.from_rotvec(x[:3]).as_matrix(), x[3:] / np.linalg.norm(x[3:]), p0, p1, K)

    start = np.concatenate([Rotation.from_matrix(rotation).as_rotvec(), direction])
    fit = least_squares(residual, start, loss="huber", f_scale=cfg.ransac_px, max_nfev=100)
    t = fit.x[3:] / np.linalg.norm(fit.x[3:])
    return Rotation.from_rotvec(fit.x[:3]).as_matrix(), t, float(np.median(np.abs(fit.fun)))


def _in_front(rotation: np.ndarray, direction: np.ndarray, p0: np.ndarray, p1: np.ndarray, K: np.ndarray) -> float:
    """Share of tracks triangulated in front of both cameras (cheirality)."""
    z0, z1 = _depths(p0, p1, rotation, direction, K)
    return float(np.mean((z0 > 0) & (z1 > 0)))


def two_view(p0: np.ndarray, p1: np.ndarray, K: np.ndarray, cfg: OdometryConfig) -> StepEstimate:
    """Relative pose from tracked pixel correspondences p0 (first view) -> p1 (second view)."""
    if len(p0) < cfg.min_tracks:
        return StepEstimate(np.eye(3), np.zeros(3), len(p0), "lost", math.nan)
    rot, residual = rotation_only(p0, p1, K)
    parallax = float(np.median(residual))
    if parallax <= cfg.parallax_px:
        return StepEstimate(rot, np.zeros(3), len(p0), "turned", parallax)
    # two starts, the better refined one wins: the essential matrix (RANSAC + cheirality), and the
    # rotation-only fit with the direction that best explains what it leaves (linear, least squares)
    a, b = _bearings(p0, K), _bearings(p1, K)
    starts = [(rot, np.linalg.svd(np.cross(a @ rot.T, b))[2][-1])]
    try:
        essential, inliers = cv2.findEssentialMat(p0, p1, K, method=cv2.RANSAC, prob=0.999,
                                                  threshold=2 * cfg.ransac_px)
    except cv2.error:  # a degenerate sample (its five-point polynomial has no leading term): no such start
        essential = None
    if essential is not None and essential.shape == (3, 3):
        _, rot_e, t_e, _ = cv2.recoverPose(essential, p0, p1, K, mask=inliers.copy())
        starts.append((rot_e, t_e[:, 0]))
    fits = [_refine(r, t / max(np.linalg.norm(t), 1e-12), p0, p1, K, cfg) for r, t in starts]
    rot_m, t_m, _ = min(fits, key=lambda f: f[2])
    if _in_front(rot_m, -t_m, p0, p1, K) > _in_front(rot_m, t_m, p0, p1, K):  # Sampson cannot tell ±t
        t_m = -t_m
    return StepEstimate(rot_m, t_m, len(p0), "moved", parallax)


def _depths(p0: np.ndarray, p1: np.ndarray, rotation: np.ndarray, direction: np.ndarray, K: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """Depths of tracks p0 -> p1 in both cameras, triangulated with (R, t) (t's length is the unit)."""
    first = K @ np.hstack([np.eye(3), np.zeros((3, 1))])
    second = K @ np.hstack([rotation, direction[:, None]])
    x = cv2.triangulatePoints(first, second, p0.T.astype(np.float64), p1.T.astype(np.float64))
    x = x[:3] / np.where(np.abs(x[3]) < 1e-12, 1e-12, x[3])
    return x[2], (rotation @ x + direction[:, None])[2]


def _textured_grid(gray: np.ndarray, cfg: OdometryConfig) -> np.ndarray:
    """(N, 2) grid points, every grid_px pixels, whose 9x9 neighbourhood has a grey-level standard
    deviation of at least texture_std (none on a blank view: flow there would be invented)."""
    g = gray.astype(np.float32)
    mean, square = cv2.boxFilter(g, -1, (9, 9)), cv2.boxFilter(g * g, -1, (9, 9))
    std = np.sqrt(np.maximum(square - mean * mean, 0.0))
    ys, xs = np.mgrid[cfg.grid_px // 2:g.shape[0]:cfg.grid_px, cfg.grid_px // 2:g.shape[1]:cfg.grid_px]
    textured = std[ys, xs] >= cfg.texture_std
    return np.column_stack([xs[textured], ys[textured]]).astype(np.float64)


def _flow_at(flow: np.ndarray, points: np.ndarray) -> np.ndarray:
    """A dense flow field (H, W, 2) sampled bilinearly at (N, 2) points."""
    maps = points.astype(np.float32).reshape(-1, 1, 2)
    return np.column_stack([cv2.remap(flow[..., c], maps[..., 0], maps[..., 1], cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE).ravel() for c in (0, 1)]).astype(np.float64)


def _dense_step(dis: Any, a: np.ndarray, b: np.ndarray, points: np.ndarray, cfg: OdometryConfig
                ) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 2) of gray image a moved into b by DIS flow -> (their positions in b, kept mask)."""
    if len(points) == 0:
        return points, np.zeros(0, dtype=bool)
    forward, backward = dis.calc(a, b, None), dis.calc(b, a, None)
    moved = points + _flow_at(forward, points)
    back = moved + _flow_at(backward, moved)
    h, w = a.shape
    inside = (moved[:, 0] >= 0) & (moved[:, 0] <= w - 1) & (moved[:, 1] >= 0) & (moved[:, 1] <= h - 1)
    return moved, (np.linalg.norm(back - points, axis=1) < cfg.fb_px) & inside


def _dis(cfg: OdometryConfig) -> Any:
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
    dis.setFinestScale(0)  # 128x72 has no pixels to spare
    dis.setPatchSize(cfg.flow_patch_px)
    dis.setPatchStride(cfg.flow_stride_px)
    dis.setGradientDescentIterations(cfg.flow_iterations)
    dis.setVariationalRefinementIterations(cfg.flow_refinement)
    return dis


def _window_tracks(gray: list[np.ndarray], cfg: OdometryConfig) -> tuple[np.ndarray, np.ndarray]:
    """Points of the first frame (the tracker's) followed through the window: positions (F, N, 2)
    and alive (F, N); a track that fails once stays dead."""
    if cfg.tracker == "dense":
        p = _textured_grid(gray[0], cfg)
        step = partial(_dense_step, _dis(cfg), cfg=cfg)
    else:
        corners = cv2.goodFeaturesToTrack(gray[0], cfg.max_corners, cfg.corner_quality, cfg.min_distance_px)
        p = np.zeros((0, 2)) if corners is None else corners.reshape(-1, 2).astype(np.float64)
        step = partial(_track, cfg=cfg)
    positions, alive = [p], [np.ones(len(p), dtype=bool)]
    for a, b in zip(gray[:-1], gray[1:]):
        nxt, keep = step(a, b, positions[-1])
        positions.append(nxt)
        alive.append(alive[-1] & keep)
    return np.stack(positions), np.stack(alive)


def _window_poses(gray: list[np.ndarray], K: np.ndarray, cfg: OdometryConfig
                  ) -> tuple[list[np.ndarray], list[str], tuple[float, float] | None, float]:
    """Relative poses (4x4, camera j in the window's first camera) of one window, a kind per frame
    after the first, the median depth of its points in its first and last frames (in the window's
    own unit of length; None for a window without translation) and its anchor's parallax (pixels;
    NaN when the window is lost)."""
    f = len(gray)
    positions, alive = _window_tracks(gray, cfg)
    identity = [np.eye(4)] * f
    # the widest baseline with enough tracks anchors the window
    anchor = next((j for j in range(f - 1, 0, -1) if alive[j].sum() >= cfg.min_tracks), None)
    if anchor is None:
        return identity, ["lost"] * (f - 1), None, math.nan
    keep = alive[anchor]
    step = two_view(positions[0][keep], positions[anchor][keep], K, cfg)
    if step.kind != "moved":  # a turn-only window: every frame by its own rotation-only fit
        poses, kinds = [np.eye(4)], []
        for j in range(1, f):
            if alive[j].sum() < cfg.min_tracks:
                poses.append(poses[-1])
                kinds.append("lost")
                continue
            rot, _ = rotation_only(positions[0][alive[j]], positions[j][alive[j]], K)
            poses.append(make_pose(rot.T, np.zeros(3)))
            kinds.append("turned")
        return poses, kinds, None, step.parallax_px
    z0, z1 = _depths(positions[0][keep], positions[anchor][keep], step.rotation, step.direction, K)
    points = np.full((positions.shape[1], 3), np.nan)
    rays = np.column_stack([positions[0][keep], np.ones(int(keep.sum()))]) @ np.linalg.inv(K).T
    good = (z0 > 0) & (z1 > 0) & (z0 < cfg.max_depth_ratio * np.median(z0[z0 > 0]) if (z0 > 0).any() else False)
    points[np.flatnonzero(keep)[good]] = rays[good] * z0[good, None]
    poses, kinds = [np.eye(4)], []
    for j in range(1, f):
        use = alive[j] & np.isfinite(points[:, 0])
        if j == anchor:
            rot, t = step.rotation, step.direction
        elif use.sum() < cfg.min_tracks:
            poses.append(poses[-1])
            kinds.append("lost")
            continue
        else:
            ok, rvec, tvec = cv2.solvePnP(points[use], positions[j][use], K, None,
                                          *_rvec_tvec(poses[-1]), useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
            if not ok:
                poses.append(poses[-1])
                kinds.append("lost")
                continue
            rot, t = cv2.Rodrigues(rvec)[0], tvec[:, 0]
        poses.append(make_pose(rot.T, -rot.T @ t))  # x_j = R x_0 + t -> camera j in camera 0
        kinds.append("moved")
    last = alive[-1] & np.isfinite(points[:, 0])
    if not last.any():
        return poses, kinds, None, step.parallax_px
    to_last = np.linalg.inv(poses[-1])
    depth_last = float(np.median((points[last] @ to_last[:3, :3].T + to_last[:3, 3])[:, 2]))
    return poses, kinds, (float(np.median(z0[good])), depth_last), step.parallax_px


def _rvec_tvec(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A camera-to-first-camera pose as OpenCV's world-to-camera (rvec, tvec)."""
    rot = pose[:3, :3].T
    return cv2.Rodrigues(rot)[0], (-rot @ pose[:3, 3])[:, None]


def estimate_path(frames: np.ndarray, K: np.ndarray, start: np.ndarray,
                  cfg: OdometryConfig = OdometryConfig()) -> PathEstimate:
    """(T, H, W, 3) uint8 RGB frames -> the camera path from `start` (camera-to-world poses up to
    scale), each step's kind and each window's parallax."""
    gray = [_gray(f) for f in frames]
    poses, kinds, parallax = [np.asarray(start, dtype=np.float64)], [], []
    scale, depth_before = 1.0, None  # the running window's unit, and the scene depth it ended at
    for lo in range(0, len(gray) - 1, cfg.window):
        relative, window_kinds, depths, window_parallax = _window_poses(gray[lo:lo + cfg.window + 1], K, cfg)
        parallax.append(window_parallax)
        if depths is not None:
            # a window's length unit is its own: chain it by the median scene depth at the shared frame
            scale = depth_before / depths[0] if depth_before is not None else scale
            depth_before = depths[1] * scale
        origin = poses[-1]
        for rel in relative[1:]:
            poses.append(origin @ make_pose(rel[:3, :3], rel[:3, 3] * scale))
        kinds += window_kinds
    return PathEstimate(np.stack(poses), kinds, parallax)
