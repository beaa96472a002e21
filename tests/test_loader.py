"""datasets.loader: shards -> torch batches, in process and through DataLoader workers."""

from __future__ import annotations

import tarfile

import cv2
import numpy as np
import pytest
import torch
import webdataset as wds

from datasets.loader import LoaderConfig, collate, decode_batch, decode_rgb, decode_sample, make_loader
from datasets.samples import npy_bytes, npy_load
from tests.training_helpers import write_tiny_shards


def members(pattern: str, folder) -> dict[str, dict[str, bytes]]:
    out: dict[str, dict[str, bytes]] = {}
    for shard in sorted(folder.glob("train-*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar:
                key, _, ext = m.name.partition(".")
                out.setdefault(key, {})[ext] = tar.extractfile(m).read()  # type: ignore[union-attr]
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_hold_every_sample_decoded(tmp_path, workers):
    pattern = write_tiny_shards(tmp_path, clips=8, frames=5, height=16, width=24)
    truth = members(pattern, tmp_path)
    config = LoaderConfig(urls=pattern, batch_size=3, shuffle_buffer=0, partial_batches=True)
    seen = {}
    for batch in make_loader(config, num_workers=workers):
        assert batch["frames"].shape[1:] == (5, 3, 16, 24) and batch["frames"].dtype == torch.uint8
        assert batch["actions"].shape[1:] == (4, 13) and batch["poses"].dtype == torch.float64
        for i, key in enumerate(batch["key"]):
            seen[key] = {name: batch[name][i] for name in ("frames", "actions", "poses")}
    assert sorted(seen) == sorted(truth)  # each sample once (workers split the shards)
    for key, got in seen.items():
        expected = np.stack([decode_rgb(truth[key][f"{t:04d}.jpg"]) for t in range(5)])
        assert np.array_equal(got["frames"].permute(0, 2, 3, 1).numpy(), expected)
        assert np.array_equal(got["actions"].numpy(), npy_load(truth[key]["actions.npy"]))
        assert np.array_equal(got["poses"].numpy(), npy_load(truth[key]["poses.npy"]))


def test_batch_decode_equals_per_sample_decode_and_rejects_mixed_clips(tmp_path):
    pattern = write_tiny_shards(tmp_path, clips=4, frames=5, height=16, width=24)
    raw = list(wds.WebDataset(pattern, shardshuffle=False, empty_check=False))
    direct = decode_batch(raw)
    staged = collate([decode_sample(s) for s in raw])
    for name in ("frames", "actions", "motion", "poses", "intrinsics"):
        assert torch.equal(direct[name], staged[name]), name
    assert direct["key"] == staged["key"] and direct["meta"] == staged["meta"]
    short = dict(raw[1])
    del short["0004.jpg"]
    with pytest.raises(ValueError, match="4 frames, the batch has 5"):
        decode_batch([raw[0], short])
    broken = dict(raw[1])
    broken["0002.jpg"] = b"not a jpeg"
    with pytest.raises(ValueError, match=r"\.0002\.jpg: cannot decode JPEG"):
        decode_batch([raw[0], broken])
    cut = dict(raw[1])  # its header is whole, the frame is decoded in place: the cut is still named
    cut["0003.jpg"] = cut["0003.jpg"][: len(cut["0003.jpg"]) * 2 // 3]
    with pytest.raises(ValueError, match=r"\.0003\.jpg: cannot decode JPEG"):
        decode_batch([raw[0], cut])
    bigger = dict(raw[1])
    bigger["0001.jpg"] = cv2.imencode(".jpg", np.zeros((16, 32, 3), np.uint8))[1].tobytes()
    with pytest.raises(ValueError, match=r"\.0001\.jpg: frame size \(16, 32, 3\) differs from \(16, 24, 3\)"):
        decode_batch([raw[0], bigger])
    odd = dict(raw[1])
    odd["actions.npy"] = npy_bytes(npy_load(odd["actions.npy"])[:2])
    with pytest.raises(ValueError, match=r"a batch mixes actions of shapes.*\(2, 13\)"):
        decode_batch([raw[0], odd])


def test_a_batch_lives_in_one_buffer_with_aligned_tensors(tmp_path):
    pattern = write_tiny_shards(tmp_path, clips=3, frames=5, height=16, width=24)
    raw = list(wds.WebDataset(pattern, shardshuffle=False, empty_check=False))
    buffers = []

    def buffer(nbytes):
        buffers.append(torch.full((nbytes,), 255, dtype=torch.uint8))  # garbage that must be overwritten
        return buffers[-1]

    batch = decode_batch(raw, 3, np.random.default_rng(1), buffer)
    assert len(buffers) == 1
    base = buffers[0].data_ptr()
    for name in ("frames", "actions", "motion", "poses", "intrinsics", "crop_start"):
        tensor = batch[name]
        assert tensor.untyped_storage().data_ptr() == base and (tensor.data_ptr() - base) % 64 == 0, name
    plain = decode_batch(raw, 3, np.random.default_rng(1))
    for name in ("frames", "actions", "motion", "poses", "intrinsics", "crop_start"):
        assert torch.equal(batch[name], plain[name]), name


def _ddp_rank(rank: int, world: int, init: str, pattern: str, out: str) -> None:
    import json

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        config = LoaderConfig(urls=pattern, batch_size=2, shuffle_buffer=0, partial_batches=True)
        keys = [k for batch in make_loader(config, num_workers=0) for k in batch["key"]]
        with open(f"{out}.{rank}", "w") as f:
            json.dump(keys, f)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_read_disjoint_shards_that_cover_the_data(tmp_path):
    """A real two-process gloo group: split_by_node gives each rank its own shards."""
    import json

    import torch.multiprocessing as mp

    pattern = write_tiny_shards(tmp_path / "shards", clips=16, frames=3, height=8, width=8)  # 4 shards
    out = str(tmp_path / "keys")
    mp.spawn(_ddp_rank, args=(2, f"file://{tmp_path / 'rendezvous'}", pattern, out), nprocs=2, join=True)
    per_rank = [json.loads((tmp_path / f"keys.{r}").read_text()) for r in range(2)]
    assert all(per_rank) and not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == sorted(members(pattern, tmp_path / "shards"))


def test_crop_decodes_a_window_and_cuts_the_arrays_to_match(tmp_path):
    pattern = write_tiny_shards(tmp_path, clips=6, frames=7, height=16, width=24)
    truth = members(pattern, tmp_path)
    config = LoaderConfig(urls=pattern, batch_size=3, shuffle_buffer=0, crop_frames=3)
    starts = set()
    for batch in make_loader(config, num_workers=0):
        assert batch["frames"].shape[1] == 3 and batch["actions"].shape[1] == 2 and batch["poses"].shape[1] == 3
        for i, key in enumerate(batch["key"]):
            s = int(batch["crop_start"][i])
            starts.add(s)
            expected = np.stack([decode_rgb(truth[key][f"{t:04d}.jpg"]) for t in range(s, s + 3)])
            assert np.array_equal(batch["frames"][i].permute(0, 2, 3, 1).numpy(), expected)
            assert np.array_equal(batch["actions"][i].numpy(), npy_load(truth[key]["actions.npy"])[s:s + 2])
            assert np.array_equal(batch["poses"][i].numpy(), npy_load(truth[key]["poses.npy"])[s:s + 3])
    assert len(starts) > 1  # windows are drawn, not fixed
    raw = list(wds.WebDataset(pattern, shardshuffle=False, empty_check=False))[:2]
    with pytest.raises(ValueError, match="cannot crop 9 frames from 7"):
        decode_batch(raw, 9, np.random.default_rng(0))
    with pytest.raises(ValueError, match="needs an rng"):
        decode_batch(raw, 3)
