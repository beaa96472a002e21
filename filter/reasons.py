"""Why a frame is dropped: one name per check, plus the segment-level reasons."""

from __future__ import annotations

import enum


class Reason(str, enum.Enum):
    # pose checks
    JITTER = "jitter"  # high-frequency shake: velocity residual after smoothing
    ABRUPT_TRANSLATION = "abrupt_translation"  # speed or acceleration over the limit
    ABRUPT_ROTATION = "abrupt_rotation"  # angular speed or angular acceleration over the limit
    TELEPORT = "teleport"  # a step far longer than the steps around it
    INVALID_POSE = "invalid_pose"  # non-finite, or tilted past the pitch/roll limits
    TIME_GAP = "time_gap"  # frame interval well above the trajectory's median (dropped frames)
    # image checks
    BLACK = "black"  # black or blank (uniform) image
    OVEREXPOSED = "overexposed"
    UNDEREXPOSED = "underexposed"
    BLUR = "blur"  # sharpness well below the trajectory's own
    FROZEN = "frozen"  # image unchanged while the pose moved
    FLICKER = "flicker"  # brightness jump that does not last
    GLITCH = "glitch"  # colour-histogram jump (corruption, cut)
    MOTION_MISMATCH = "motion_mismatch"  # image motion disagrees with pose motion
    # segment level
    MARGIN = "margin"  # within the margin around a flagged frame
    SHORT_SEGMENT = "short_segment"  # clean, but in a piece shorter than the minimum
    REVIEWER = "reviewer"  # a reviewer's verdict dropped it


POSE_REASONS = (Reason.JITTER, Reason.ABRUPT_TRANSLATION, Reason.ABRUPT_ROTATION, Reason.TELEPORT,
                Reason.INVALID_POSE, Reason.TIME_GAP)
IMAGE_REASONS = (Reason.BLACK, Reason.OVEREXPOSED, Reason.UNDEREXPOSED, Reason.BLUR, Reason.FROZEN,
                 Reason.FLICKER, Reason.GLITCH, Reason.MOTION_MISMATCH)
CHECK_REASONS = POSE_REASONS + IMAGE_REASONS
