"""CUDA graphs for the student's gradient-free generation: each block's denoising steps
(`Student.denoise_steps`) replayed as one captured graph, and its commit (`Student.commit_kv`) as
another, replayed when the block's frames are out (the commit is off the path from an action to
its first frame: `Student._blocks`).

A small model generating a block of a few frames is launch-bound: an eager forward issues some
500 kernels, and at batch 64 the GPU waits on the host for most of each forward. A graph replays
all of a block's kernels (steps: about 2,000; commit: about 500) with one launch.

The memory stays eager and outside the graph: the view (`memory.view`, padded to its fixed
capacity by `static_view`, so every block has the same shapes) is written per block into the view
buffers this object owns (`views`), which the graphs read in place (a view built elsewhere is
copied into the graph's own buffers), and the block's noise, re-noising draws, actions, poses and
RoPE time index are copied into the steps graph's static input buffers; after the replay the
outputs (the exit step's input, the clean prediction) are copied out, since the next replay
overwrites them. The commit graph reads the steps graph's own buffers (the view and the clean
prediction), so it must be replayed before the next steps replay; its K/V are handed out as the
graph's own buffers, which the memory's append copies before the next replay. So the numbers are
those of the eager block: the same kernels on the same inputs.

With `commit: fold` the steps graph's exit forward gives the block's K/V (`Student.denoise_steps`) and
there is no commit graph: `commit` hands out those buffers.

One pair of graphs per (block shape, exit step, dtype): a stream has one block size (plus maybe a
short last block); all graphs share one memory pool. Capture follows the CUDA graph rules of
`torch.cuda.graph`: warm-up iterations on a side stream first, and autocast without its weight
cache. `capture=False` runs the same static-buffer programs without capturing (CPU tests check
the plumbing against the eager path that way).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from training.memory import ViewBuffers
from training.model import LayerContext, LayerKV
from training.student import Student

#: warm-up runs before a capture (torch.cuda.graph's rule: lazy init and autotuning happen outside it)
WARMUP = 3


@dataclass(frozen=True, eq=False)
class _Inputs:
    """The static input buffers of one graph."""

    x: torch.Tensor
    renoise: tuple[torch.Tensor, ...]
    time: torch.Tensor
    context_k: tuple[torch.Tensor, ...]
    context_v: tuple[torch.Tensor, ...]
    valid: torch.Tensor
    reserved: int
    actions: torch.Tensor
    poses: torch.Tensor
    origin: torch.Tensor

    def context(self) -> list[LayerContext]:
        return [LayerContext(k, v, self.valid, self.reserved) for k, v in zip(self.context_k, self.context_v)]


@dataclass(eq=False)
class _Graph:
    inputs: _Inputs
    outputs: tuple[torch.Tensor, torch.Tensor]  # the steps': the exit step's input, the clean prediction
    replay: Callable[[], Any]
    kvs: list[LayerKV]  # the commit's (a folded commit's: the steps' exit forward's)
    replay_commit: Callable[[], Any]  # nothing to replay for a folded commit


class BlockGraphs:
    """Per-block CUDA graphs of one student (`Student(..., graphs=BlockGraphs(...))` or
    `student.graphs = BlockGraphs(student)`): `steps` takes `denoise_steps`' arguments (no grad),
    then `commit` gives that block's K/V, before the next `steps`."""

    def __init__(self, student: Student, capture: bool = True):
        if not student.config.static_view:
            raise ValueError("CUDA graphs need fixed shapes: set student.static_view (a bounded memory)")
        self.student, self.capture = student, capture
        self.views: ViewBuffers = {}  # the memory views the student writes for graphed blocks (memory.view)
        self._graphs: dict[tuple[Any, ...], _Graph] = {}
        self._pool: Any = None
        self._pending: _Graph | None = None  # the graph whose steps ran last and whose commit has not

    def __len__(self) -> int:
        return len(self._graphs)

    @torch.no_grad()
    def steps(self, x: torch.Tensor, renoise: Sequence[torch.Tensor], time: int | torch.Tensor,
              context: list[LayerContext] | None, actions: torch.Tensor, poses: torch.Tensor,
              origin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(time, torch.Tensor):
            raise ValueError("CUDA graphs need the block's time index as a tensor (student.static_view)")
        if context is None or context[0].valid is None:
            raise ValueError("CUDA graphs need a fixed-capacity memory view for every block (student.static_view; "
                             "a view that drops every frame has none)")
        if self._pending is not None:
            raise RuntimeError("BlockGraphs.steps: the last block's commit has not run (its buffers would be overwritten)")
        key = (tuple(x.shape), x.dtype, len(renoise), tuple(context[0].k.shape), context[0].k.dtype,
               context[0].reserved, torch.is_autocast_enabled(x.device.type))
        graph = self._graphs.get(key)
        fresh = graph is None
        if graph is None:
            graph = self._graphs[key] = self._build(x, renoise, time, context, actions, poses, origin)
        if not fresh:  # a fresh graph's buffers hold this block's inputs already
            _load(graph.inputs, x, renoise, time, context, actions, poses, origin)
        graph.replay()
        self._pending = graph
        x_in, x0 = graph.outputs
        # the next replay overwrites the outputs: hand out copies
        return x_in.clone(), x0.clone()

    @torch.no_grad()
    def commit(self) -> list[LayerKV]:
        """The last `steps` block's commit: its per-layer K/V — the graph's own output buffers, which the
        next replay overwrites: read them before the next `steps` (the memory's append copies them as
        it stores them, rotated and pooled; copying here too would be one more kernel per tensor)."""
        graph = self._pending
        if graph is None:
            raise RuntimeError("BlockGraphs.commit: no block's steps to commit (call steps first, once per commit)")
        graph.replay_commit()
        self._pending = None
        return list(graph.kvs)

    def discard(self) -> None:
        """Forget the last block's commit (its stream was closed before asking for another block)."""
        self._pending = None

    def _shared(self, context: list[LayerContext]) -> bool:
        """Whether `context` is one of the view buffers (`views`), which a graph reads in place."""
        return any(buffers[0].k is context[0].k for buffers in self.views.values())

    def _build(self, x: torch.Tensor, renoise: Sequence[torch.Tensor], time: torch.Tensor,
               context: list[LayerContext], actions: torch.Tensor, poses: torch.Tensor,
               origin: torch.Tensor) -> _Graph:
        valid = context[0].valid
        assert valid is not None  # steps() checked
        shared = self._shared(context)  # read in place; any other view is copied in per block
        inputs = _Inputs(x.clone(), tuple(r.clone() for r in renoise), time.clone(),
                         tuple(c.k if shared else c.k.clone() for c in context),
                         tuple(c.v if shared else c.v.clone() for c in context),
                         valid if shared else valid.clone(), context[0].reserved,
                         actions.clone(), poses.clone(), origin.clone())
        student = self.student

        fold = student.config.commit == "fold"

        def steps() -> tuple[torch.Tensor, torch.Tensor, list[LayerKV]]:
            return student.denoise_steps(inputs.x, inputs.renoise, inputs.time, inputs.context(),
                                         inputs.actions, inputs.poses, inputs.origin)

        def commit(clean: torch.Tensor) -> list[LayerKV]:
            return student.commit_kv(clean, inputs.time, inputs.context(), inputs.actions, inputs.poses, inputs.origin)

        if not self.capture:
            x_in, x0, folded = steps()
            outputs = (x_in, x0)

            def replay() -> None:
                fresh = steps()
                _assign(outputs, fresh[:2])
                if fold:
                    _assign_kvs(folded, fresh[2])

            if fold:
                return _Graph(inputs, outputs, replay, folded, lambda: None)
            kvs = commit(x0)
            return _Graph(inputs, outputs, replay, kvs, lambda: _assign_kvs(kvs, commit(outputs[1])))
        graph, (x_in, x0, folded) = capture(steps, x.device, self._pool)
        if self._pool is None:
            self._pool = graph.pool()
        if fold:
            return _Graph(inputs, (x_in, x0), graph.replay, folded, lambda: None)
        # the commit reads the steps' output buffer (its warm-up reads it unset: harmless)
        commit_graph, kvs = capture(lambda: commit(x0), x.device, self._pool)
        return _Graph(inputs, (x_in, x0), graph.replay, kvs, commit_graph.replay)


def _load(inputs: _Inputs, x: torch.Tensor, renoise: Sequence[torch.Tensor], time: torch.Tensor,
          context: list[LayerContext], actions: torch.Tensor, poses: torch.Tensor, origin: torch.Tensor) -> None:
    """Copy one block's inputs into a graph's static buffers."""
    inputs.x.copy_(x)
    for buffer, r in zip(inputs.renoise, renoise):
        buffer.copy_(r)
    inputs.time.copy_(time)
    if context[0].k is not inputs.context_k[0]:  # a view written elsewhere than the buffers the graph reads
        used = context[0].k.shape[2] - context[0].reserved  # the reserved room is the forward's to fill
        for k, v, c in zip(inputs.context_k, inputs.context_v, context):
            k[:, :, :used].copy_(c.k[:, :, :used])
            v[:, :, :used].copy_(c.v[:, :, :used])
        valid = context[0].valid
        assert valid is not None  # run() checked
        inputs.valid.copy_(valid)
    inputs.actions.copy_(actions)
    inputs.poses.copy_(poses)
    inputs.origin.copy_(origin)


def _assign(outputs: tuple[torch.Tensor, torch.Tensor], new: tuple[torch.Tensor, torch.Tensor]) -> None:
    """The uncaptured replay of the steps: write a fresh run into the output buffers (as a graph replay does)."""
    outputs[0].copy_(new[0])
    outputs[1].copy_(new[1])


def _assign_kvs(kvs: list[LayerKV], new: list[LayerKV]) -> None:
    """The uncaptured replay of the commit."""
    for kv, fresh in zip(kvs, new):
        kv.k.copy_(fresh.k)
        kv.v.copy_(fresh.v)


def capture(fn: Callable[[], Any], device: torch.device, pool: Any = None) -> tuple[torch.cuda.CUDAGraph, Any]:
    """fn() captured as one CUDA graph: WARMUP runs on a side stream first (lazy initialisation and
    autotuning stay out of the graph), then the capture, under the caller's autocast without its
    weight cache. Returns the graph and fn's outputs (static tensors each replay overwrites)."""
    with _capture_autocast(device):
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP):
                fn()
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            outputs = fn()
    return graph, outputs


def _capture_autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The caller's autocast state without autocast's weight-cast cache (casts made during the
    capture must be part of the graph, not cached tensors from outside it)."""
    if not torch.is_autocast_enabled(device.type):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.get_autocast_dtype(device.type), cache_enabled=False)
