"""The causal student: the teacher's network run block by block over a K/V memory.

Frame 0 (the given first frame) is its own block; then blocks of `block_frames` frames. A block is
denoised in a few steps (`steps`, sigmas from 1 down), each a forward of the block's tokens that
attends to the memory view (memory.view) and to its own tokens; frame t's actions and poses
condition it as in the teacher (poses relative to the rollout's first frame, RoPE time = absolute
frame index). After the block's final (or exit) step, its clean prediction is committed: one more
forward at sigma 0 under no_grad whose per-layer K/V are appended to the store. So the memory is
never differentiated through (the detached-context gradient of Self-Forcing/RELIC).

With `commit: fold` there is no commit forward: the memory keeps the K/V of the forward that made
the block's frames (its exit step's, at that step's sigma: the last step's input at inference),
detached — one forward fewer per block (a 1-step student: one forward a block instead of two). The
memory then holds the keys of a noisy input, not of the clean frames, so a student must be trained
the way it runs (the ODE stage commits the teacher's state at the last student sigma in that mode,
the DMD rollouts and their replay commit their exit step's K/V). Frame 0, given clean, is committed
by a sigma-0 forward either way.

`rollout` returns, per block, the input and sigma of its exit step (`ReplayState`); the replayed
backward pass re-runs exactly those forwards with grad, one block at a time, against the view each
block had (the memory rebuilt in order from the clean frames), so peak activation memory is one
block's forward whatever the rollout length, and the memory keeps only pooled K/V of frames that
left the window.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from annotate.actions import N_CHANNELS
from training.conditioning import relative_poses, static_action, static_first
from training.flow import add_noise, draw_device, shift_sigma, x0_from_velocity
from training.memory import MemoryConfig, MemoryStore, ViewBuffers, view, view_capacity
from training.model import LayerContext, LayerKV, VideoDiT
from training.retrieval import ViewGeometry

if TYPE_CHECKING:
    from training.graphs import BlockGraphs

def warped_steps(n: int, shift: float = 5.0) -> tuple[float, ...]:
    """An n-step student schedule: the timesteps 1000, 1000 - 1000/n, ... (n of them, from pure
    noise) warped through the sampler's timestep shift, as Self-Forcing warps its 4 steps
    [1000, 750, 500, 250] with shift 5. n = 1 is a single step from pure noise."""
    if n < 1:
        raise ValueError(f"a student schedule needs at least one step, got {n}")
    u = torch.arange(n - 1, 0, -1, dtype=torch.float64) / n
    return (1.0, *(float(s) for s in shift_sigma(u, shift)))  # u = 1 is sigma 1 exactly, not up to rounding


#: the 4-step student schedule of Self-Forcing: (1.0, 0.9375, 0.8333..., 0.625)
WARPED_4_STEPS = warped_steps(4)

#: what a block's commit writes to the memory: "clean" the K/V of a sigma-0 forward of its clean prediction
#: (one more forward per block, Self-Forcing's), "fold" the K/V of the forward that made its frames (none more)
COMMITS = ("clean", "fold")


@dataclass(frozen=True)
class StudentConfig:
    block_frames: int = 2
    steps: tuple[float, ...] = WARPED_4_STEPS
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    static_view: bool = False  # pad every view to memory.view_capacity: one shape per block size (compile, CUDA graphs)
    commit: str = "clean"  # COMMITS: a sigma-0 forward of the clean block, or the exit step's K/V folded in

    def __post_init__(self) -> None:
        if self.block_frames < 1 or not self.steps:
            raise ValueError("student.block_frames must be >= 1 and student.steps non-empty")
        if self.commit not in COMMITS:
            raise ValueError(f"student.commit must be one of {COMMITS}, got {self.commit!r}")
        if any(not 0 < s <= 1 for s in self.steps) or list(self.steps) != sorted(self.steps, reverse=True):
            raise ValueError(f"student.steps must be decreasing sigmas in (0, 1], got {self.steps}")
        if self.static_view and (self.memory.window is None or self.memory.max_old is None):
            raise ValueError("student.static_view needs a bounded memory: memory.window and memory.max_old set")


def block_spans(frames: int, block_frames: int) -> list[tuple[int, int]]:
    """[(start, end)) per block: frame 0 alone, then `block_frames` at a time (the last may be short)."""
    spans = [(0, 1)]
    for start in range(1, frames, block_frames):
        spans.append((start, min(start + block_frames, frames)))
    return spans


def block_causal_mask(frames: int, block_frames: int, tokens_per_frame: int,
                      device: torch.device | str | None = None) -> torch.Tensor:
    """(L, L) boolean, True = attend: a token sees every token of its own and earlier blocks."""
    block_of = torch.zeros(frames, dtype=torch.long, device=device)
    for b, (start, end) in enumerate(block_spans(frames, block_frames)):
        block_of[start:end] = b
    token_block = block_of.repeat_interleave(tokens_per_frame)
    return token_block[None, :] <= token_block[:, None]


@dataclass(frozen=True, eq=False)
class ReplayState:
    start: int  # first frame of the block
    end: int
    x: torch.Tensor  # (B, end-start, C, H, W) the exit step's input
    sigma: float  # the exit step's noise level


@dataclass(frozen=True, eq=False)
class Rollout:
    frames: torch.Tensor  # (B, F, C, H, W): frame 0 as given, then each block's clean prediction
    store: MemoryStore | None  # the memory after the last block (None with keep_store=False)
    replay: tuple[ReplayState, ...]


class Student:
    """Block-wise generation with a memory; wraps a VideoDiT (the weights being distilled)."""

    def __init__(self, model: VideoDiT, config: StudentConfig, graphs: BlockGraphs | None = None):
        """`graphs` (training.graphs.BlockGraphs, or set later) replays each block of gradient-free
        generation (streaming, rollouts without grad) as one CUDA graph."""
        self.model, self.config, self.graphs = model, config, graphs

    def new_store(self) -> MemoryStore:
        cfg = self.model.cfg
        geometry = (ViewGeometry.of(cfg.fov, cfg.height, cfg.width_px, cfg.patch, self.model.patch_in.weight.device)
                    if self.config.memory.select == "view" else None)
        return MemoryStore(cfg.grid, self.config.memory, self.model.rope_angles, geometry)

    def _cameras(self, poses: torch.Tensor, origin: torch.Tensor) -> torch.Tensor | None:
        """Poses (B, n, 4, 4) relative to the rollout's first frame, which `memory.select: view`
        retrieves by (None otherwise: nothing to compute)."""
        return relative_poses(poses, origin) if self.config.memory.select == "view" else None

    def time_index(self, start: int) -> int | torch.Tensor:
        """The block's RoPE time index as the model takes it: with `static_view` a 0-dim float64 tensor,
        so a compiled forward is not specialised (and recompiled) on every block's start frame."""
        if not self.config.static_view:
            return start
        # made on the device (a fill), not copied from the host: a blocking host-to-device copy waits for
        # the GPU to finish every queued block, so the host could not prepare the next one meanwhile
        return torch.full((), float(start), dtype=torch.float64, device=self.model.patch_in.weight.device)

    def context(self, store: MemoryStore, start: int, frames: int, pose: torch.Tensor,
                origin: torch.Tensor, buffers: ViewBuffers | None = None) -> list[LayerContext] | None:
        """The memory view of a block of `frames` frames at `start` whose first frame's camera is
        `pose` (B, 4, 4), with room for its own tokens (written into `buffers`: memory.view)."""
        capacity = view_capacity(self.model.cfg.grid, self.config.memory) if self.config.static_view else None
        cameras = self._cameras(pose[:, None], origin)
        return view(store, start, capacity, reserve=frames * self.model.cfg.tokens_per_frame,
                    camera=None if cameras is None else cameras[:, 0], buffers=buffers)

    def block_x0(self, x: torch.Tensor, sigma: float, start: int, context: list[LayerContext] | None,
                 actions: torch.Tensor, poses: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
        """One denoising forward of the block at frames [start, start + n) over `context` (its
        memory view): the block's clean prediction."""
        return self.block_x0_kv(x, sigma, start, context, actions, poses, origin)[0]

    def block_x0_kv(self, x: torch.Tensor, sigma: float, start: int, context: list[LayerContext] | None,
                    actions: torch.Tensor, poses: torch.Tensor, origin: torch.Tensor
                    ) -> tuple[torch.Tensor, list[LayerKV]]:
        """block_x0 and the forward's per-layer K/V of the block's tokens (a folded commit)."""
        n = x.shape[1]
        return self._x0_kv(x, sigma, self.time_index(start), context, actions[:, start:start + n],
                           poses[:, start:start + n], origin)

    def _x0(self, x: torch.Tensor, sigma: float, time: int | torch.Tensor, context: list[LayerContext] | None,
            actions: torch.Tensor, poses: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
        """block_x0 with the block's own actions/poses (B, n, ...) and RoPE time index."""
        return self._x0_kv(x, sigma, time, context, actions, poses, origin)[0]

    def _x0_kv(self, x: torch.Tensor, sigma: float, time: int | torch.Tensor, context: list[LayerContext] | None,
               actions: torch.Tensor, poses: torch.Tensor, origin: torch.Tensor) -> tuple[torch.Tensor, list[LayerKV]]:
        """_x0 and the forward's per-layer K/V of the block's tokens (what a folded commit stores)."""
        sig = torch.full(x.shape[:2], sigma, device=x.device, dtype=x.dtype)
        v, kvs = self.model.forward_kv(x, sig, actions, poses, origin, first_frame=time, context=context)
        return x0_from_velocity(x, v.to(x.dtype), sig), kvs

    def denoise_steps(self, x: torch.Tensor, renoise: Sequence[torch.Tensor], time: int | torch.Tensor,
                      context: list[LayerContext] | None, actions: torch.Tensor, poses: torch.Tensor,
                      origin: torch.Tensor, grad: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor, list[LayerKV]]:
        """One block's steps: 0..len(renoise) from its starting noise x (B, n, C, H, W), re-noised
        with renoise[i] to the next step's sigma in between. actions/poses are the block's own
        (B, n, ...); `time` its RoPE time index. With grad, the exit step's forward keeps its graph.
        Returns (the exit step's input, the clean prediction, the exit step's per-layer K/V: a folded
        commit, detached). Every tensor op here runs on the inputs' device with no host sync, so a
        CUDA graph can capture it (training.graphs)."""
        steps = self.config.steps
        exit_step = len(renoise)
        for i in range(exit_step + 1):
            with torch.set_grad_enabled(grad and i == exit_step):
                x0, kvs = self._x0_kv(x, steps[i], time, context, actions, poses, origin)
            if i < exit_step:
                x = add_noise(x0, renoise[i], torch.full(x.shape[:2], steps[i + 1], device=x.device))
        return x, x0, [LayerKV(kv.k.detach(), kv.v.detach()) for kv in kvs]

    @torch.no_grad()
    def commit_kv(self, x0: torch.Tensor, time: int | torch.Tensor, context: list[LayerContext] | None,
                  actions: torch.Tensor, poses: torch.Tensor, origin: torch.Tensor) -> list[LayerKV]:
        """The commit forward of a block's clean prediction x0 (B, n, ...) over the view its steps
        read: its per-layer K/V, at sigma 0 and without grad (host-sync free, as denoise_steps)."""
        b, n = x0.shape[:2]
        _, kvs = self.model.forward_kv(x0.detach(), torch.zeros(b, n, device=x0.device), actions, poses, origin,
                                       first_frame=time, context=context)
        return kvs

    def _append(self, store: MemoryStore, kvs: list[LayerKV], start: int, poses: torch.Tensor,
                origin: torch.Tensor) -> None:
        """Append a committed block's K/V (its frames' poses (B, n, 4, 4): their RoPE positions), then
        release what the next block's window no longer needs at full resolution."""
        n = poses.shape[1]
        store.append(kvs, n, self.model.positions(n, start, poses, origin), self._cameras(poses, origin))
        if self.config.memory.window is not None:
            store.release(start + n - self.config.memory.window)

    @torch.no_grad()
    def commit(self, x0: torch.Tensor, start: int, store: MemoryStore, actions: torch.Tensor, poses: torch.Tensor,
               origin: torch.Tensor, context: list[LayerContext] | None = None, sigma: float = 0.0) -> None:
        """Append the block's per-layer K/V: a forward of x0 at `sigma` over the same view (0: its clean
        frames; a folded commit's: the last step's input at the last step's sigma)."""
        b, n = x0.shape[:2]
        _, kvs = self.model.forward_kv(x0, torch.full((b, n), sigma, device=x0.device),
                                       actions[:, start:start + n],
                                       poses[:, start:start + n], origin, first_frame=self.time_index(start),
                                       context=(self.context(store, start, n, poses[:, start], origin)
                                                if context is None else context))
        self._append(store, kvs, start, poses[:, start:start + n], origin)

    def rollout(self, first: torch.Tensor, actions: torch.Tensor, poses: torch.Tensor, noise: torch.Tensor,
                exit_steps: list[int] | None = None, grad: bool = False,
                generator: torch.Generator | None = None, keep_store: bool = True) -> Rollout:
        """Generate frames 1..F-1 after `first` (B, C, H, W).

        actions (B, F, 13) per frame (frame 0's is replaced by the static action), poses (B, F, 4, 4),
        noise (B, F-1, C, H, W) each block's starting noise; between steps the prediction is
        re-noised with fresh noise from `generator`. `exit_steps[b]` (default: the last) is where
        block b stops; with grad=True that step's forward keeps its graph (the full-graph
        reference for the replayed backward). keep_store=False frees the memory at the end (a
        training step replays from the frames and need not hold two memories at once)."""
        f = actions.shape[1]
        steps = self.config.steps
        blocks = len(block_spans(f, self.config.block_frames)) - 1
        exits = exit_steps if exit_steps is not None else [len(steps) - 1] * blocks
        if len(exits) != blocks or any(not 0 <= e < len(steps) for e in exits):
            raise ValueError(f"exit_steps needs one step index in [0, {len(steps)}) per generated block "
                             f"({blocks}), got {exits}")
        store = self.new_store()
        outputs, replay = [first[:, None]], []
        spans = block_spans(f, self.config.block_frames)[1:]
        for _, _, x0, state in self._blocks(first, poses[:, 0], _slices(actions, poses), spans, exits,
                                            lambda s, e: noise[:, s - 1:e - 1], grad, generator, store):
            outputs.append(x0)
            replay.append(state)
        return Rollout(torch.cat(outputs, dim=1), store if keep_store else None, tuple(replay))

    def stream(self, first: torch.Tensor, actions: torch.Tensor, poses: torch.Tensor,
               generator: torch.Generator | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Inference: yield (start, end, frames (B, end-start, C, H, W)) block by block as soon as
        each is denoised (its commit runs when the next block is asked for), without grad
        (stream_live over the fixed tensors). Memory stays bounded with a bounded config."""
        return self.stream_live(first, poses[:, 0], _slices(actions, poses), generator,
                                frames=actions.shape[1])

    @torch.no_grad()
    def stream_live(self, first: torch.Tensor, first_pose: torch.Tensor, inputs: BlockInputs,
                    generator: torch.Generator | None = None, frames: int | None = None
                    ) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Inference whose actions arrive as it runs (keys): before each block [start, end),
        `inputs(start, end)` gives that block's per-frame actions (B, n, 13) (frame t's: the
        transition into it) and camera-to-world poses (B, n, 4, 4), or None to stop. Yields as
        `stream` does; with `frames` it stops after that many frames (first included), otherwise
        when `inputs` returns None. `stream` is this over fixed tensors: same blocks, same draws."""
        b = first.shape[0]
        spans = (block_spans(frames, self.config.block_frames)[1:] if frames is not None
                 else _open_spans(self.config.block_frames))
        for start, end, x0, _ in self._blocks(
                first, first_pose, inputs, spans, itertools.repeat(len(self.config.steps) - 1),
                lambda s, e: _randn((b, e - s, *first.shape[1:]), generator, first), False, generator,
                self.new_store()):
            yield start, end, x0

    def _blocks(self, first: torch.Tensor, first_pose: torch.Tensor, inputs: BlockInputs,
                spans: Iterable[tuple[int, int]], exits: Iterable[int], initial: Callable[[int, int], torch.Tensor],
                grad: bool, generator: torch.Generator | None, store: MemoryStore
                ) -> Iterator[tuple[int, int, torch.Tensor, ReplayState]]:
        """The block loop of `rollout` and the streams: commit the first frame (static action, pose
        `first_pose`, the origin of every pose feature), then per block take its actions and poses
        from `inputs` (stop at None), denoise from `initial(start, end)` down to its exit step
        (re-noising in between) and yield it; its commit runs when the next block is asked for,
        before that block's `inputs` are read (or after the last block). So a block's frames are out
        one forward before its commit, and a live stream reads each action one forward later: the
        commit is off the path from an action to its first frame. The yielded frames are what the
        commit reads: do not modify them in place."""
        steps = self.config.steps
        origin = first_pose
        b = first.shape[0]
        self.commit(first[:, None], 0, store, static_action(b, first.device)[:, None], first_pose[:, None], origin)
        pending: Callable[[], None] | None = None  # the last yielded block's commit
        for (start, end), exit_step in zip(spans, exits):
            if pending is not None:
                pending()
                pending = None
            given = inputs(start, end)
            if given is None:
                return
            block_actions, block_poses = _check_inputs(given, b, start, end)
            x = initial(start, end)
            # the re-noising draws, in the order the steps use them (the same numbers as drawing each
            # one after its step: nothing else draws in between)
            renoise = [_randn(x.shape, generator, x) for _ in range(exit_step)]
            graphs = None if grad and torch.is_grad_enabled() else self.graphs
            # one view per block: every step and the commit read it (graphed: written into the buffers
            # the graphs read, which the last block's commit, above, has finished with)
            context = self.context(store, start, end - start, block_poses[:, 0], origin,
                                   None if graphs is None else graphs.views)
            time = self.time_index(start)
            args = (x, renoise, time, context, block_actions, block_poses, origin)
            commit: Callable[[], list[LayerKV]]
            if graphs is not None:
                x, x0 = graphs.steps(*args)
                commit = graphs.commit
            else:
                x, x0, folded = self.denoise_steps(*args, grad=grad)
                commit = (functools.partial(lambda kvs: kvs, folded) if self.config.commit == "fold" else
                          functools.partial(self.commit_kv, x0, time, context, block_actions, block_poses, origin))
            pending = functools.partial(self._commit_block, commit, store, start, block_poses, origin)
            try:
                yield start, end, x0, ReplayState(start, end, x.detach(), steps[exit_step])
            except GeneratorExit:  # the consumer stopped: the block is never committed
                if self.graphs is not None:
                    self.graphs.discard()
                raise
        if pending is not None:
            pending()

    def _commit_block(self, commit: Callable[[], list[LayerKV]], store: MemoryStore, start: int,
                      poses: torch.Tensor, origin: torch.Tensor) -> None:
        self._append(store, commit(), start, poses, origin)

    def replay_backward(self, rollout: Rollout, delta: torch.Tensor, actions: torch.Tensor,
                        poses: torch.Tensor) -> torch.Tensor:
        """Accumulate into .grad the gradient of the surrogate 0.5·mean((x̂ − stopgrad(x̂ − Δ))²) over
        all generated frames (1..F-1), one block's forward at a time. delta (B, F-1, C, H, W).

        The memory is rebuilt in block order from the rollout's clean frames (the same commit
        passes), so each block reads the view it had during the rollout, and the store stays
        bounded. Each block's loss is divided by the whole sequence's element count; the returned
        (detached) sum equals the full-sequence loss. With `commit: fold` a block's commit is the K/V of
        that same forward (as in the rollout), detached."""
        origin = poses[:, 0]
        actions = static_first(actions)
        total = delta.numel()
        loss_sum = torch.zeros((), dtype=torch.float64, device=delta.device)
        store = self.new_store()
        clean = rollout.frames.detach()
        self.commit(clean[:, :1], 0, store, actions, poses, origin)
        for state in rollout.replay:
            start, end = state.start, state.end
            context = self.context(store, start, end - start, poses[:, start], origin)
            x0, kvs = self.block_x0_kv(state.x, state.sigma, start, context, actions, poses, origin)
            d = delta[:, start - 1:end - 1]
            loss = 0.5 * (x0.double() - (x0.double() - d.double()).detach()).pow(2).sum() / total
            loss.backward()
            loss_sum += loss.detach()
            del x0, loss
            if self.config.commit == "fold":  # the store keeps detached copies
                self._append(store, kvs, start, poses[:, start:end], origin)
            else:
                self.commit(clean[:, start:end], start, store, actions, poses, origin, context)
            del kvs
        return loss_sum


#: (start, end) -> the block's per-frame actions (B, n, 13) and poses (B, n, 4, 4), or None to stop
BlockInputs = Callable[[int, int], "tuple[torch.Tensor, torch.Tensor] | None"]


def _slices(actions: torch.Tensor, poses: torch.Tensor) -> BlockInputs:
    """BlockInputs over whole-rollout tensors (B, F, 13) and (B, F, 4, 4)."""
    return lambda start, end: (actions[:, start:end], poses[:, start:end])


def _open_spans(block_frames: int) -> Iterator[tuple[int, int]]:
    """block_spans without an end: (1, 1 + n), (1 + n, 1 + 2n), ..."""
    for start in itertools.count(1, block_frames):
        yield start, start + block_frames


def _check_inputs(given: tuple[torch.Tensor, torch.Tensor], batch: int, start: int,
                  end: int) -> tuple[torch.Tensor, torch.Tensor]:
    actions, poses = given
    n = end - start
    if tuple(actions.shape) != (batch, n, N_CHANNELS) or tuple(poses.shape) != (batch, n, 4, 4):
        raise ValueError(f"block [{start}, {end}): inputs must be actions ({batch}, {n}, {N_CHANNELS}) and poses "
                         f"({batch}, {n}, 4, 4), got {tuple(actions.shape)} and {tuple(poses.shape)}")
    return actions, poses


def _randn(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Noise drawn on the generator's own device (CPU generators stay reproducible across devices)."""
    return torch.randn(shape, generator=generator, device=draw_device(generator, like.device),
                       dtype=like.dtype).to(like.device)


def block_causal_velocity(model: VideoDiT, x: torch.Tensor, sigma: torch.Tensor, actions: torch.Tensor,
                          poses: torch.Tensor, block_frames: int) -> torch.Tensor:
    """One forward over a whole clip with the block-causal mask (training without a cache)."""
    mask = block_causal_mask(x.shape[1], block_frames, model.cfg.tokens_per_frame, x.device)
    return model(x, sigma, actions, poses, mask=mask)
