"""datasets.pool: a worker's batch travels as one shared file; its buffer is reused only once the
receiver has dropped every view of it."""

from __future__ import annotations

import copy
import gc
import multiprocessing
import os
from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
import torch

from datasets.loader import LoaderConfig, decode_rgb, make_loader
from datasets.pool import HEADER, BufferPool, SharedBatch
from datasets.samples import npy_load
from tests.test_loader import members
from tests.training_helpers import write_tiny_shards


def _batch_of(n: int):
    """A `make` for BufferPool.fill: a uint8 (2, 32) view and a float64 (3,) view of one buffer."""
    def make(buffer):
        flat = buffer(64 + 3 * 8)
        frames = flat[:64].view(2, 32)
        frames.fill_(n)
        values = flat[64:].view(torch.float64)
        values.fill_(n + 0.5)
        return {"frames": frames, "values": values.view(3, 1).t(), "n": n}  # a strided view travels too
    return make


def _lender(commands, replies) -> None:
    """Fills one batch per command from a pool of 2 and reports the pool's lent flags before and after."""
    pool = BufferPool(2)
    n = 0
    while commands.get() is not None:
        before = pool.lent()
        batch = pool.fill(_batch_of(n))
        replies.put((batch, before, pool.lent()))
        n += 1


def test_a_buffer_is_reused_only_after_the_receiver_drops_every_view():
    ctx = multiprocessing.get_context("fork")
    commands, replies = ctx.Queue(), ctx.Queue()
    worker = ctx.Process(target=_lender, args=(commands, replies), daemon=True)
    worker.start()

    def next_batch():
        commands.put(1)
        return replies.get(timeout=30)

    try:
        a, before, after = next_batch()
        assert type(a) is dict and (before, after) == ([], [True])
        assert a["n"] == 0 and torch.equal(a["frames"], torch.zeros(2, 32, dtype=torch.uint8))
        assert a["values"].shape == (1, 3) and a["values"].dtype == torch.float64 and float(a["values"].sum()) == 1.5
        b, before, after = next_batch()
        assert (before, after) == ([True], [True, True])
        c, before, after = next_batch()  # both lent: a fresh buffer outside the pool
        assert (before, after) == ([True, True], [True, True]) and int(c["frames"][0, 0]) == 2
        view = a["frames"][1]  # a view outlives its batch: the slot stays lent
        del a, b, c
        gc.collect()
        d, before, after = next_batch()
        assert (before, after) == ([True, False], [True, True])
        assert torch.equal(view, torch.zeros(32, dtype=torch.uint8))  # not overwritten by d
        assert int(d["frames"].min()) == int(d["frames"].max()) == 3
        del view, d
        gc.collect()
        _, before, _ = next_batch()
        assert before == [False, False]
    finally:
        commands.put(None)
        worker.join(timeout=30)


_HELD: list = []  # a batch the parent holds, inherited by a forked child


def _drop_held() -> None:
    _HELD.clear()
    gc.collect()


def test_a_child_forked_by_the_receiver_does_not_free_the_receivers_slot():
    ctx = multiprocessing.get_context("fork")
    commands, replies = ctx.Queue(), ctx.Queue()
    worker = ctx.Process(target=_lender, args=(commands, replies), daemon=True)
    worker.start()
    try:
        commands.put(1)
        _HELD.append(replies.get(timeout=30)[0])
        child = ctx.Process(target=_drop_held)  # e.g. a worker of another DataLoader, forked while we hold it
        child.start()
        child.join(timeout=30)
        assert child.exitcode == 0
        commands.put(1)
        _, before, _ = replies.get(timeout=30)
        assert before == [True]  # still lent: the parent holds the batch
        assert int(_HELD[0]["frames"].max()) == 0
    finally:
        _HELD.clear()
        commands.put(None)
        worker.join(timeout=30)


def test_a_failed_batch_frees_its_slot_and_a_copy_is_a_plain_dict():
    pool = BufferPool(1)

    def broken(buffer):
        buffer(128)
        raise ValueError("bad frame")

    with pytest.raises(ValueError, match="bad frame"):
        pool.fill(broken)
    assert pool.lent() == [False]
    batch = pool.fill(_batch_of(7))
    assert isinstance(batch, SharedBatch) and pool.lent() == [True]
    assert type(copy.copy(batch)) is dict and type(copy.deepcopy(batch)) is dict
    with pytest.raises(RuntimeError, match="one buffer"):
        pool.fill(lambda buffer: {"a": buffer(8), "b": buffer(8)})


