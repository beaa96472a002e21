"""Plain video in: video files and frame folders without poses, staged for a build (formats.md 1.3).

    <root>/<scene>/<name>.mp4 | .webm | .mkv | .mov | .avi   one video file = one trajectory
    <root>/<scene>/<trajectory>/frames/000000.png (.jpg)     a frame folder (no poses.csv), with an
    <root>/<scene>/<trajectory>/meta.json                    optional {"fps": 30, "caption": "..."}

Such footage has frames and times but no camera poses, so its samples carry frames and metadata
only (`kind: video`): no actions, motion or poses. A video file is decoded with PyAV, each frame
staged with its presentation time (variable frame rates stay as they are); a frame folder's frames
are linked into staging with times from its fps (meta.json, else `video.default_fps`). Staged:

    <staging>/<scene>/<trajectory>/frames/000000.png   (staging.frame_format)
    <staging>/<scene>/<trajectory>/meta.json           kind "video", frame_times, fps, size, source

A file that cannot be opened or decoded (truncated, no video stream, an unknown codec), one with
no frames, or a frame folder with a bad image is a failed input naming the file (and the frame);
the other inputs go on. Every output is published atomically, as the other stagings are.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
import shutil
import time
from dataclasses import dataclass

import numpy as np

from capture.config import StagingConfig
from capture.records import CaptureResult
from capture.staging import IMAGE_SUFFIXES, StagingWriter, staged_fingerprint, trajectory_dir
from datasets.samples import VIDEO  # the staged copy and its samples say `kind: video` alike

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v")


@dataclass(frozen=True)
class VideoConfig:
    roots: tuple[str, ...] = ()
    default_fps: float | None = None  # a frame folder's rate when its meta.json gives none; None: an error
    max_frames: int | None = None  # per input: the first this many frames (None: all)
    max_pixels: int = 50_000_000  # a larger frame fails its input (as ingest.max_pixels)
    resume: bool = True

    def __post_init__(self) -> None:
        if self.default_fps is not None and not 0 < self.default_fps <= 240:
            raise ValueError(f"video.default_fps must be in (0, 240], got {self.default_fps}")
        if self.max_frames is not None and self.max_frames < 2:
            raise ValueError(f"video.max_frames must be >= 2, got {self.max_frames}")
        if self.max_pixels < 1:
            raise ValueError(f"video.max_pixels must be >= 1, got {self.max_pixels}")


@dataclass(frozen=True)
class VideoSource:
    """One input: a video file, or a frame folder (`frames/` without poses.csv); ids as for ingest."""

    scene: str
    trajectory: str
    path: pathlib.Path


class VideoError(Exception):
    """An input that cannot be staged; the message names the file (and frame)."""


def is_video_file(path: pathlib.Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def stage_video(source: VideoSource, staging: str | pathlib.Path, config: VideoConfig,
                staging_config: StagingConfig = StagingConfig()) -> CaptureResult:
    """Stage one input; the result says captured, cached or failed (with why)."""
    start = time.perf_counter()
    staging = pathlib.Path(staging)

    def result(status: str, reason: str = "", frames: int = 0, path: str | None = None,
               fingerprint: str = "") -> CaptureResult:
        return CaptureResult(source.scene, source.trajectory, status, reason, frames, (), "video",  # type: ignore[arg-type]
                             time.perf_counter() - start, path, str(source.path), fingerprint)

    try:
        fingerprint = _fingerprint(source.path, config, staging_config)
        if config.resume and staged_fingerprint(staging, source.scene, source.trajectory) == fingerprint:
            folder = trajectory_dir(staging, source.scene, source.trajectory)
            meta = json.loads((folder / "meta.json").read_text())
            return result("cached", frames=int(meta["frames"]), path=str(folder), fingerprint=fingerprint)
        if source.path.is_file():
            path, frames = _stage_file(source, staging, config, staging_config, fingerprint)
        else:
            path, frames = _stage_folder(source, staging, config, fingerprint)
        return result("captured", frames=frames, path=str(path), fingerprint=fingerprint)
    except (VideoError, OSError) as exc:
        return result("failed", str(exc))
    except Exception as exc:  # one input's failure, of any kind, is that input's failed row
        return result("failed", f"{source.path}: unexpected {type(exc).__name__}: {exc}")


def _fingerprint(path: pathlib.Path, config: VideoConfig, staging_config: StagingConfig) -> str:
    digest = hashlib.sha256(json.dumps([config.max_frames, config.default_fps, staging_config.frame_format,
                                        staging_config.jpeg_quality]).encode())
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        stat = f.stat()
        digest.update(f"{f.relative_to(path) if f != path else f.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def _stage_file(source: VideoSource, staging: pathlib.Path, config: VideoConfig, staging_config: StagingConfig,
                fingerprint: str) -> tuple[pathlib.Path, int]:
    import av

    where = str(source.path)
    try:
        container = av.open(where)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"{where}: cannot be opened as video ({exc})") from None
    writer = StagingWriter(staging, source.scene, source.trajectory, staging_config, posed=False)
    try:
        with container:
            if not container.streams.video:
                raise VideoError(f"{where}: has no video stream")
            stream = container.streams.video[0]
            codec = stream.codec_context.name if stream.codec_context is not None else "?"
            times: list[float] = []
            size = None
            try:
                for frame in container.decode(stream):
                    if config.max_frames is not None and len(times) >= config.max_frames:
                        break
                    image = frame.to_ndarray(format="bgr24")
                    if size is None:
                        size = image.shape[:2]
                        if size[0] * size[1] > config.max_pixels:
                            raise VideoError(f"{where}: {size[1]}x{size[0]} frames are over video.max_pixels "
                                             f"({config.max_pixels:,})")
                    elif image.shape[:2] != size:
                        raise VideoError(f"{where}: frame {len(times)} is {image.shape[1]}x{image.shape[0]}, "
                                         f"the first was {size[1]}x{size[0]}")
                    t = frame.time if frame.time is not None else len(times) / float(stream.average_rate or 30)
                    if times and not t > times[-1]:
                        raise VideoError(f"{where}: frame {len(times)} has time {t:.6f} s, not after the previous "
                                         f"frame's {times[-1]:.6f} s")
                    times.append(float(t))
                    writer.add_image(image)
            except av.error.FFmpegError as exc:
                raise VideoError(f"{where}: decoding failed at frame {len(times)} (codec {codec}): {exc}") from None
            if len(times) < 2:
                raise VideoError(f"{where}: {len(times)} decodable video frames (a clip needs at least 2)")
            if config.max_frames is None or len(times) < config.max_frames:
                _check_complete(where, times, stream.frames, container.duration)
        assert size is not None
        t0 = times[0]
        frame_times = [round(t - t0, 9) for t in times]
        meta = _meta(source, frame_times, size, fingerprint, codec=codec)
        return writer.commit(meta), len(times)
    except BaseException:
        writer.abort()
        raise


def _check_complete(where: str, times: list[float], declared_frames: int, duration_us: int | None) -> None:
    """A file that decodes to fewer frames than its container declares, or that covers clearly less
    time than its stated duration, was cut short (a truncated download or copy): VideoError."""
    if declared_frames and len(times) < declared_frames:
        raise VideoError(f"{where}: truncated: {len(times)} of the {declared_frames} frames its container declares "
                         "decode")
    dt = float(np.median(np.diff(times)))
    covered = times[-1] - times[0] + dt
    if duration_us and covered < 0.9 * duration_us / 1e6 - 2 * dt:
        raise VideoError(f"{where}: truncated: its frames cover {covered:.2f} s of the {duration_us / 1e6:.2f} s "
                         "its container states")


def _stage_folder(source: VideoSource, staging: pathlib.Path, config: VideoConfig,
                  fingerprint: str) -> tuple[pathlib.Path, int]:
    import PIL.Image

    frames_dir = source.path / "frames"
    if not frames_dir.is_dir():
        raise VideoError(f"{frames_dir}: missing (a frame folder holds its images in frames/)")
    files = sorted(p for p in frames_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len({p.suffix.lower() for p in files}) > 1:
        raise VideoError(f"{frames_dir}: mixed image types {sorted({p.suffix for p in files})}")
    if config.max_frames is not None:
        files = files[:config.max_frames]
    if len(files) < 2:
        raise VideoError(f"{frames_dir}: {len(files)} frames (a clip needs at least 2)")
    meta_path = source.path / "meta.json"
    given = {}
    if meta_path.is_file():
        try:
            given = json.loads(meta_path.read_text())
        except ValueError as exc:
            raise VideoError(f"{meta_path}: not valid JSON: {exc}") from None
        if not isinstance(given, dict):
            raise VideoError(f"{meta_path}: expected a JSON object")
    fps = given.get("fps", config.default_fps)
    if fps is None:
        raise VideoError(f"{meta_path}: no fps given (and video.default_fps is not set)")
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not math.isfinite(fps) or not 0 < fps <= 240:
        raise VideoError(f"{meta_path}: key 'fps': {json.dumps(fps)} is not a frame rate in (0, 240]")
    size = None
    for row, path in enumerate(files):
        try:
            with PIL.Image.open(path) as image:
                shape = (image.size[1], image.size[0])
                image.verify()
        except (OSError, ValueError, SyntaxError, PIL.Image.DecompressionBombError):
            raise VideoError(f"{path}: unreadable image (frame {row})") from None
        if shape[0] * shape[1] > config.max_pixels:
            raise VideoError(f"{path}: {shape[1]}x{shape[0]} is over video.max_pixels ({config.max_pixels:,})")
        if size is None:
            size = shape
        elif shape != size:
            raise VideoError(f"{path}: {shape[1]}x{shape[0]} differs from the first frame's {size[1]}x{size[0]} "
                             f"(frame {row})")
    assert size is not None
    writer = StagingWriter(staging, source.scene, source.trajectory, StagingConfig(), posed=False)
    try:
        for row, src in enumerate(files):
            dst = writer.frame_path(row, ".jpg" if src.suffix.lower() == ".jpeg" else src.suffix.lower())
            try:
                os.link(src, dst)
            except OSError:  # another file system, or links not allowed: copy
                shutil.copyfile(src, dst)
        writer.frames = len(files)
        meta = _meta(source, [round(i / float(fps), 9) for i in range(len(files))], size, fingerprint,
                     caption=str(given.get("caption", "")), source_frames=[f.name for f in files])
        return writer.commit(meta), len(files)
    except BaseException:
        writer.abort()
        raise


def _meta(source: VideoSource, frame_times: list[float], size: tuple[int, int], fingerprint: str,
          **extra) -> dict:
    steps = np.diff(frame_times)
    return {"kind": VIDEO, "scene": source.scene, "trajectory": source.trajectory, "source": str(source.path),
            "caption": extra.pop("caption", ""), "fps": round(1.0 / float(np.median(steps)), 6),
            "frame_times": frame_times, "width": int(size[1]), "height": int(size[0]), "modalities": ["lit"],
            "fingerprint": fingerprint, **extra}


def staged_kind(meta: dict) -> str:
    """`video` for staged plain footage (no poses), `posed` for everything else."""
    return VIDEO if meta.get("kind") == VIDEO else "posed"
