"""Data-parallel training across processes with torch.distributed, launched by torchrun:

    torchrun --nproc_per_node 2 -m training.teacher --shards ... --out DIR

One process per GPU (NCCL; gloo on CPU). Every rank holds the whole model, starts from rank 0's
weights (broadcast), trains on its own stream of batches (its loader seed is rank-aware) and
averages its gradients with the others' once per optimiser step, after its local micro-batches
(`optim.grad_accum`) and before clipping, so every rank takes the same step: the result is that of
one process on the global batch (tested, to float64 precision). The averaging is an explicit
all-reduce of the gradients in flat buckets rather than a `DistributedDataParallel` wrapper, so it
is the same for every call pattern (the DMD stage's replayed backward included) and happens exactly
once per step. Only rank 0 writes checkpoints, logs and summaries; checkpoints hold the plain
model, so a run resumes on any number of processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

BUCKET_BYTES = 64 << 20  # gradients all-reduced in flat buckets of about this size


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @classmethod
    def from_env(cls) -> Dist:
        """The process's place as torchrun sets it (RANK, WORLD_SIZE, LOCAL_RANK); one process otherwise."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(requested: str | None = None) -> tuple[Dist, torch.device | None]:
    """Join the process group when launched by torchrun (NCCL when CUDA is there, else gloo) and
    pick this rank's device (cuda:LOCAL_RANK); (Dist(), None) for one process (the caller picks)."""
    place = Dist.from_env()
    if not place.active:
        return place, None
    cuda = torch.cuda.is_available() and (requested is None or requested.startswith("cuda"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(place.local_rank)
        return place, torch.device("cuda", place.local_rank)
    return place, torch.device("cpu")


def teardown(place: Dist, finished: bool) -> None:
    """Leave the process group: after a finished run all ranks leave together (a rank that destroyed
    its group while another still used its connections could abort that one: gloo's threads); after
    an error at once, without waiting for ranks that may never arrive (torchrun ends them)."""
    if place.active and dist.is_initialized():
        try:
            if finished:
                dist.barrier()
        finally:
            dist.destroy_process_group()


def leave(place: Dist, code: int) -> int:
    """The exit of a finished rank: under torchrun, once its group is destroyed (`teardown`) and its
    output flushed, the process ends at once (os._exit) instead of running the interpreter's and the
    C++ runtime's exit-time destructors: on the CPU (gloo, torch 2.13) those aborted about one rank
    exit in 25-40 ("terminate called without an active exception", no Python frame left on the
    stack), turning a finished run into a failed one. Everything the run writes is closed by then
    (checkpoints are renamed into place, logs are written line by line). One process: returns `code`."""
    if not place.active:
        return code
    import logging
    import sys

    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def broadcast_parameters(module: torch.nn.Module, place: Dist) -> None:
    """Every rank takes rank 0's parameters and buffers."""
    if not place.active:
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(parameters: Iterable[torch.nn.Parameter], place: Dist) -> None:
    """Replace each gradient by its mean over the ranks, one all-reduce per bucket. A parameter
    that has a gradient on some rank but not on this one counts as zeros here; one that has none
    on any rank keeps none (the optimiser then leaves it alone, weight decay included, as one
    process would)."""
    if not place.active:
        return
    params = [p for p in parameters if p.requires_grad]
    if not params:
        return
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8, device=params[0].device)
    dist.all_reduce(present, op=dist.ReduceOp.MAX)
    grads = []
    for p, anywhere in zip(params, present.tolist()):
        if not anywhere:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    bucket: list[torch.Tensor] = []
    size = 0
    for grad in grads:
        bucket.append(grad)
        size += grad.numel() * grad.element_size()
        if size >= BUCKET_BYTES:
            _reduce(bucket, place.world)
            bucket, size = [], 0
    if bucket:
        _reduce(bucket, place.world)


def _reduce(grads: list[torch.Tensor], world: int) -> None:
    by_type: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for g in grads:
        by_type.setdefault((g.dtype, g.device), []).append(g)
    for group in by_type.values():
        flat = _flatten_dense_tensors(group)
        dist.all_reduce(flat)
        flat /= world
        for g, reduced in zip(group, _unflatten_dense_tensors(flat, group)):
            g.copy_(reduced)


def any_rank(flag: bool, place: Dist, device: torch.device) -> bool:
    """True on every rank when it is true on any (a stop decided by one rank's clock stops all)."""
    if not place.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def rank_seed(seed: int, place: Dist) -> int:
    """A seed of this rank's own (its data order and noise), equal to `seed` on rank 0."""
    return seed + 1_000_003 * place.rank
