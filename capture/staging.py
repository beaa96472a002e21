"""The staging area: one folder per trajectory in the ingest layout (formats.md 1.2), written
frame by frame and published atomically.

    <staging>/<scene>/<trajectory>/poses.csv       frame,time,x,y,z,pitch,yaw,roll (+ cmd_* columns)
    <staging>/<scene>/<trajectory>/frames/000000.png
    <staging>/<scene>/<trajectory>/depth/000000.npy    (float32 metres, when captured)
    <staging>/<scene>/<trajectory>/mask/000000.png     (when captured)
    <staging>/<scene>/<trajectory>/meta.json       fov, fps, caption, size, intrinsics, provenance

A trajectory is written under `<staging>/.partial/` and renamed into place only when complete, so
readers (and a resumed run) never see half a trajectory; an aborted attempt leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import uuid
from typing import Any

import cv2
import numpy as np

from annotate.readers import UE_COLUMNS, ue_csv_row
from annotate.ue import fov_to_intrinsics
from capture.config import StagingConfig

PARTIAL = ".partial"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

COMMAND_COLUMNS = ("cmd_x", "cmd_y", "cmd_z", "cmd_pitch", "cmd_yaw", "cmd_roll")


def intrinsics(fov: float, width: int, height: int) -> dict[str, float]:
    """meta.json's {fx, fy, cx, cy} for a UE FOV on the longer side (conventions.md section 1)."""
    K = fov_to_intrinsics(fov, width, height)
    return {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2])}


class LayoutError(ValueError):
    """A trajectory folder that does not follow the layout; the message names the folder."""


def frame_files(folder: pathlib.Path, rows: int) -> list[pathlib.Path]:
    """The sorted frame images of a trajectory folder (formats.md 1.2), one per poses.csv row."""
    frames_dir = pathlib.Path(folder) / "frames"
    if not frames_dir.is_dir():
        raise LayoutError(f"{frames_dir}: missing (one image per poses.csv row)")
    files = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len({p.suffix.lower() for p in files}) > 1:
        raise LayoutError(f"{frames_dir}: mixed image types {sorted({p.suffix for p in files})}")
    if len(files) != rows:
        raise LayoutError(f"{frames_dir}: {len(files)} frame files for {rows} pose rows in poses.csv")
    return files


def trajectory_dir(root: pathlib.Path, scene: str, trajectory: str) -> pathlib.Path:
    return pathlib.Path(root) / scene / trajectory


def clear_partials(root: pathlib.Path) -> int:
    """Remove what interrupted runs left under `.partial/`; returns how many folders."""
    partial = pathlib.Path(root) / PARTIAL
    if not partial.is_dir():
        return 0
    count = 0
    for child in partial.iterdir():
        shutil.rmtree(child, ignore_errors=True)
        count += 1
    return count


def staged_fingerprint(root: pathlib.Path, scene: str, trajectory: str) -> str | None:
    """The fingerprint recorded in a published trajectory's meta.json, or None."""
    meta = trajectory_dir(root, scene, trajectory) / "meta.json"
    try:
        return json.loads(meta.read_text()).get("fingerprint")
    except (OSError, ValueError):
        return None


def published(root: pathlib.Path) -> dict[str, str]:
    """"scene/trajectory" -> fingerprint of every published trajectory under `root` (one whose
    meta.json records none, or cannot be read, is left out: it is not reused)."""
    found = {}
    for meta in sorted(pathlib.Path(root).glob("*/*/meta.json")):
        scene, trajectory = meta.parent.parent.name, meta.parent.name
        if scene.startswith("."):
            continue
        fingerprint = staged_fingerprint(root, scene, trajectory)
        if fingerprint:
            found[f"{scene}/{trajectory}"] = fingerprint
    return found


