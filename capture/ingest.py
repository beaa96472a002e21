"""Ingest pre-rendered sequences (formats.md 1.2) into the staging area.

    <root>/<scene>/<trajectory>/poses.csv          UE pose CSV, one row per frame
    <root>/<scene>/<trajectory>/frames/000000.png  (or .jpg) one file per row, same (sorted) order
    <root>/<scene>/<trajectory>/meta.json          optional {"fov": 90, "fps": 30, "caption": "...",
                                                   "captions": [{"start_s": 0, "end_s": 5, "text": "..."}, ...]}

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
import math
import os
import pathlib
import shutil
import time
import warnings
from dataclasses import dataclass, field
from typing import Literal

import cv2
import PIL.Image

from annotate.readers import ReaderConfig, read_ue_csv
from annotate.trajectory import TrajectoryError
from capture.captions import parse_captions
from capture.config import StagingConfig
from capture.records import CaptureResult
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
    # an image whose header claims more pixels than this fails its sequence (a decompression bomb
    # costs gigabytes to decode); 50 MP is above 8K (7680x4320 = 33 MP)
    max_pixels: int = 50_000_000

    def __post_init__(self) -> None:
        if self.max_pixels < 1:
            raise ValueError(f"ingest.max_pixels must be >= 1, got {self.max_pixels}")
        if self.default_fov is not None and not 0 < self.default_fov < 180:
            raise ValueError(f"ingest.default_fov must be in (0, 180), got {self.default_fov}")


@dataclass(frozen=True)
class Sequence:
    """One `<root>/<scene>/<trajectory>/` folder; scene and trajectory are its ids (capture/inputs.py)."""

    scene: str
    trajectory: str
    folder: pathlib.Path


class IngestError(Exception):
    pass


def ingest_sequence(sequence: Sequence, staging: str | pathlib.Path, config: IngestConfig) -> CaptureResult:
    """Check one sequence and stage it; the result says captured, cached or failed (with why)."""
    start = time.perf_counter()
    scene, trajectory = sequence.scene, sequence.trajectory
    folder, staging = sequence.folder, pathlib.Path(staging)

    def result(status, reason="", frames=0, path=None, fingerprint="") -> CaptureResult:
        return CaptureResult(scene, trajectory, status, reason, frames, (), "ingest", time.perf_counter() - start,
                             path, str(folder), fingerprint)

    try:
        return _ingest(sequence, staging, config, result)
    except (IngestError, LayoutError, TrajectoryError, OSError) as exc:
        return result("failed", str(exc))
    except Exception as exc:  # one input's failure, of any kind, is that input's failed row
        return result("failed", f"{folder}: unexpected {type(exc).__name__}: {exc}")


def _ingest(sequence: Sequence, staging: pathlib.Path, config: IngestConfig, result) -> CaptureResult:
    scene, trajectory, folder = sequence.scene, sequence.trajectory, sequence.folder
    poses_path = folder / "poses.csv"
    if not poses_path.is_file():
        raise IngestError(f"{poses_path}: missing (every sequence needs poses.csv)")
    traj = read_ue_csv(poses_path, config.reader)
    dropped = {int(d["line"]) for d in traj.meta.get("dropped", ())}  # reader.duplicate_times=keep_first
    assert traj.lines is not None  # read_ue_csv records each row's file line
    rows = sorted([*map(int, traj.lines), *dropped])  # the file lines of every data row, in order
    frames = [f for f, line in zip(frame_files(folder, len(rows)), rows) if line not in dropped]
    meta = _read_meta(folder / "meta.json", config)
    fingerprint = _fingerprint(poses_path, frames, meta)
    if config.resume and staged_fingerprint(staging, scene, trajectory) == fingerprint:
        return result("cached", frames=len(frames), path=str(trajectory_dir(staging, scene, trajectory)),
                      fingerprint=fingerprint)
    width, height = _check_images(frames, poses_path, config)
    staged_meta = {
        **{k: v for k, v in meta.items() if k not in ("fov", "fps", "caption")},
        "scene": scene, "trajectory": trajectory, "source": str(folder), "caption": meta.get("caption", ""),
        "fov": float(meta["fov"]), "fov_source": meta.get("fov_source", "meta.json"), "fps": meta.get("fps"),
        "width": width, "height": height, "modalities": ["lit"], "fingerprint": fingerprint,
        "intrinsics": intrinsics(float(meta["fov"]), width, height),
        "source_frames": [str(f.relative_to(folder)) for f in frames],
        "source_rows_dropped": sorted(dropped),
    }
    path = _stage(folder, frames, staging, scene, trajectory, staged_meta, dropped)
    return result("captured", frames=len(frames), path=str(path), fingerprint=fingerprint)


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
    fov = _number(path, "fov", meta["fov"])
    if not 0 < fov < 180:
        raise IngestError(f"{path}: key 'fov': {fov:g} is not in (0, 180) degrees")
    if meta.get("fps") is not None:
        fps = _number(path, "fps", meta["fps"])
        if not 0 < fps <= MAX_FPS:
            raise IngestError(f"{path}: key 'fps': {fps:g} is not in (0, {MAX_FPS:g}] frames per second")
        meta["fps"] = fps
    if not isinstance(meta.get("caption", ""), str):
        raise IngestError(f"{path}: key 'caption': expected a string, got {type(meta['caption']).__name__}")
    if "captions" in meta:
        try:
            parse_captions(meta["captions"], str(path))
        except ValueError as exc:
            raise IngestError(str(exc)) from None
    return meta


MAX_FPS = 240.0  # meta.json fps above this is a mistake (ms given as fps, frame counts), not footage


def _number(path: pathlib.Path, key: str, value: object) -> float:
    """A meta.json value that must be a finite number (a bool or a string is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise IngestError(f"{path}: key {key!r}: {json.dumps(value)} is not a number")
    return float(value)


def _image_size(path: pathlib.Path, where: str, config: IngestConfig) -> tuple[int, int]:
    """(height, width) from the header (checked against max_pixels before anything is decoded), then,
    with check: decode, from the decoded image; IngestError when unreadable or too large."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            with PIL.Image.open(path) as image:  # parses the header only
                width, height = image.size
    except PIL.Image.DecompressionBombError:
        raise IngestError(f"{where}: the header claims more pixels than Pillow opens (a decompression bomb; "
                          f"ingest.max_pixels is {config.max_pixels:,})") from None
    except (OSError, ValueError, SyntaxError):
        raise IngestError(f"{where}: unreadable image") from None
    if width * height > config.max_pixels:
        raise IngestError(f"{where}: {width}x{height} is {width * height:,} pixels, over ingest.max_pixels "
                          f"({config.max_pixels:,})")
    if config.check == "decode":
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise IngestError(f"{where}: unreadable image")
        return image.shape[:2]
    return height, width


def _check_images(frames: list[pathlib.Path], poses_path: pathlib.Path, config: IngestConfig) -> tuple[int, int]:
    size = None
    for row, path in enumerate(frames):
        where = f"{path} (row {row} of {poses_path.name})"
        shape = _image_size(path, where, config)
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


def _stage(folder: pathlib.Path, frames: list[pathlib.Path], staging, scene: str, trajectory: str, meta: dict,
           dropped: set[int]) -> pathlib.Path:
    """Publish the sequence under staging: poses.csv (less the `dropped` file lines), frames linked."""
    writer = StagingWriter(pathlib.Path(staging), scene, trajectory, StagingConfig())
    try:
        writer.close_poses()
        if dropped:
            lines = (folder / "poses.csv").read_bytes().splitlines(keepends=True)
            (writer.tmp / "poses.csv").write_bytes(b"".join(l for n, l in enumerate(lines, 1) if n not in dropped))
        else:
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

