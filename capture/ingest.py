"""Ingest pre-rendered sequences (formats.md 1.2) into the staging area.

    <root>/<scene>/<trajectory>/poses.csv          UE pose CSV, one row per frame
    <root>/<scene>/<trajectory>/frames/000000.png  (or .jpg) one file per row, same (sorted) order
    <root>/<scene>/<trajectory>/meta.json          optional {"fov": 90, "fps": 30, "caption": "..."}

Every sequence is checked before anything is staged: poses (NaN, non-increasing time: the
reader names the line), the frame count against the pose rows, and every image's header (or the
whole image, with `check: decode`) is read (an unreadable one is named with its pose row) and must
match the first one's size. The filter stage decodes every frame and fails a trajectory whose
image does not decode, naming file and row. A bad sequence
becomes a `failed` result; the others go on. Good ones are staged atomically, frames hard-linked
when the staging area is on the same file system (copied otherwise).
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil
import time
from dataclasses import dataclass, field
from typing import Literal

import cv2
import PIL.Image

from annotate.readers import ReaderConfig, read_ue_csv
from annotate.trajectory import TrajectoryError
from capture.config import StagingConfig
from capture.records import CaptureResult, safe_name
from capture.staging import LayoutError, StagingWriter, frame_files, intrinsics, staged_fingerprint, trajectory_dir

@dataclass(frozen=True)
class IngestConfig:
    roots: tuple[str, ...] = ()
    default_fov: float | None = None  # used when meta.json gives no fov; None: missing fov is an error
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    resume: bool = True
    # "header": read each image's header (format and size) only; the filter stage decodes every frame
    # anyway and fails the trajectory on an undecodable one, with file and row. "decode": decode here too.
    check: Literal["header", "decode"] = "header"


@dataclass(frozen=True)
class Sequence:
    scene: str
    trajectory: str
    folder: pathlib.Path


def find_sequences(root: str | pathlib.Path) -> list[Sequence]:
    """Every `<root>/<scene>/<trajectory>/` folder (hidden ones skipped), sorted."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ingest root {root} is not a folder")
    return [Sequence(scene.name, trajectory.name, trajectory)
            for scene in sorted(root.iterdir()) if scene.is_dir() and not scene.name.startswith(".")
            for trajectory in sorted(scene.iterdir()) if trajectory.is_dir() and not trajectory.name.startswith(".")]


class IngestError(Exception):
    pass


def ingest_sequence(sequence: Sequence, staging: str | pathlib.Path, config: IngestConfig) -> CaptureResult:
    """Check one sequence and stage it; the result says captured, cached or failed (with why)."""
    start = time.perf_counter()
    scene, trajectory = safe_name(sequence.scene), safe_name(sequence.trajectory)
    folder, staging = sequence.folder, pathlib.Path(staging)

    def result(status, reason="", frames=0, path=None) -> CaptureResult:
        return CaptureResult(scene, trajectory, status, reason, frames, (), "ingest", time.perf_counter() - start,
                             path, str(folder))

    try:
        poses_path = folder / "poses.csv"
        if not poses_path.is_file():
            raise IngestError(f"{poses_path}: missing (every sequence needs poses.csv)")
        traj = read_ue_csv(poses_path, config.reader)
        frames = frame_files(folder, len(traj.poses))
        meta = _read_meta(folder / "meta.json", config)
        fingerprint = _fingerprint(poses_path, frames, meta)
        if config.resume and staged_fingerprint(staging, scene, trajectory) == fingerprint:
            return result("cached", frames=len(frames), path=str(trajectory_dir(staging, scene, trajectory)))
        width, height = _check_images(frames, poses_path, config.check)
    except (IngestError, LayoutError, TrajectoryError, OSError) as exc:
        return result("failed", str(exc))
    staged_meta = {
        **{k: v for k, v in meta.items() if k not in ("fov", "fps", "caption")},
        "scene": scene, "trajectory": trajectory, "source": str(folder), "caption": meta.get("caption", ""),
        "fov": float(meta["fov"]), "fov_source": meta.get("fov_source", "meta.json"), "fps": meta.get("fps"),
        "width": width, "height": height, "modalities": ["lit"], "fingerprint": fingerprint,
        "intrinsics": intrinsics(float(meta["fov"]), width, height),
    }
    path = _stage(folder, frames, staging, scene, trajectory, staged_meta)
    return result("captured", frames=len(frames), path=str(path))


def _read_meta(path: pathlib.Path, config: IngestConfig) -> dict:
    meta: dict = {}
    if path.exists():
        try:
            meta = json.loads(path.read_text())
        except ValueError as exc:
            raise IngestError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(meta, dict):
            raise IngestError(f"{path}: expected a JSON object")
    if "fov" not in meta:
        if config.default_fov is None:
            raise IngestError(f"{path}: no fov given (and ingest.default_fov is not set)")
        meta["fov"], meta["fov_source"] = config.default_fov, "ingest.default_fov"
    try:
        fov = float(meta["fov"])
    except (TypeError, ValueError):
        raise IngestError(f"{path}: fov {meta['fov']!r} is not a number") from None
    if not 0 < fov < 180:
        raise IngestError(f"{path}: fov {fov} is not in (0, 180)")
    return meta


def _image_size(path: pathlib.Path, check: str) -> tuple[int, int] | None:
    """(height, width), or None when the image cannot be read (decoded, or its header parsed)."""
    if check == "decode":
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        return None if image is None else image.shape[:2]
    try:
        with PIL.Image.open(path) as image:  # parses the header only
            return image.size[1], image.size[0]
    except (OSError, ValueError):
        return None


def _check_images(frames: list[pathlib.Path], poses_path: pathlib.Path, check: str) -> tuple[int, int]:
    size = None
    for row, path in enumerate(frames):
        shape = _image_size(path, check)
        where = f"{path} (row {row} of {poses_path.name})"
        if shape is None:
            raise IngestError(f"{where}: unreadable image")
        if size is None:
            size = shape
        elif shape != size:
            raise IngestError(f"{where}: {shape[1]}x{shape[0]} differs from the first frame's {size[1]}x{size[0]}")
    assert size is not None
    return size[1], size[0]


def _fingerprint(poses_path: pathlib.Path, frames: list[pathlib.Path], meta: dict) -> str:
    digest = hashlib.sha256(poses_path.read_bytes())
    for path in frames:
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    digest.update(json.dumps(meta, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


def _stage(folder: pathlib.Path, frames: list[pathlib.Path], staging, scene: str, trajectory: str, meta: dict) -> pathlib.Path:
    writer = StagingWriter(pathlib.Path(staging), scene, trajectory, StagingConfig())
    try:
        writer.close_poses()
        shutil.copyfile(folder / "poses.csv", writer.tmp / "poses.csv")
        for row, src in enumerate(frames):
            dst = writer.tmp / "frames" / f"{row:06d}{'.jpg' if src.suffix.lower() == '.jpeg' else src.suffix.lower()}"
            try:
                os.link(src, dst)
            except OSError:  # another file system, or links not allowed: copy
                shutil.copyfile(src, dst)
        writer.frames = len(frames)
        return writer.commit(meta)
    except BaseException:
        writer.abort()
        raise

