"""Filter settings: every threshold with its unit; the build's config nests this under `filter`.

Defaults were tuned on stand-in footage with injected faults (bench/filter_quality.py) and on the
real trajectories in tests/data; README's "Filter" section lists them with their meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from filter.reasons import CHECK_REASONS, Reason


@dataclass(frozen=True)
class PoseChecks:
    smooth_window_s: float = 0.5  # Savitzky-Golay window over velocities (s), for the jitter residual
    smooth_order: int = 2  # its polynomial order
    jitter_window_s: float = 0.2  # rolling RMS of the residual over this window (s)
    jitter_translation: float = 0.08  # m/s: RMS velocity residual above this is jitter
    jitter_rotation: float = 6.0  # deg/s: RMS angular-velocity residual above this is jitter
    max_speed: float = 6.0  # m/s
    max_angular_speed: float = 300.0  # deg/s
    max_accel: float = 40.0  # m/s^2, between consecutive frame velocities
    max_angular_accel: float = 4000.0  # deg/s^2
    teleport_min_m: float = 0.4  # a step is a teleport when longer than this (m) ...
    teleport_ratio: float = 8.0  # ... and than this many times the median step around it (+-0.5 s)
    gap_ratio: float = 1.5  # frame interval above this many times the median interval is a gap
    max_pitch_deg: float = 80.0  # |camera pitch| above this (UE degrees, 0 = level) is invalid
    max_roll_deg: float = 45.0  # |camera roll| above this is invalid

    def __post_init__(self) -> None:
        positive = ("smooth_window_s", "jitter_window_s", "jitter_translation", "jitter_rotation", "max_speed",
                    "max_angular_speed", "max_accel", "max_angular_accel", "teleport_min_m")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"filter.pose.{name} must be > 0, got {getattr(self, name)}")
        if self.smooth_order < 1 or self.teleport_ratio <= 1 or self.gap_ratio <= 1:
            raise ValueError("filter.pose: smooth_order must be >= 1, teleport_ratio and gap_ratio > 1")


@dataclass(frozen=True)
class ImageChecks:
    work_width: int = 256  # frames are scored at most this wide (px), downscaled by image_checks.shrink
    flow_width: int = 128  # image motion (phase correlation) is measured at most this wide (px)
    black_luma: float = 12.0  # mean luma (0-255) below this: black
    blank_std: float = 2.0  # luma standard deviation below this: blank (uniform) image
    over_fraction: float = 0.25  # fraction of pixels with luma >= 250 above this: over-exposed
    under_fraction: float = 0.6  # fraction of pixels with luma <= 5 above this: under-exposed
    blur_ratio: float = 0.3  # fine-detail sharpness below this fraction of the trajectory's own: blur
    blur_window_s: float = 0.3  # "the trajectory's own": median over this window (s) around the frame
    blur_min_detail: float = 2.0  # half-size Laplacian variance below this: too little structure to judge blur
    frozen_diff: float = 0.3  # mean |luma change| (0-255) below this ...
    frozen_ratio: float = 0.2  # ... and below this fraction of its median around the frame, while the pose moved
    frozen_motion_m: float = 0.01  # "the pose moved": at least this translation (m) ...
    frozen_motion_deg: float = 0.2  # ... or this rotation (deg) since the previous frame
    flicker_ratio: float = 0.1  # brightness off its 5-frame median by this fraction (1-2 frames): flicker
    glitch_distance: float = 0.3  # hue-saturation histogram distance (Bhattacharyya) from the previous frame
    mismatch_fraction: float = 0.03  # image shift off the pose-predicted shift by this fraction of the width
    mismatch_min_response: float = 0.2  # phase-correlation peak needed to trust the measured shift
    assumed_depth_m: float = 3.0  # scene depth for the translation part of the prediction, without depth maps

    def __post_init__(self) -> None:
        if self.work_width < 32 or self.flow_width < 32:
            raise ValueError(f"filter.image.work_width and flow_width must be >= 32, got {self.work_width}, {self.flow_width}")
        for name in ("over_fraction", "under_fraction", "blur_ratio", "frozen_ratio", "flicker_ratio", "glitch_distance",
                     "mismatch_fraction", "mismatch_min_response"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"filter.image.{name} must be in (0, 1), got {getattr(self, name)}")
        if self.blur_window_s <= 0 or self.assumed_depth_m <= 0 or self.blur_min_detail < 0:
            raise ValueError("filter.image.blur_window_s and assumed_depth_m must be > 0, blur_min_detail >= 0")


@dataclass(frozen=True)
class SegmentConfig:
    margin_frames: int = 3  # frames dropped on each side of a flagged frame
    min_frames: int = 24  # clean pieces shorter than this are dropped (short_segment)

    def __post_init__(self) -> None:
        if self.margin_frames < 0 or self.min_frames < 2:
            raise ValueError("filter.segments: margin_frames must be >= 0 and min_frames >= 2")


@dataclass(frozen=True)
class FilterConfig:
    pose: PoseChecks = field(default_factory=PoseChecks)
    image: ImageChecks = field(default_factory=ImageChecks)
    segments: SegmentConfig = field(default_factory=SegmentConfig)
    disabled: tuple[Reason, ...] = ()  # checks whose flags are ignored (their scores are still kept)
    thumbnails_per_trajectory: int = 24  # flagged-frame thumbnails on the review page
    thumbnail_width: int = 160

    def __post_init__(self) -> None:
        for reason in self.disabled:
            if reason not in CHECK_REASONS:
                raise ValueError(f"filter.disabled: {reason.value} is not a check")
