"""The loader's undecoded-JPEG batches (LoaderConfig.frames = "jpeg") decoded where they are used
(datasets.device_decode): the same batches as the workers' own decode, through workers and pooled
buffers too; the trainer's data.decode: device; nvJPEG on a GPU where there is one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from annotate.actions import ActionSpec, encode_actions
from augment.make import encode_jpeg
from common.config import to_dict
from datasets.device_decode import decode_frames
from datasets.loader import LoaderConfig, decode_batch, make_loader
from datasets.samples import Clip, sample_key
from annotate.geometry import integrate
from tests.training_helpers import random_motion, random_pose, write_tiny_shards
from training.config import DataConfig
from training.data import stream


def _batches(urls: str, frames: str, workers: int, crop: int | None = None, step: int = 1) -> list[dict]:
    config = LoaderConfig(urls=urls, batch_size=3, shuffle_buffer=0, seed=4, crop_frames=crop, frames=frames,
                          partial_batches=True, frame_step=step)
    out = []
    for batch in make_loader(config, num_workers=workers, pin_memory=False):
        out.append({k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in batch.items()})
    return out


@pytest.mark.parametrize("workers", [0, 1])
def test_jpeg_batches_decoded_here_equal_the_workers_decode(tmp_path, workers):
    urls = write_tiny_shards(tmp_path / "shards", clips=7, frames=6, height=16, width=24)
    decoded = _batches(urls, "decoded", workers)
    raw = _batches(urls, "jpeg", workers)
    assert len(raw) == len(decoded) == 3  # 3 + 3 + a partial 1
    for want, got in zip(decoded, raw):
        assert "frames" not in got and got["jpeg"].dtype == torch.uint8
        assert got["jpeg_offsets"].shape == (len(got["key"]), 7)
        here = decode_frames(got, torch.device("cpu"))
        assert "jpeg" not in here and here["key"] == want["key"]
        assert here["frames"].shape == want["frames"].shape == (len(want["key"]), 6, 3, 16, 24)
        assert torch.equal(here["frames"], want["frames"].contiguous())
        for name in ("actions", "motion", "poses", "intrinsics", "posed"):
            assert torch.equal(here[name], want[name]), name


@pytest.mark.parametrize("step", [1, 3])
def test_crops_keep_the_same_windows(tmp_path, step):
    urls = write_tiny_shards(tmp_path / "shards", clips=4, frames=8, height=16, width=16)
    decoded = _batches(urls, "decoded", 0, crop=3, step=step)
    raw = _batches(urls, "jpeg", 0, crop=3, step=step)
    for want, got in zip(decoded, raw):
        assert torch.equal(got["crop_start"], want["crop_start"])
        assert got["jpeg_offsets"].shape[1] == 4  # 3 frames' JPEGs, one in every `step`
        assert torch.equal(decode_frames(got, torch.device("cpu"))["frames"], want["frames"].contiguous())
        for name in ("actions", "motion", "poses"):
            assert torch.equal(got[name], want[name]), name


def _sample(name: str, height: int, width: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    motion = random_motion(rng, 3)
    clip = Clip(key=sample_key("room_0001", name, 0, False),
                frames_jpeg=tuple(encode_jpeg(im, 90) for im in rng.integers(0, 256, (4, height, width, 3),
                                                                                dtype=np.uint8)),
                poses=integrate(random_pose(rng), motion), motion=motion,
                actions=encode_actions(motion, 1 / 15, ActionSpec()),
                meta={"scene": "room_0001", "intrinsics": {"fx": 8.0, "fy": 8.0, "cx": 8.0, "cy": 8.0},
                      "action_spec": to_dict(ActionSpec())})
    sample = clip.to_wds_sample()
    return sample


def test_a_batch_of_two_frame_sizes_names_the_sample():
    batch = decode_batch([_sample("a", 16, 16, 0), _sample("b", 16, 24, 1)], jpeg=True)
    with pytest.raises(ValueError, match=r"room_0001.*b.*frame 0 is \(3, 16, 24\)"):
        decode_frames(batch, torch.device("cpu"))


def test_a_broken_jpeg_is_an_error():
    sample = _sample("a", 16, 16, 0)
    name = next(k for k in sample if k.endswith(".jpg"))
    sample[name] = sample[name][:20]
    batch = decode_batch([sample], jpeg=True)
    with pytest.raises(ValueError, match="cannot decode the JPEG"):
        decode_frames(batch, torch.device("cpu"))


def test_the_trainer_stream_decodes_on_its_device(tmp_path):
    urls = write_tiny_shards(tmp_path / "shards", clips=4, frames=6, height=16, width=16)
    config = DataConfig(shards=urls, frames=5, batch_size=2, workers=0, decode="device")
    batch = next(iter(stream(config, seed=0, device=torch.device("cpu"))))
    assert batch["frames"].shape == (2, 5, 3, 16, 16) and batch["frames"].dtype == torch.uint8
    assert json.dumps(batch["meta"][0])  # the rest of the batch as it was
    with pytest.raises(ValueError, match="needs the training device"):
        next(iter(stream(config, seed=0)))
    with pytest.raises(ValueError, match="data.decode must be"):
        DataConfig(shards=urls, decode="gpu")  # type: ignore[arg-type]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG needs a CUDA device")
def test_nvjpeg_on_the_gpu_matches_the_cpu_decode(tmp_path):
    pytest.importorskip("torchvision")
    urls = write_tiny_shards(tmp_path / "shards", clips=4, frames=6, height=72, width=128)
    raw = _batches(urls, "jpeg", 0)
    for got in raw:
        gpu = decode_frames(got, torch.device("cuda"))["frames"]
        cpu = decode_frames(got, torch.device("cpu"))["frames"]
        assert gpu.device.type == "cuda" and gpu.shape == cpu.shape
        diff = (gpu.cpu().int() - cpu.int()).abs()
        assert diff.max() <= 8 and diff.float().mean() < 0.5, (diff.max(), diff.float().mean())
