"""datasets.loader: shards -> torch batches, in process and through DataLoader workers."""

from __future__ import annotations

import json
import tarfile

import cv2
import numpy as np
import pytest
import torch
import webdataset as wds

from annotate.actions import ActionSpec, encode_actions
from annotate.geometry import relative_motion
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


def test_frame_step_takes_every_kth_frame_with_its_labels_recomputed(tmp_path):
    pattern = write_tiny_shards(tmp_path, clips=6, frames=9, height=16, width=24, fps=15.0)
    truth = members(pattern, tmp_path)
    raw = list(wds.WebDataset(pattern, shardshuffle=False, empty_check=False))
    spec = ActionSpec()
    starts = set()
    for seed in range(4):
        batch = decode_batch(raw, 3, np.random.default_rng(seed), frame_step=3)  # 3 frames spanning 7 stored
        assert batch["frames"].shape[1] == 3 and batch["actions"].shape[1:] == (2, 13)
        for i, key in enumerate(batch["key"]):
            s = int(batch["crop_start"][i])
            assert 0 <= s <= 2
            starts.add(s)
            taken = range(s, s + 7, 3)
            expected = np.stack([decode_rgb(truth[key][f"{t:04d}.jpg"]) for t in taken])
            assert np.array_equal(batch["frames"][i].permute(0, 2, 3, 1).numpy(), expected)
            poses = npy_load(truth[key]["poses.npy"])[list(taken)]
            assert np.array_equal(batch["poses"][i].numpy(), poses)
            motion = relative_motion(poses)
            np.testing.assert_allclose(batch["motion"][i].numpy(), motion, atol=1e-6)
            assert np.array_equal(batch["actions"][i].numpy(), encode_actions(motion, 3 / 15, spec))
            assert batch["meta"][i]["fps"] == 5.0
    assert len(starts) > 1
    whole = decode_batch(raw[:2], frame_step=4)  # no crop: frames 0, 4, 8
    assert whole["frames"].shape[1] == 3 and whole["meta"][0]["fps"] == 3.75
    with pytest.raises(ValueError, match="cannot crop 4 frames, one in every 3, from 9"):
        decode_batch(raw, 4, np.random.default_rng(0), frame_step=3)
    no_fps = dict(raw[0])
    no_fps["json"] = json.dumps({k: v for k, v in json.loads(raw[0]["json"]).items() if k != "fps"}).encode()
    with pytest.raises(ValueError, match=f"sample {raw[0]['__key__']}: no fps in its json"):
        decode_batch([no_fps], 3, np.random.default_rng(0), frame_step=2)


def test_frame_step_keeps_the_actions_of_a_steady_motion(tmp_path):
    """Known answer: at constant velocity the rate over k frames is the rate over one, so the
    recomputed actions are the stored ones, for a translation and for a turn about one axis."""
    pattern = write_tiny_shards(tmp_path, clips=8, frames=13, height=16, width=24, steady=True)
    raw = list(wds.WebDataset(pattern, shardshuffle=False, empty_check=False))
    stored = decode_batch(raw)
    for step in (2, 3, 4):
        strided = decode_batch(raw, frame_step=step)
        frames = 12 // step + 1
        assert strided["actions"].shape[1] == frames - 1
        assert torch.equal(strided["actions"], stored["actions"][:, :frames - 1])
        np.testing.assert_allclose(strided["motion"].numpy(), step * stored["motion"][:, :frames - 1].numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_frame_step_through_the_loader_and_its_checks(tmp_path):
    pattern = write_tiny_shards(tmp_path, clips=6, frames=9, height=16, width=24)
    config = LoaderConfig(urls=pattern, batch_size=3, shuffle_buffer=0, crop_frames=4, frame_step=2,
                          partial_batches=True)
    batches = list(make_loader(config, num_workers=2))
    assert sum(len(b["key"]) for b in batches) == 6
    assert all(b["frames"].shape[1] == 4 and b["actions"].shape[1] == 3 for b in batches)
    assert all(meta["fps"] == 7.5 for b in batches for meta in b["meta"])
    with pytest.raises(ValueError, match="frame_step must be >= 1"):
        LoaderConfig(urls=pattern, frame_step=0)
