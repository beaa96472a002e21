"""Stream shards into torch batches. No Ray import: this is what trainers run.

    from datasets.loader import LoaderConfig, make_loader
    loader = make_loader(LoaderConfig(urls="out/demo/shards/train-{000000..000009}.tar", batch_size=8), num_workers=4)
    for batch in loader:
        batch["frames"]      # uint8 (B, T, 3, H, W), RGB: a view of channels-last memory (.contiguous() packs it)
        batch["actions"]     # float32 (B, T-1, 13)
        batch["motion"]      # float32 (B, T-1, 6)
        batch["poses"]       # float64 (B, T, 4, 4)
        batch["intrinsics"]  # float32 (B, 4): fx, fy, cx, cy
        batch["posed"]       # bool (B,): False for a `video` sample (no poses: placeholders above)
        batch["meta"]        # list of the samples' json dicts

URLs: a path, a brace pattern, a list, or `pipe:` commands (webdataset's gopen). Shards are split
across DDP ranks (`split_by_node`) and DataLoader workers (`split_by_worker`); with
`resampled=True` shards are drawn with replacement forever (use `epoch_samples` to size an epoch),
which keeps every rank busy however the shards divide. Samples go through a shuffle buffer of
compressed samples before decoding (webdataset's advice: shuffle before decode).

Workers decode each batch into one shared buffer that holds all its tensors, reused once the main
process has dropped every tensor of that batch (datasets.pool; `pool_slots`). A batch's tensors are
views of that buffer: keep them as long as needed, but clone before sending them to another process,
or set `pool_slots=0`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np
import simplejpeg
import torch
import webdataset as wds

from annotate.actions import ActionSpec, encode_actions
from annotate.geometry import relative_motion
from common.config import from_dict
from common.stopping import ignore_in_worker
from datasets.pool import BufferPool
from datasets.samples import VIDEO, frame_members, npy_load


@dataclass(frozen=True)
class LoaderConfig:
    urls: str | tuple[str, ...]
    batch_size: int = 8
    shuffle_buffer: int = 256  # samples held (compressed) for shuffling; 0: stream order
    seed: int = 0  # shard order (sample shuffling inside the buffer is per process)
    resampled: bool = False  # endless: shards drawn with replacement
    epoch_samples: int | None = None  # with resampled, samples per epoch of each DataLoader worker
    partial_batches: bool = False  # keep a short final batch
    crop_frames: int | None = None  # decode only a random window of this many frames per sample
    # every `frame_step`-th frame of each sample (crop_frames counts the frames taken): 3 reads a 15 fps
    # build at 5 fps. Motion and actions are recomputed from the taken poses (`subsample_labels`)
    frame_step: int = 1
    # shared frame buffers each DataLoader worker reuses once the main process has dropped a batch
    # (datasets.pool); 0: a fresh buffer per batch (needed if batches are sent on to other processes)
    pool_slots: int = 8
    # "decoded": workers decode the JPEGs into batch["frames"]; "jpeg": they pass each frame's JPEG
    # bytes on undecoded (batch["jpeg"], batch["jpeg_offsets"]) for datasets.device_decode to decode
    # where the batch is consumed (on the GPU with nvJPEG, for trainers whose CPUs cannot keep up)
    frames: Literal["decoded", "jpeg"] = "decoded"

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.shuffle_buffer < 0 or self.pool_slots < 0:
            raise ValueError("loader: batch_size must be >= 1, shuffle_buffer and pool_slots >= 0")
        if self.frames not in ("decoded", "jpeg"):
            raise ValueError(f"loader: frames must be 'decoded' or 'jpeg', got {self.frames!r}")
        if self.crop_frames is not None and self.crop_frames < 2:
            raise ValueError(f"loader: crop_frames must be >= 2 or None, got {self.crop_frames}")
        if self.frame_step < 1:
            raise ValueError(f"loader: frame_step must be >= 1, got {self.frame_step}")


def decode_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Raw webdataset sample (bytes) -> arrays; frames (T, 3, H, W) RGB."""
    names = _frame_names(sample)
    frames = np.empty((len(names), *_frame_shape(sample, names[0])), dtype=np.uint8)
    decode_frames_into(frames, sample, names)
    return {**decode_fields(sample), "frames": torch.from_numpy(frames).permute(0, 3, 1, 2)}


