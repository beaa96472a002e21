"""One WebDataset sample = one training clip (formats.md 3). No Ray import (trainers load this).

    <key>.json          kind (posed | video), scene, trajectory, clip, split, source_frames, fps, width,
                        height, intrinsics, palindrome, turn_index, action_spec, filter, caption
                        (+ modalities)
    <key>.NNNN.jpg      frame NNNN, RGB JPEG
    <key>.actions.npy   float32 (T-1, 13)
    <key>.motion.npy    float32 (T-1, 6)
    <key>.poses.npy     float64 (T, 4, 4) camera-to-world, OpenCV camera axes, internal world
    <key>.depth.npy     float16 (T, H, W) metres, when depth was captured and asked for

A `video` sample (plain footage, no camera poses: capture/video.py) has the json and the frames only.

Every member is encoded here to bytes (sorted JSON keys, numpy's .npy format, OpenCV JPEG), so a
sample's bytes depend only on its content.
"""

from __future__ import annotations

import functools
import io
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
FRAME_MEMBER = re.compile(r"^(\d{4})\.jpg$")
VIDEO = "video"  # meta `kind` of a sample from plain footage: frames, no poses/motion/actions


def sample_key(scene: str, trajectory: str, clip: int, palindrome: bool) -> str:
    key = f"{scene}-{trajectory}-{clip:05d}" + ("-pal" if palindrome else "")
    if not KEY_PATTERN.match(key):
        raise ValueError(f"sample key {key!r} has characters outside [A-Za-z0-9_-]")
    return key


@dataclass(frozen=True, eq=False)
class Clip:
    key: str
    frames_jpeg: tuple[bytes, ...]  # T encoded RGB frames
    poses: np.ndarray | None  # (T, 4, 4) float64; None in a `video` sample (meta kind)
    motion: np.ndarray | None  # (T-1, 6)
    actions: np.ndarray | None  # (T-1, 13)
    meta: Mapping[str, Any]  # the .json member
    depth: np.ndarray | None = None  # (T, H, W) metres

    def __post_init__(self) -> None:
        t = len(self.frames_jpeg)
        if not KEY_PATTERN.match(self.key):
            raise ValueError(f"{self.key!r}: keys are [A-Za-z0-9_-] only")
        if t > 10_000:
            raise ValueError(f"{self.key}: {t} frames; frame members have 4 digits")
        if self.meta.get("kind") == VIDEO:
            if self.poses is not None or self.motion is not None or self.actions is not None:
                raise ValueError(f"{self.key}: a video sample has no poses, motion or actions")
            return
        if self.poses is None or self.motion is None or self.actions is None:
            raise ValueError(f"{self.key}: a posed sample needs poses, motion and actions")
        if self.poses.shape != (t, 4, 4) or self.motion.shape != (t - 1, 6) or self.actions.shape != (t - 1, 13):
            raise ValueError(f"{self.key}: {t} frames but poses {self.poses.shape}, motion {self.motion.shape}, "
                             f"actions {self.actions.shape}")
        if self.depth is not None and len(self.depth) != t:
            raise ValueError(f"{self.key}: {t} frames but {len(self.depth)} depth maps")

    def to_wds_sample(self) -> dict[str, Any]:
        sample: dict[str, Any] = {"__key__": self.key,
                                  "json": json.dumps(self.meta, sort_keys=True, separators=(",", ":")).encode()}
        for i, data in enumerate(self.frames_jpeg):
            sample[f"{i:04d}.jpg"] = data
        if self.actions is not None and self.motion is not None and self.poses is not None:
            sample["actions.npy"] = npy_bytes(self.actions.astype(np.float32))
            sample["motion.npy"] = npy_bytes(self.motion.astype(np.float32))
            sample["poses.npy"] = npy_bytes(self.poses.astype(np.float64))
        if self.depth is not None:
            sample["depth.npy"] = npy_bytes(self.depth.astype(np.float16))
        return sample


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array if array.flags.c_contiguous else np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def npy_load(data: bytes) -> np.ndarray:
    """.npy bytes -> a writable array. Version-1 headers of plain C-order dtypes (what `npy_bytes`
    writes) are parsed once per distinct header: np.load spends most of its ~55 µs per small array
    evaluating the header's dict literal, and a loader reads three per sample."""
    if data[:6] == b"\x93NUMPY" and data[6:7] == b"\x01" and len(data) >= 10:
        end = 10 + int.from_bytes(data[8:10], "little")
        dtype, shape, fortran = _npy_header(bytes(data[:end]))
        if not fortran and not dtype.hasobject:
            count = math.prod(shape)
            if len(data) - end != count * dtype.itemsize:
                raise ValueError(f".npy data holds {len(data) - end} bytes; its header says {shape} {dtype}")
            return np.frombuffer(data, dtype, count=count, offset=end).reshape(shape).copy()
    return np.load(io.BytesIO(data), allow_pickle=False)


@functools.lru_cache(maxsize=256)
def _npy_header(header: bytes) -> tuple[np.dtype, tuple[int, ...], bool]:
    stream = io.BytesIO(header)
    np.lib.format.read_magic(stream)
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    return dtype, tuple(shape), bool(fortran)


def frame_members(sample: Mapping[str, Any]) -> list[str]:
    """A decoded sample's frame member names, in frame order."""
    return sorted(k for k in sample if FRAME_MEMBER.match(k))
