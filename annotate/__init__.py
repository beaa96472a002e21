"""Annotate: 6-DoF camera poses -> relative motion -> the 13-dim action (conventions.md).

Pure pose math (`ue`, `geometry`, `actions`), the validated `Trajectory` record, pose-file readers,
resampling, and whole-trajectory annotation. `python -m annotate FILE --out actions.parquet`.
"""

from annotate.actions import (CHANNELS, N_CHANNELS, ActionSpec, BinSpec, decode_actions, encode_actions,
                              translation_scale)
from annotate.annotation import Annotation, annotate, read_metadata, to_table, write_parquet
from annotate.config import AnnotateConfig
from annotate.geometry import MOTION_NAMES, integrate, invert_pose, make_pose, relative_motion
from annotate.readers import PoseFormat, ReaderConfig, detect_format, read_trajectory
from annotate.resample import Interpolation, ResampleConfig, resample
from annotate.trajectory import Trajectory, TrajectoryError
from annotate.ue import fov_to_intrinsics, matrix_to_rotator, pose_to_ue, rotator_to_matrix, ue_to_pose

__all__ = [
    "CHANNELS",
    "MOTION_NAMES",
    "N_CHANNELS",
    "ActionSpec",
    "AnnotateConfig",
    "Annotation",
    "BinSpec",
    "Interpolation",
    "PoseFormat",
    "ReaderConfig",
    "ResampleConfig",
    "Trajectory",
    "TrajectoryError",
    "annotate",
    "decode_actions",
    "detect_format",
    "encode_actions",
    "fov_to_intrinsics",
    "integrate",
    "invert_pose",
    "make_pose",
    "matrix_to_rotator",
    "pose_to_ue",
    "read_metadata",
    "read_trajectory",
    "relative_motion",
    "resample",
    "rotator_to_matrix",
    "translation_scale",
    "to_table",
    "ue_to_pose",
    "write_parquet",
]
