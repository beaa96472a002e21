"""Loader batches (datasets.loader) -> model inputs: random crops of F frames, pixels in [-1, 1],
per-frame actions (conditioning.frame_actions). No Ray import."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from annotate.actions import ActionSpec
from common.config import from_dict
from datasets.device_decode import decode_frames
from datasets.loader import LoaderConfig, make_loader
from datasets.samples import VIDEO
from training.conditioning import frame_actions
from training.config import DataConfig


@dataclass(frozen=True, eq=False)
class ClipBatch:
    frames: torch.Tensor  # (B, F, 3, H, W) uint8 on the host, float in [-1, 1] after `to`
    actions: torch.Tensor  # (B, F, 13) per frame: frame t carries A_{t-1}, frame 0 static
    poses: torch.Tensor  # (B, F, 4, 4) float64 camera-to-world
    posed: torch.Tensor | None = None  # (B,) bool: False for plain video samples (placeholder actions/poses)
    # memory context (training/context.py): the first `clean` frames are given clean (1: an
    # image-to-video clip), and `times` (F,) are the frames' time indices (None: 0..F-1)
    clean: int = 1
    times: torch.Tensor | None = None

    def __post_init__(self) -> None:
        b, f = self.frames.shape[:2]
        if self.actions.shape[:2] != (b, f) or self.poses.shape[:2] != (b, f):
            raise ValueError(f"clip batch: frames {tuple(self.frames.shape)}, actions {tuple(self.actions.shape)}, "
                             f"poses {tuple(self.poses.shape)} disagree")
        if self.posed is not None and self.posed.shape != (b,):
            raise ValueError(f"clip batch: posed {tuple(self.posed.shape)} for {b} clips")
        if not 1 <= self.clean <= f:
            raise ValueError(f"clip batch: {self.clean} clean frames of {f} (at least the first is clean)")
        if self.times is not None and self.times.shape != (f,):
            raise ValueError(f"clip batch: times {tuple(self.times.shape)} for {f} frames")

    def to(self, device: torch.device) -> ClipBatch:
        frames = self.frames.to(device, non_blocking=True)
        if frames.dtype == torch.uint8:
            frames = to_unit(frames)
        return ClipBatch(frames, self.actions.to(device, non_blocking=True).float(),
                         self.poses.to(device, non_blocking=True),
                         None if self.posed is None else self.posed.to(device, non_blocking=True), self.clean,
                         None if self.times is None else self.times.to(device))


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return frames.float() / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255] (clamped, rounded)."""
    return ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def crop(batch: dict[str, Any], frames: int, generator: torch.Generator | None = None) -> ClipBatch:
    """A random window of `frames` frames from each sample of a loader batch (crops stay uint8)."""
    total = batch["frames"].shape[1]
    if frames > total:
        raise ValueError(f"cannot crop {frames} frames from samples of {total} ({batch['key'][:3]} ...); "
                         f"build longer windows or train on fewer frames")
    posed = batch.get("posed")
    if frames == total:  # already a window of this length (the loader's crop_frames): no copy
        return ClipBatch(batch["frames"], frame_actions(batch["actions"]), batch["poses"], posed)
    b = batch["frames"].shape[0]
    starts = torch.randint(0, total - frames + 1, (b,), generator=generator)
    idx = starts[:, None] + torch.arange(frames)
    rows = torch.arange(b)[:, None]
    return ClipBatch(batch["frames"][rows, idx], frame_actions(batch["actions"][rows, idx[:, :-1]]),
                     batch["poses"][rows, idx], posed)


def stream(config: DataConfig, seed: int, device: torch.device | None = None) -> Iterator[dict[str, Any]]:
    """Endless shuffled batches of random `config.frames`-frame windows from the shards (resampled:
    every worker draws shards forever). `crop` on them is then the identity. With
    `data.decode: device` the workers pass the JPEG bytes on and the frames are decoded on `device`
    (datasets.device_decode)."""
    if not config.shards:
        raise ValueError("data.shards is empty: pass --shards (a path, brace pattern or pipe: URL)")
    on_device = config.decode == "device"
    if on_device and device is None:
        raise ValueError("data.decode: device needs the training device")
    # the loader decodes only each sample's random window of `frames` frames (one in every `frame_step`)
    loader_config = LoaderConfig(urls=config.shards, batch_size=config.batch_size,
                                 shuffle_buffer=config.shuffle_buffer, seed=seed, resampled=True,
                                 crop_frames=config.frames, frames="jpeg" if on_device else "decoded",
                                 frame_step=config.frame_step)
    for batch in make_loader(loader_config, num_workers=config.workers):
        yield decode_frames(batch, device) if on_device and device is not None else batch


class ActionSpecGuard:
    """The action binning and frame rate of the shards a run trains on (each sample's `action_spec`
    and `fps`, as the loader plays it: `data.frame_step` divides it), recorded for the checkpoint, so
    evaluation and play command the model the same way; shards that mix either, or a student's shards
    unlike its teacher's, are an error naming the sample."""

    def __init__(self, expected: Mapping[str, Any] | None = None, what: str = "the first batch",
                 video: bool = False, fps: float | None = None):
        """`video`: plain video samples (no actions: formats.md 3) are allowed, and skipped here.
        `fps`: the rate the samples must play at (None: whatever the first one has)."""
        self.spec: dict[str, Any] | None = dict(expected) if expected is not None else None
        self.fps = fps
        self.what, self.video = what, video

    def check(self, batch: Mapping[str, Any]) -> None:
        for key, meta in zip(batch["key"], batch["meta"]):
            if meta.get("kind") == VIDEO:
                if not self.video:
                    raise ValueError(f"sample {key}: a plain video sample (no actions or poses); this stage "
                                     "trains on action-labelled shards only")
                continue
            spec, fps = meta.get("action_spec"), meta.get("fps")
            if spec is None:
                raise ValueError(f"sample {key}: no action_spec in its json (not written by this project's build)")
            if not fps:
                raise ValueError(f"sample {key}: no fps in its json (not written by this project's build)")
            if self.spec is None:
                self.spec = dict(spec)
            elif spec != self.spec:
                raise ValueError(f"sample {key}: its action_spec {spec} differs from {self.what}'s {self.spec}; "
                                 "actions binned two ways cannot train one model")
            if self.fps is None:
                self.fps = float(fps)
            elif not same_rate(float(fps), self.fps):
                raise ValueError(f"sample {key}: plays at {float(fps):g} fps, {self.what} at {self.fps:g} fps; one "
                                 "model learns one frame rate (set data.frame_step so the rates agree)")


def checkpoint_action_spec(state: Mapping[str, Any]) -> ActionSpec:
    """The binning the checkpoint's training data used. Checkpoints from before it was recorded
    were trained on the build's default metric bins, the only binning the build then had."""
    raw = state.get("action_spec")
    return ActionSpec() if raw is None else from_dict(ActionSpec, raw, source="checkpoint action_spec")


#: the frame rate of checkpoints from before it was recorded: every build they trained on ran at 15 fps
LEGACY_FPS = 15.0


def same_rate(fps: float, reference: float) -> bool:
    """A frame rate (frames/s) is the reference's, up to float rounding (a 15 fps build read one frame in
    3 may play at 5.000000000000018): within 1e-6 of the reference, relatively."""
    return abs(fps - reference) <= 1e-6 * reference


def checkpoint_fps(state: Mapping[str, Any]) -> float:
    """The frame rate (frames/s) the checkpoint was trained at: its shards' rate over data.frame_step.
    Evaluation and play step the commanded camera at 1 / this."""
    fps = state.get("fps")
    return LEGACY_FPS if fps is None else float(fps)