def _frame_names(sample: dict[str, Any]) -> list[str]:
    names = frame_members(sample)
    if not names:
        raise ValueError(f"{sample.get('__key__')}: no frame members in {sample.get('__url__')}")
    return names


def _frame_shape(sample: dict[str, Any], name: str) -> tuple[int, int, int]:
    """(H, W, 3) of a frame member, from its JPEG header alone."""
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(sample[name])
    except ValueError as exc:
        raise _undecodable(sample, name, exc) from exc
    return height, width, 3


def _undecodable(sample: dict[str, Any], name: str, exc: ValueError) -> ValueError:
    return ValueError(f"{sample['__key__']}.{name}: cannot decode JPEG in {sample.get('__url__')}: {exc}")


def decode_frames_into(out: np.ndarray, sample: dict[str, Any], names: Sequence[str] | None = None) -> None:
    """Decode the sample's frames (or the given frame members) straight into `out` (T, H, W, 3) uint8,
    C-contiguous (a clear error if T or a frame's size differ): libjpeg-turbo writes each frame in
    place, so no decoded frame is allocated, copied and freed (at 1280x720 on a 2-core VM the copy
    alone cost as much as the decode)."""
    names = _frame_names(sample) if names is None else names
    if len(names) != out.shape[0]:
        raise ValueError(f"{sample['__key__']}: {len(names)} frames, the batch has {out.shape[0]} "
                         f"({sample.get('__url__')}); build with one window.frames or batch by shape")
    for i, name in enumerate(names):
        shape = _frame_shape(sample, name)
        if shape != out.shape[1:]:
            raise ValueError(f"{sample['__key__']}.{name}: frame size {shape} differs from "
                             f"{out.shape[1:]} in {sample.get('__url__')}")
        try:
            decode_jpeg_rgb(sample[name], out[i])
        except ValueError as exc:
            raise _undecodable(sample, name, exc) from exc


def decode_fields(sample: dict[str, Any]) -> dict[str, Any]:
    """Everything but the frames: key, actions, motion, poses, intrinsics, posed, meta. A `video`
    sample (plain footage: no poses) gets posed=False and placeholders of the same shapes, so that
    it batches with posed ones: zero actions and motion, identity poses, NaN intrinsics. A trainer
    masks them with `posed` (the teacher drops their conditioning)."""
    import json

    meta = json.loads(sample["json"])
    k = meta.get("intrinsics") or {}
    posed = meta.get("kind") != VIDEO
    if posed:
        actions = torch.from_numpy(npy_load(sample["actions.npy"]))
        motion = torch.from_numpy(npy_load(sample["motion.npy"]))
        poses = torch.from_numpy(npy_load(sample["poses.npy"]))
    else:
        t = len(_frame_names(sample))
        actions = torch.zeros(t - 1, 13)  # the action vector (formats.md 3)
        motion = torch.zeros(t - 1, 6)
        poses = torch.eye(4, dtype=torch.float64).expand(t, 4, 4).clone()
    return {
        "key": sample["__key__"],
        "actions": actions,
        "motion": motion,
        "poses": poses,
        "posed": torch.tensor(posed),
        "intrinsics": torch.tensor([k.get("fx", np.nan), k.get("fy", np.nan), k.get("cx", np.nan), k.get("cy", np.nan)],
                                   dtype=torch.float32),
        "meta": meta,
    }


def subsample_labels(fields: dict[str, Any], taken: slice, step: int) -> dict[str, Any]:
    """A sample's fields (`decode_fields`) at the frames `taken` (every `step`-th): the poses taken, the
    motion between them and its actions recomputed by the annotator's rule (conventions.md 2-3: the
    sample's own binning, `action_spec`, and translation scale, at the interval step / fps), and
    meta["fps"] divided by `step`. A plain video sample keeps placeholder labels."""
    meta = dict(fields["meta"])
    fps = meta.get("fps")
    if not fps:
        raise ValueError(f"sample {fields['key']}: no fps in its json, so it cannot be read one frame in every {step}")
    meta["fps"] = float(fps) / step
    poses = fields["poses"][taken]
    n = len(poses) - 1
    if not bool(fields["posed"]):
        return {**fields, "actions": torch.zeros(n, fields["actions"].shape[1]), "motion": torch.zeros(n, 6),
                "poses": poses, "meta": meta}
    if "action_spec" not in meta:
        raise ValueError(f"sample {fields['key']}: no action_spec in its json, so its actions cannot be recomputed "
                         f"for one frame in every {step}")
    spec = from_dict(ActionSpec, meta["action_spec"], source=f"sample {fields['key']} action_spec")
    motion = relative_motion(poses.numpy())
    scale = meta.get("translation_scale") if spec.scaled else None
    actions = encode_actions(motion, step / float(fps), spec, scale)
    return {**fields, "actions": torch.from_numpy(actions), "motion": torch.from_numpy(motion.astype(np.float32)),
            "poses": poses, "meta": meta}


