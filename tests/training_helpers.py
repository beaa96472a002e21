"""Small synthetic inputs for the trainer tests: random tiny models, clip batches and shards."""

from __future__ import annotations

import contextlib
import os
import pathlib
import time
from collections.abc import Iterator
from dataclasses import asdict

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from annotate.actions import ActionSpec, encode_actions
from annotate.geometry import integrate
from augment.make import encode_jpeg
from common.config import to_dict
from datasets.samples import Clip, sample_key
from datasets.shards import ShardConfig, write_shards
from training.conditioning import frame_actions
from training.config import ModelConfig, preset
from training.data import ClipBatch
from training.model import VideoDiT
from training.runtime import save_checkpoint


@contextlib.contextmanager
def float64_deterministic() -> Iterator[None]:
    """float64 by default and deterministic algorithms, restored after (the student's exactness tests)."""
    torch.set_default_dtype(torch.float64)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_default_dtype(torch.float32)


def random_motion(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 6) smooth-ish relative motion: metres and degrees per frame."""
    return np.concatenate([rng.normal(0, 0.05, (n, 3)), rng.normal(0, 2.0, (n, 3))], axis=1)


def steady_motion(rng: np.random.Generator, n: int, turn: bool) -> np.ndarray:
    """(n, 6) one motion repeated: a translation (metres per frame) or a turn about one axis (degrees)."""
    step = np.zeros(6)
    if turn:
        step[3 + rng.integers(3)] = rng.choice([-1, 1]) * rng.uniform(0.2, 6.0)
    else:
        step[:3] = rng.normal(0, 0.05, 3)
    return np.tile(step, (n, 1))


def random_pose(rng: np.random.Generator) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = Rotation.random(random_state=rng.integers(1 << 31)).as_matrix()
    pose[:3, 3] = rng.normal(0, 3, 3)
    return pose


def tiny_config(**overrides: object) -> ModelConfig:
    return preset("tiny", **overrides)


def randomized_model(config: ModelConfig, seed: int = 0, dtype: torch.dtype = torch.float32) -> VideoDiT:
    """A model whose zero-initialised projections (adaLN, action/pose, output) are made non-zero,
    so every input reaches the output."""
    torch.manual_seed(seed)
    model = VideoDiT(config).to(dtype)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    return model.eval()


def tiny_teacher_checkpoint(path: pathlib.Path, config: ModelConfig | None = None, fps: float | None = None
                            ) -> VideoDiT:
    """A teacher checkpoint (training.teacher's layout, EMA = weights) of a randomized tiny model,
    trained (it says) at flow shift 3 and at `fps` (None: not recorded); returns the model."""
    config = config or tiny_config()
    model = randomized_model(config)
    save_checkpoint(path, {"model": model.state_dict(), "ema": model.state_dict(), "model_config": asdict(config),
                           "config": {"flow": {"shift": 3.0}}, "fps": fps})
    return model


def tiny_student_checkpoint(path: pathlib.Path, config: ModelConfig | None = None,
                            spec: ActionSpec | None = None, fps: float | None = None) -> pathlib.Path:
    """A student checkpoint (training.student_train's layout) of a randomized tiny model, blocks of 2,
    trained (it says) on data binned with `spec` (default bins), at `fps` (None: not recorded)."""
    config = config or tiny_config()
    save_checkpoint(path, {"model": randomized_model(config).state_dict(), "ema": None, "model_config": asdict(config),
                           "student_config": {"block_frames": 2}, "config": {},
                           "action_spec": to_dict(spec or ActionSpec()), "fps": fps})
    return path


def clip_batch(config: ModelConfig, batch: int, frames: int, seed: int = 0, dtype: torch.dtype = torch.float32
               ) -> ClipBatch:
    rng = np.random.default_rng(seed)
    motion = np.stack([random_motion(rng, frames - 1) for _ in range(batch)])
    poses = np.stack([integrate(random_pose(rng), m) for m in motion])
    actions = np.stack([encode_actions(m, 1 / 15, ActionSpec()) for m in motion])
    # smooth images so the model has structure to fit
    base = torch.from_numpy(rng.uniform(-1, 1, (batch, 1, config.channels, 4, 4))).to(dtype)
    frames_t = torch.nn.functional.interpolate(base[:, 0], size=(config.height, config.width_px), mode="bilinear",
                                               align_corners=False)[:, None].repeat(1, frames, 1, 1, 1)
    shift = torch.linspace(0, 0.3, frames, dtype=dtype).reshape(1, frames, 1, 1, 1)
    return ClipBatch((frames_t + shift).clamp(-1, 1), frame_actions(torch.from_numpy(actions).to(dtype)),
                     torch.from_numpy(poses))


def write_tiny_shards(folder: pathlib.Path, clips: int, frames: int, height: int, width: int, seed: int = 0,
                      spec: ActionSpec | None = None, fps: float = 15.0, steady: bool = False) -> str:
    """`clips` random samples in the build's sample layout at `fps`, actions binned with `spec`
    (default bins); `steady`: each clip repeats one motion whose rate any frame step keeps, a random
    translation (even clips) or a random turn about one axis (odd clips). Returns a brace pattern of
    the shards."""
    spec = spec or ActionSpec()
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(clips):
        motion = steady_motion(rng, frames - 1, turn=bool(i % 2)) if steady else random_motion(rng, frames - 1)
        poses = integrate(random_pose(rng), motion)
        images = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
        clip = Clip(key=sample_key("room_0001", f"t{i:03d}", i, False),
                    frames_jpeg=tuple(encode_jpeg(im, 90) for im in images), poses=poses, motion=motion,
                    actions=encode_actions(motion, 1 / fps, spec),
                    meta={"scene": "room_0001", "fps": fps, "intrinsics": {"fx": 8.0, "fy": 8.0, "cx": 8.0, "cy": 8.0},
                          "action_spec": to_dict(spec)})
        samples.append(clip.to_wds_sample())
    write_shards(samples, folder, "train", ShardConfig(max_samples=4))
    count = len(list(folder.glob("train-*.tar")))
    return str(folder / f"train-{{000000..{count - 1:06d}}}.tar")


def wait_until_group_gone(pgid: int, seconds: float, what: str) -> None:
    """Fail with `what` unless every process of the process group `pgid` has ended within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, what
        time.sleep(0.2)
