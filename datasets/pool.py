"""Shared-memory batches for DataLoader workers: one file per batch, buffers reused.

A worker hands each batch to the main process through shared memory. Two costs dominate next to
JPEG decoding (measured on a 2-core EPYC VM, bench/loader.py):
- torch moves every tensor of a batch through its own shared-memory file, and each file
  descriptor crosses to the main process over a fresh, authenticated connection to the worker's
  `multiprocessing.resource_sharer` thread: about 0.7 ms per tensor;
- a fresh shared buffer is reserved and zeroed when allocated, faulted in by the decoder's first
  writes and unmapped again when freed: about 76 µs per 256x144 frame, against ~170 µs to decode it.

So a worker's batch is one flat shared buffer holding every tensor (`decode_batch` carves it), sent
as one descriptor (`SharedBatch`), and each worker keeps a `BufferPool` of such buffers mapped. A
buffer is reused only after the receiving process has dropped every view of the batch in it: byte 0
of each buffer is its "lent" flag, set by the worker when it fills the buffer and cleared by the
receiver when the batch's storage dies (a finalizer, run in the main process or in the DataLoader's
pin-memory thread, through a one-page mapping of the same file). A batch the main process forwards
to yet another process is not tracked: set `LoaderConfig.pool_slots = 0` for that, or clone it.

When every slot is lent (a trainer keeping many batches alive), the pool hands out a fresh buffer
outside the pool: the old cost, never a wait.
"""

from __future__ import annotations

import copy
import mmap
import multiprocessing.reduction
import os
import weakref
from collections.abc import Callable
from typing import Any

import torch

HEADER = 64  # bytes before a buffer's payload; byte 0 is the lent flag


class BufferPool:
    """Up to `slots` shared buffers per process, each free or lent to a receiver (0: none kept).

    The buffers are created lazily in the process that fills them (each worker, after the fork),
    so a pool object can be built in the main process and copied into the workers."""

    def __init__(self, slots: int):
        if slots < 0:
            raise ValueError(f"BufferPool: slots must be >= 0, got {slots}")
        self.slots = slots
        self._pid: int | None = None
        self._buffers: list[torch.UntypedStorage] = []

    def fill(self, make: Callable[[Callable[[int], torch.Tensor]], dict[str, Any]]) -> dict[str, Any]:
        """`make(buffer)` builds a batch whose tensors all view `buffer(nbytes)`, a flat uint8
        shared tensor; returned packed (`SharedBatch`) to travel as one file descriptor."""
        taken: list[tuple[torch.UntypedStorage, bool]] = []

        def buffer(nbytes: int) -> torch.Tensor:
            if taken:
                raise RuntimeError("BufferPool.fill: a batch must live in one buffer")
            taken.append(self._take(HEADER + nbytes))
            return torch.empty(0, dtype=torch.uint8).set_(taken[0][0], HEADER, (nbytes,), (1,))

        try:
            batch = make(buffer)
        except BaseException:
            for storage, pooled in taken:  # a batch that failed never reaches a receiver
                if pooled:
                    _flag(storage)[0] = 0
            raise
        if not taken:
            raise RuntimeError("BufferPool.fill: the batch took no buffer")
        storage, pooled = taken[0]
        return SharedBatch(batch, storage, pooled)

    def lent(self) -> list[bool]:
        """Per pooled buffer, whether a receiver still holds it (tests and diagnostics)."""
        return [bool(_flag(b)[0]) for b in self._buffers] if self._pid == os.getpid() else []

    def _take(self, nbytes: int) -> tuple[torch.UntypedStorage, bool]:
        if self._pid != os.getpid():  # first use in this process: buffers inherited over fork are not ours
            self._buffers, self._pid = [], os.getpid()
        free = [i for i, b in enumerate(self._buffers) if _flag(b)[0] == 0]
        # a free buffer at least this large and at most twice it (undecoded JPEG batches vary in size)
        fits = sorted((self._buffers[i].nbytes(), i) for i in free if nbytes <= self._buffers[i].nbytes() <= 2 * nbytes)
        if fits:
            slot = fits[0][1]
        elif len(self._buffers) < self.slots:
            slot = len(self._buffers)
            self._buffers.append(torch.UntypedStorage._new_shared(nbytes))
        elif free:  # a free buffer of another size (a partial batch, a new crop): replace it
            slot = free[0]
            self._buffers[slot] = torch.UntypedStorage._new_shared(nbytes)
        else:
            return torch.UntypedStorage._new_shared(nbytes), False
        _flag(self._buffers[slot])[0] = 1
        return self._buffers[slot], True


def _flag(storage: torch.UntypedStorage) -> torch.Tensor:
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, (1,), (1,))


class SharedBatch(dict):
    """A worker's batch whose tensors all view one shared storage. Pickling sends that storage's
    file descriptor once, with each tensor's dtype, shape, stride and offset; the receiver
    (`receive`) gets a plain dict. Made for the hand-off to the main process: a copy made in the
    worker is a plain dict (and, for a pooled buffer, keeps its slot lent)."""

    def __init__(self, batch: dict[str, Any], storage: torch.UntypedStorage, pooled: bool):
        super().__init__(batch)
        self._storage, self._pooled = storage, pooled

    def __reduce__(self) -> tuple[Any, ...]:
        views, rest = {}, {}
        for name, value in self.items():
            if isinstance(value, torch.Tensor):
                if value.untyped_storage().data_ptr() != self._storage.data_ptr():
                    raise ValueError(f"SharedBatch: tensor {name!r} is not in the batch's buffer")
                views[name] = (value.dtype, tuple(value.shape), value.stride(), value.storage_offset())
            else:
                rest[name] = value
        fd, size = self._storage._share_fd_cpu_()
        return receive, (multiprocessing.reduction.DupFd(fd), size, views, rest, self._pooled)

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(dict(self), memo)


def receive(fd_wrapper: Any, size: int, views: dict[str, tuple[torch.dtype, tuple[int, ...], tuple[int, ...], int]],
            rest: dict[str, Any], pooled: bool) -> dict[str, Any]:
    """Unpickling a SharedBatch: map the buffer, rebuild the views; for a pooled buffer, clear its
    lent flag once the storage dies."""
    fd = fd_wrapper.detach()
    try:
        storage = torch.UntypedStorage._new_shared_fd_cpu(fd, size)  # type: ignore[attr-defined]
        flag = mmap.mmap(fd, min(size, mmap.PAGESIZE)) if pooled else None
    finally:
        os.close(fd)
    batch = dict(rest)
    for name, (dtype, shape, stride, offset) in views.items():
        batch[name] = torch.empty(0, dtype=dtype).set_(storage, offset, shape, stride)
    if flag is not None:
        weakref.finalize(storage, _return, flag, os.getpid()).atexit = False
    return batch


def _return(flag: mmap.mmap, pid: int) -> None:
    """Free the slot, from the receiving process only: a process forked from it (a DataLoader worker
    of another loader) that drops its inherited copy of the batch must not free the slot under it."""
    if os.getpid() == pid:
        flag[0] = 0
    flag.close()