def decode_rgb(data: bytes) -> np.ndarray | None:
    """JPEG/PNG bytes -> (H, W, 3) uint8 RGB (OpenCV's direct RGB decode where it has one)."""
    buffer = np.frombuffer(data, np.uint8)
    if hasattr(cv2, "IMREAD_COLOR_RGB"):
        return cv2.imdecode(buffer, cv2.IMREAD_COLOR_RGB)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Decoded samples (decode_sample) -> a batch."""
    shapes = {tuple(s["frames"].shape) for s in samples}
    if len(shapes) > 1:
        raise ValueError(f"a batch mixes clip shapes {sorted(shapes)}: build with one window.frames and size, "
                         f"or batch by shape (keys {[s['key'] for s in samples][:4]} ...)")
    return _batch([{k: v for k, v in s.items() if k != "frames"} for s in samples],
                  torch.stack([s["frames"].permute(0, 2, 3, 1) for s in samples]))


def decode_jpeg_rgb(data: bytes, out: np.ndarray | None = None) -> np.ndarray:
    """JPEG bytes -> (H, W, 3) uint8 RGB, the loader's decode (libjpeg-turbo through simplejpeg, the
    same pixels as OpenCV's: accurate DCT, smooth upsampling), into `out` when given (C-contiguous,
    its size at least the frame's); a ValueError for bytes that are not a whole JPEG."""
    return simplejpeg.decode_jpeg(data, colorspace="RGB", buffer=out)


ARRAYS = ("actions", "motion", "poses", "intrinsics", "posed")  # per-sample tensors, stacked into the batch


def decode_batch(samples: Sequence[dict[str, Any]], crop_frames: int | None = None,
                 rng: np.random.Generator | None = None,
                 buffer: Callable[[int], torch.Tensor] | None = None, jpeg: bool = False,
                 frame_step: int = 1) -> dict[str, Any]:
    """Raw samples -> a batch whose tensors all live in one flat uint8 buffer, `buffer(nbytes)`
    (default: ordinary memory). Every frame is decoded straight into the batch's (B, T, H, W, 3)
    region and comes out as a (B, T, 3, H, W) view; a DataLoader worker passes a shared buffer
    (datasets.pool), so the whole batch reaches the main process as one shared-memory file.

    With `crop_frames`, each sample contributes a random window of that many frames (drawn from
    `rng`): only those JPEGs are decoded, and actions, motion and poses are cut to match;
    batch["crop_start"] holds each window's first frame.

    With `frame_step` k, every k-th frame is taken (a window then spans (crop_frames - 1) k + 1 stored
    frames), its motion and actions recomputed from the taken poses and meta["fps"] divided by k
    (`subsample_labels`): the samples as a build at 1/k of their frame rate would have written them.

    With `jpeg`, the frames are not decoded: batch["jpeg"] holds the window's JPEG bytes of every
    sample back to back, frame by frame, batch["jpeg_offsets"] (B, T + 1) where each frame's bytes
    start and end, and datasets.device_decode turns them into batch["frames"]."""
    if crop_frames is not None and rng is None:
        raise ValueError("decode_batch: crop_frames needs an rng (np.random.Generator) to draw the windows")
    windows = []
    for sample in samples:
        names = _frame_names(sample)
        span = len(names) if crop_frames is None else (crop_frames - 1) * frame_step + 1
        if span > len(names):
            raise ValueError(f"{sample['__key__']}: cannot crop {crop_frames} frames"
                             f"{f', one in every {frame_step},' if frame_step > 1 else ''} from {len(names)} "
                             f"({sample.get('__url__')})")
        start = 0
        if crop_frames is not None:
            assert rng is not None
            start = int(rng.integers(0, len(names) - span + 1))
        windows.append((start, names[start:start + span:frame_step]))
    fields = []
    for sample, (start, names) in zip(samples, windows):
        f = decode_fields(sample)
        stop = start + (len(names) - 1) * frame_step + 1
        if frame_step > 1:
            f = subsample_labels(f, slice(start, stop, frame_step), frame_step)
        elif crop_frames is not None:
            f.update(actions=f["actions"][start:stop - 1], motion=f["motion"][start:stop - 1],
                     poses=f["poses"][start:stop])
        fields.append(f)
    arrays = {name: _stack_shape(fields, name) for name in ARRAYS}
    if crop_frames is not None:
        arrays["crop_start"] = ((len(samples),), torch.int64)
    if jpeg:
        out = _jpeg_batch(samples, windows, fields, arrays, buffer or _plain_buffer)
        views = out
    else:
        shape = _frame_shape(samples[0], windows[0][1][0])
        specs = {"frames": ((len(samples), len(windows[0][1]), *shape), torch.uint8), **arrays}
        views = _carve((buffer or _plain_buffer), specs)
        frames = views["frames"].numpy()
        for b, (sample, (_, names)) in enumerate(zip(samples, windows)):
            decode_frames_into(frames[b], sample, names)
        out = _batch(fields, views["frames"], views)
    if crop_frames is not None:
        views["crop_start"].copy_(torch.tensor([start for start, _ in windows]))
        out["crop_start"] = views["crop_start"]
    return out