class StagingWriter:
    """Write one trajectory frame by frame; `commit(meta)` publishes it, `abort()` discards it.

    Only one frame is ever held: memory does not grow with the trajectory's length."""

    def __init__(self, root: pathlib.Path, scene: str, trajectory: str, config: StagingConfig, posed: bool = True):
        """`posed=False`: plain footage (capture/video.py), frames only (`add_image`), no poses.csv."""
        self.root, self.scene, self.trajectory, self.config = pathlib.Path(root), scene, trajectory, config
        self.final = trajectory_dir(self.root, scene, trajectory)
        self.tmp = self.root / PARTIAL / f"{scene}__{trajectory}__{uuid.uuid4().hex[:12]}"
        (self.tmp / "frames").mkdir(parents=True)
        self._poses = open(self.tmp / "poses.csv", "w", newline="") if posed else None
        if self._poses is not None:
            self._poses.write(",".join(UE_COLUMNS + COMMAND_COLUMNS) + "\n")
        self.frames = 0
        self.bytes = 0

    def frame_path(self, i: int, suffix: str) -> pathlib.Path:
        return self.tmp / "frames" / f"{i:06d}{suffix}"

    def add_image(self, lit_bgr: np.ndarray) -> None:
        """The next frame of footage without poses."""
        self._image(self.frame_path(self.frames, f".{self.config.frame_format}"), lit_bgr)
        self.frames += 1

    def add(self, time: float, lit_bgr: np.ndarray, location: np.ndarray, rotation: np.ndarray,
            commanded_location: np.ndarray, commanded_rotation: np.ndarray,
            depth: np.ndarray | None = None, mask_bgr: np.ndarray | None = None) -> None:
        i = self.frames
        self._image(self.tmp / "frames" / f"{i:06d}.{self.config.frame_format}", lit_bgr)
        if depth is not None:
            (self.tmp / "depth").mkdir(exist_ok=True)
            path = self.tmp / "depth" / f"{i:06d}.npy"
            np.save(path, depth.astype(np.float32, copy=False))
            self.bytes += path.stat().st_size
        if mask_bgr is not None:
            (self.tmp / "mask").mkdir(exist_ok=True)
            self._image(self.tmp / "mask" / f"{i:06d}.png", mask_bgr, lossless=True)
        values = [*location, *rotation, *commanded_location, *commanded_rotation]
        assert self._poses is not None, "add() needs a posed writer"
        self._poses.write(ue_csv_row(i, time, values))
        self.frames += 1

    def _image(self, path: pathlib.Path, image: np.ndarray, lossless: bool = False) -> None:
        if path.suffix == ".jpg" and not lossless:
            params = [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality]
        else:
            params = [cv2.IMWRITE_PNG_COMPRESSION, self.config.png_compression]
        ok, data = cv2.imencode(path.suffix, image, params)
        if not ok:
            raise OSError(f"{path}: image encoding failed")
        path.write_bytes(data.tobytes())
        self.bytes += len(data)

    def close_poses(self) -> None:
        """Stop writing poses.csv here (a caller that brings its own poses.csv replaces it)."""
        if self._poses is not None:
            self._poses.close()

    def commit(self, meta: dict[str, Any], replace: bool = True) -> pathlib.Path:
        """Write meta.json and move the trajectory into place (replacing an older copy if asked)."""
        self.close_poses()
        (self.tmp / "meta.json").write_text(json.dumps({**meta, "frames": self.frames}, indent=1, sort_keys=True))
        self.final.parent.mkdir(parents=True, exist_ok=True)
        old = None
        if self.final.exists():
            if not replace:
                self.abort()
                raise FileExistsError(f"{self.final}: already staged")
            old = self.root / PARTIAL / f"old__{self.scene}__{self.trajectory}__{uuid.uuid4().hex[:12]}"
            os.rename(self.final, old)
        os.rename(self.tmp, self.final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.final

    def abort(self) -> None:
        self.close_poses()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> StagingWriter:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        if exc_type is not None:
            self.abort()