def _sized(nbytes: int, value: int):
    def make(buffer):
        flat = buffer(nbytes)
        flat.fill_(value)
        return {"frames": flat}
    return make


def test_a_free_buffer_of_another_size_is_replaced_and_the_same_size_reused():
    """A partial batch or a new crop size: the free buffer is replaced, not kept beside it. The
    receiver is this process here (pickled and unpickled through the same path as a worker's batch)."""
    pool = BufferPool(1)
    received = ForkingPickler.loads(ForkingPickler.dumps(pool.fill(_sized(128, 1))))
    assert type(received) is dict and int(received["frames"].sum()) == 128 and pool.lent() == [True]
    first = pool._buffers[0]
    del received
    gc.collect()
    assert pool.lent() == [False]
    again = ForkingPickler.loads(ForkingPickler.dumps(pool.fill(_sized(128, 2))))
    assert pool._buffers[0] is first and int(again["frames"].sum()) == 256  # same size: reused
    del again
    gc.collect()
    bigger = pool.fill(_sized(4096, 3))
    assert pool._buffers[0] is not first and pool._buffers[0].nbytes() == 4096 + HEADER and pool.lent() == [True]
    assert int(bigger["frames"].sum()) == 3 * 4096


def _inode(tensor: torch.Tensor) -> int:
    fd, _ = tensor.untyped_storage()._share_fd_cpu_()
    return os.fstat(fd).st_ino


def test_worker_batches_reuse_buffers_and_batches_held_by_the_trainer_stay_intact(tmp_path):
    pattern = write_tiny_shards(tmp_path, clips=6, frames=4, height=16, width=24)
    truth = members(pattern, tmp_path)
    config = LoaderConfig(urls=pattern, batch_size=2, shuffle_buffer=0, resampled=True, epoch_samples=60,
                          pool_slots=3)
    held, files, count = [], set(), 0

    def expected(key):
        return np.stack([decode_rgb(truth[key][f"{t:04d}.jpg"]) for t in range(4)])

    # pin_memory off: the batches as they arrive from the worker (on a GPU machine too)
    for i, batch in enumerate(make_loader(config, num_workers=1, pin_memory=False)):
        count += 1
        files.add(_inode(batch["frames"]))
        for j, key in enumerate(batch["key"]):
            assert np.array_equal(batch["frames"][j].permute(0, 2, 3, 1).numpy(), expected(key))
            assert np.array_equal(batch["poses"][j].numpy(), npy_load(truth[key]["poses.npy"]))
        if i % 4 == 0:  # the trainer keeps some frames (a view) while the loader runs on
            held.append((batch["key"][0], batch["frames"][0]))
    assert count == 30
    assert len(files) < count  # buffers were reused
    for key, frames in held:  # and none that was still held
        assert np.array_equal(frames.permute(0, 2, 3, 1).numpy(), expected(key))


@pytest.mark.parametrize("pin", [False, pytest.param(True, marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="pin_memory needs CUDA"))])
def test_buffers_come_back_through_the_pin_memory_thread_too(tmp_path, monkeypatch, pin):
    """With pin_memory the DataLoader's pin thread receives each batch, copies it into pinned memory
    and drops it: the release must still reach the worker, or every batch would take a new buffer."""
    pattern = write_tiny_shards(tmp_path, clips=6, frames=4, height=16, width=24)
    truth = members(pattern, tmp_path)
    allocated = multiprocessing.get_context("fork").Value("i", 0)
    new_shared = torch.UntypedStorage._new_shared

    def counted(size, *args, **kwargs):
        with allocated.get_lock():
            allocated.value += 1
        return new_shared(size, *args, **kwargs)

    monkeypatch.setattr(torch.UntypedStorage, "_new_shared", counted)  # inherited by the forked worker
    config = LoaderConfig(urls=pattern, batch_size=2, shuffle_buffer=0, resampled=True, epoch_samples=60)
    count = 0
    for batch in make_loader(config, num_workers=1, pin_memory=pin):
        count += 1
        assert batch["frames"].is_pinned() == pin
        for j, key in enumerate(batch["key"]):
            expected = np.stack([decode_rgb(truth[key][f"{t:04d}.jpg"]) for t in range(4)])
            assert np.array_equal(batch["frames"][j].permute(0, 2, 3, 1).numpy(), expected)
    assert count == 30 and allocated.value <= 8  # the pool's buffers, not one per batch