def _jpeg_batch(samples: Sequence[dict[str, Any]], windows: Sequence[tuple[int, Sequence[str]]],
                fields: Sequence[dict[str, Any]], arrays: dict[str, tuple[tuple[int, ...], torch.dtype]],
                buffer: Callable[[int], torch.Tensor]) -> dict[str, Any]:
    """decode_batch's undecoded form: the windows' JPEG bytes in one flat region with their offsets."""
    counts = {len(names) for _, names in windows}
    if len(counts) > 1:
        raise ValueError(f"a batch mixes windows of {sorted(counts)} frames (keys {[f['key'] for f in fields][:4]} "
                         "...): build with one window.frames or batch by shape")
    pieces = [sample[name] for sample, (_, names) in zip(samples, windows) for name in names]
    sizes = np.fromiter((len(p) for p in pieces), dtype=np.int64, count=len(pieces))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    specs = {"jpeg": ((int(offsets[-1]),), torch.uint8), "jpeg_offsets": ((len(samples), counts.pop() + 1), torch.int64),
             **arrays}
    views = _carve(buffer, specs)
    flat = views["jpeg"].numpy()
    for piece, start, stop in zip(pieces, offsets[:-1], offsets[1:]):
        flat[start:stop] = np.frombuffer(piece, np.uint8)
    per_sample = views["jpeg_offsets"]
    t = per_sample.shape[1] - 1
    starts = torch.from_numpy(offsets[:-1].reshape(len(samples), t))
    per_sample[:, :t].copy_(starts)
    per_sample[:, t].copy_(torch.from_numpy(offsets[t::t]))
    batch: dict[str, Any] = {name: torch.stack([f[name] for f in fields], out=views[name]) for name in ARRAYS}
    batch.update(jpeg=views["jpeg"], jpeg_offsets=per_sample, key=[f["key"] for f in fields],
                 meta=[f["meta"] for f in fields])
    if "crop_start" in views:
        batch["crop_start"] = views["crop_start"]
    return batch


def _stack_shape(fields: Sequence[dict[str, Any]], name: str) -> tuple[tuple[int, ...], torch.dtype]:
    """(B, *shape), dtype of the samples' `name` tensors stacked (a clear error if they differ)."""
    kinds = {(tuple(f[name].shape), f[name].dtype) for f in fields}
    if len(kinds) > 1:
        raise ValueError(f"a batch mixes {name} of shapes/dtypes {sorted(map(str, kinds))} "
                         f"(keys {[f['key'] for f in fields][:4]} ...)")
    shape, dtype = kinds.pop()
    return (len(fields), *shape), dtype


def _carve(buffer: Callable[[int], torch.Tensor],
           specs: dict[str, tuple[tuple[int, ...], torch.dtype]]) -> dict[str, torch.Tensor]:
    """One flat uint8 buffer cut into a tensor per spec (name -> shape, dtype), each 64-byte aligned."""
    spans, nbytes = {}, 0
    for name, (shape, dtype) in specs.items():
        size = math.prod(shape) * dtype.itemsize
        spans[name] = (nbytes, nbytes + size)
        nbytes += -(-size // 64) * 64
    flat = buffer(nbytes)
    return {name: flat[slice(*spans[name])].view(dtype).view(shape) for name, (shape, dtype) in specs.items()}


def _plain_buffer(nbytes: int) -> torch.Tensor:
    return torch.empty(nbytes, dtype=torch.uint8)


class _BatchDecoder:
    """decode_batch as the loader's collation. Random crops come from a generator made in the process
    that runs it (seeded by the loader seed and torch's per-worker seed, so workers draw different
    windows). In a DataLoader worker, each batch is decoded into one of the worker's pooled shared
    buffers (datasets.pool)."""

    def __init__(self, crop_frames: int | None, seed: int, pool_slots: int, jpeg: bool = False, frame_step: int = 1):
        self.crop_frames, self.seed, self.jpeg, self.frame_step = crop_frames, seed, jpeg, frame_step
        self.pool = BufferPool(pool_slots)
        self.rng: np.random.Generator | None = None

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if self.crop_frames is not None and self.rng is None:
            self.rng = np.random.default_rng([self.seed, torch.initial_seed()])
        if torch.utils.data.get_worker_info() is None:
            return decode_batch(samples, self.crop_frames, self.rng, jpeg=self.jpeg, frame_step=self.frame_step)
        return self.pool.fill(lambda buffer: decode_batch(samples, self.crop_frames, self.rng, buffer, self.jpeg,
                                                          self.frame_step))


def _batch(fields: Sequence[dict[str, Any]], frames: torch.Tensor,
           out: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The batch dict: frames (B, T, H, W, 3) as a (B, T, 3, H, W) view, the samples' arrays stacked
    (into `out[name]` where given), keys and metas."""
    batch: dict[str, Any] = {name: torch.stack([f[name] for f in fields], out=None if out is None else out[name])
                             for name in ARRAYS}
    batch["frames"] = frames.permute(0, 1, 4, 2, 3)  # (B, T, 3, H, W) view of channels-last memory
    batch["key"] = [f["key"] for f in fields]
    batch["meta"] = [f["meta"] for f in fields]
    return batch


def make_dataset(config: LoaderConfig) -> wds.WebDataset:
    urls = list(config.urls) if isinstance(config.urls, tuple) else config.urls
    dataset = wds.WebDataset(urls, resampled=config.resampled, shardshuffle=False if config.resampled else 100,
                             nodesplitter=None if config.resampled else wds.split_by_node,
                             workersplitter=wds.split_by_worker, seed=config.seed, empty_check=False)
    if config.shuffle_buffer:
        dataset = dataset.shuffle(config.shuffle_buffer, initial=config.shuffle_buffer // 2)
    # batch the raw (compressed) samples, then decode each batch into one buffer
    decode = _BatchDecoder(config.crop_frames, config.seed, config.pool_slots, config.frames == "jpeg",
                           config.frame_step)
    dataset = dataset.batched(config.batch_size, collation_fn=decode, partial=config.partial_batches)
    if config.epoch_samples is not None:
        dataset = dataset.with_epoch(max(1, config.epoch_samples // config.batch_size))
    return dataset


def make_loader(config: LoaderConfig, num_workers: int = 2, pin_memory: bool | None = None) -> wds.WebLoader:
    """A DataLoader over `make_dataset` (batching happens in the workers); batches come in pinned
    memory when `pin_memory` (default: when CUDA is available)."""
    # batches are ready as they come: DataLoader's default_convert would walk every meta dict, and
    # copy a worker's SharedBatch into a plain dict that travels as one shared file per tensor
    # workers leave SIGTERM/SIGUSR1 to their trainer, which saves before it exits (common/stopping.py)
    return wds.WebLoader(make_dataset(config), batch_size=None, num_workers=num_workers, collate_fn=_as_is,
                         persistent_workers=False, worker_init_fn=ignore_in_worker,
                         pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory)


def _as_is(batch: dict[str, Any]) -> dict[str, Any]:
    return batch

