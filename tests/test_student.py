"""The causal student in float64 on CPU: cached generation vs one block-causal forward, memory views,
and replayed back-propagation vs full-graph back-propagation."""

from __future__ import annotations

import itertools
import json
import pathlib
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.training_helpers import clip_batch, float64_deterministic, randomized_model, tiny_config
from training.config import ModelConfig
from training.flow import x0_from_velocity
from training.memory import MemoryConfig, MemoryStore, frame_positions, view, view_capacity, view_tokens
from training.model import LayerKV, VideoDiT
from training.rope import apply_rope
from training.student import (WARPED_4_STEPS, Student, StudentConfig, block_causal_mask, block_causal_velocity, block_spans,
                              warped_steps)

UNBOUNDED = MemoryConfig(window=None)


def grad(p: torch.nn.Parameter) -> torch.Tensor:
    return torch.zeros_like(p) if p.grad is None else p.grad.clone()  # the CFG null embeddings get none


@pytest.fixture(autouse=True)
def float64():
    with float64_deterministic():
        yield


def test_warped_steps_known_answers():
    # Self-Forcing's 4 steps: timesteps 1000, 750, 500, 250 through shift 5: 5u / (1 + 4u)
    assert WARPED_4_STEPS == warped_steps(4) == (1.0, 0.9375, 2.5 / 3, 0.625)
    assert warped_steps(2) == (1.0, 2.5 / 3)
    assert warped_steps(1) == (1.0,)
    assert warped_steps(2, shift=1.0) == (1.0, 0.5)
    with pytest.raises(ValueError, match="at least one step"):
        warped_steps(0)


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 64), shift=st.floats(0.2, 20.0))
def test_warped_steps_are_a_valid_schedule(n, shift):
    steps = warped_steps(n, shift)
    assert len(steps) == n and steps[0] == 1.0
    assert all(a > b > 0 for a, b in zip(steps, steps[1:]))
    assert StudentConfig(steps=steps).steps == steps  # the config's own validation accepts it


def test_block_spans_and_mask():
    assert block_spans(6, 2) == [(0, 1), (1, 3), (3, 5), (5, 6)]
    mask = block_causal_mask(4, 2, 1)  # frames 0 | 1 2 | 3
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("grad,camera", [(True, "pose"), (False, "pose"), (False, "pose+plucker"), (True, "prope"),
                                         (False, "pose+prope")])
def test_cached_block_forwards_equal_one_block_causal_forward(grad, camera):
    # grad: [view | own] concatenated, or (no grad) own written into the view's room; "prope": keys
    # and values are cached transformed by their own frame's camera (training/prope.py)
    config = tiny_config(camera=camera, prope_dims=8)
    model = randomized_model(config, dtype=torch.float64)
    batch = clip_batch(config, 2, 7, dtype=torch.float64)
    sigma = torch.rand(2, 7)
    sigma[:, 0] = 0
    full = block_causal_velocity(model, batch.frames, sigma, batch.actions, batch.poses, block_frames=2)
    student = Student(model, StudentConfig(block_frames=2, memory=UNBOUNDED))
    store = MemoryStore(config.grid, UNBOUNDED, model.rope_angles)
    origin = batch.poses[:, 0]
    for start, end in block_spans(7, 2):
        with torch.set_grad_enabled(grad):
            v, kvs = model.forward_kv(batch.frames[:, start:end], sigma[:, start:end], batch.actions[:, start:end],
                                      batch.poses[:, start:end], origin, first_frame=start,
                                      context=student.context(store, start, end - start, batch.poses[:, start], origin))
        store.append(kvs, end - start)
        assert torch.allclose(v, full[:, start:end], atol=1e-10), (start, (v - full[:, start:end]).abs().max())


def test_cached_generation_equals_uncached_block_causal_generation():
    """Rollout with the memory vs recomputing every step from scratch with the block-causal mask
    over [clean generated blocks | the current noisy block] (no cache anywhere)."""
    config = tiny_config()
    model = randomized_model(config, dtype=torch.float64)
    batch = clip_batch(config, 2, 6, dtype=torch.float64)
    cfg = StudentConfig(block_frames=2, steps=(1.0, 0.7, 0.4), memory=UNBOUNDED)
    noise = torch.randn(2, 5, 3, config.height, config.width_px, generator=torch.Generator().manual_seed(0))
    out = Student(model, cfg).rollout(batch.frames[:, 0], batch.actions, batch.poses, noise,
                                      generator=torch.Generator().manual_seed(1)).frames
    actions = batch.actions.clone()
    actions[:, 0] = 0
    actions[:, 0, 12] = 1
    gen = torch.Generator().manual_seed(1)
    clean = batch.frames[:, :1]
    for start, end in block_spans(6, 2)[1:]:
        x = noise[:, start - 1:end - 1]
        for i, s in enumerate(cfg.steps):
            seq = torch.cat([clean, x], dim=1)
            sigma = torch.zeros(2, end)
            sigma[:, start:] = s
            v = block_causal_velocity(model, seq, sigma, actions[:, :end], batch.poses[:, :end], 2)[:, start:]
            x0 = x0_from_velocity(x, v, sigma[:, start:])
            if i + 1 < len(cfg.steps):
                renoise = torch.randn(x.shape, generator=gen)
                x = (1 - cfg.steps[i + 1]) * x0 + cfg.steps[i + 1] * renoise
        clean = torch.cat([clean, x0], dim=1)
    assert torch.allclose(out, clean, atol=1e-10), (out - clean).abs().max()


def test_memory_view_pools_old_frames_and_reports_the_reduction():
    grid = (4, 4)
    config = MemoryConfig(window=3, pool=(1, 2, 4))
    rope = lambda pos: pos[:, :1].repeat(1, 3)  # noqa: E731 - angles stand-in: every pair turns by the frame index
    store = MemoryStore(grid, config, rope)
    g = torch.Generator().manual_seed(0)
    keys = []
    for _ in range(10):
        keys.append(torch.randn(1, 2, 16, 6, generator=g))
        store.append([LayerKV(keys[-1], torch.randn(1, 2, 16, 6, generator=g))], 1)
    ctx = view(store, 10)[0]
    # frames 7, 8, 9 full (48); older: f%3==0 full (0, 3, 6: 48), ==1 2x2 -> 4 tokens (1, 4), ==2 4x4 -> 1 (2, 5)
    assert ctx.k.shape[2] == 48 + 48 + 2 * 4 + 2 * 1 == view_tokens(10, grid, config)
    # a 2x pooled frame's first token is the mean of its top-left 2x2 patch, rotated at its position
    k1 = keys[1].reshape(1, 2, 4, 4, 6)
    pooled = k1[:, :, :2, :2].mean(dim=(2, 3))[:, :, None]
    assert torch.allclose(ctx.k[:, :, 16:17], apply_rope(pooled, torch.full((1, 3), 1.0)), atol=1e-6)
    assert not torch.allclose(ctx.k[:, :, 16:17], pooled, atol=1e-3)
    assert torch.equal(ctx.v[:, :, 16:17], store.frames[1].pooled[0].v[:, :, :1])
    # pooled positions are the cells' centres
    assert frame_positions(1, grid, 2, torch.device("cpu"))[0].tolist() == [1.0, 0.5, 0.5]
    assert frame_positions(2, grid, 4, torch.device("cpu"))[0].tolist() == [2.0, 1.5, 1.5]
    assert view(store, 0) is None
    with pytest.raises(ValueError, match="only 10 frames"):
        view(store, 11)
    # releasing: frames that left the window keep only what later views read
    before = store.nbytes()
    view_before = view(store, 10)[0]
    store.release(10 - config.window)
    after = view(store, 10)[0]
    assert torch.equal(after.k, view_before.k) and store.nbytes() < before
    with pytest.raises(ValueError, match="frame 1 was released"):
        view(store, 3)  # frame 1 would be full resolution in block 3's window
    # unbounded: everything at full resolution, nothing pooled or released
    unbounded = MemoryStore(grid, UNBOUNDED, rope)
    for k in keys:
        unbounded.append([LayerKV(k, k)], 1)
    unbounded.release(10)
    assert view(unbounded, 10)[0].k.shape[2] == 160


@pytest.mark.parametrize("camera,commit", [("pose", "clean"), ("pose+prope", "clean"), ("pose", "fold")])
def test_replayed_backprop_equals_full_graph_backprop(camera, commit):
    """Detached-context semantics, a compressed memory (window 2, pooled older frames), random exit
    steps per block, actions and poses; the loss is normalised over the whole sequence. With the
    commit folded, the replay commits each block's K/V from the very forward it differentiates."""
    config = tiny_config(camera=camera, prope_dims=8)
    model = randomized_model(config, dtype=torch.float64)
    batch = clip_batch(config, 2, 9, dtype=torch.float64)
    cfg = StudentConfig(block_frames=2, steps=(1.0, 0.8, 0.55, 0.3), memory=MemoryConfig(window=2, pool=(1, 2, 4)),
                        commit=commit)
    student = Student(model, cfg)
    noise = torch.randn(2, 8, 3, config.height, config.width_px, generator=torch.Generator().manual_seed(0))
    exits = torch.randint(0, 4, (4,), generator=torch.Generator().manual_seed(2)).tolist()
    assert len(set(exits)) > 1
    delta = torch.randn(2, 8, 3, config.height, config.width_px, generator=torch.Generator().manual_seed(3))

    # full graph: the rollout keeps every block's exit-step graph, one backward over the sequence
    model.zero_grad()
    full = student.rollout(batch.frames[:, 0], batch.actions, batch.poses, noise, exits, grad=True,
                           generator=torch.Generator().manual_seed(5))
    x_hat = full.frames[:, 1:]
    full_loss = 0.5 * (x_hat - (x_hat - delta).detach()).pow(2).mean()
    full_loss.backward()
    reference = {n: grad(p) for n, p in model.named_parameters()}

    # replay: roll out without grad, then one block's forward at a time with grad
    model.zero_grad()
    with torch.no_grad():
        rolled = student.rollout(batch.frames[:, 0], batch.actions, batch.poses, noise, exits,
                                 generator=torch.Generator().manual_seed(5))
    assert torch.allclose(rolled.frames, full.frames.detach(), atol=1e-12)
    # the views are compressed: block 4 (frames 7-8) sees 2 full + pooled older frames
    assert view_tokens(7, config.grid, cfg.memory) < 7 * config.tokens_per_frame
    # the rollout's memory kept only what later blocks read: old frames pooled, full ones released
    assert rolled.store is not None
    assert rolled.store.frames[1].full is None and rolled.store.frames[1].pooled is not None
    replay_loss = student.replay_backward(rolled, delta, batch.actions, batch.poses)
    assert torch.allclose(replay_loss, full_loss.detach(), atol=1e-12)
    worst = max((grad(p) - reference[n]).abs().max().item() for n, p in model.named_parameters())
    assert worst < 1e-10, worst
    assert any(reference[n].abs().max() > 1e-6 for n in reference)


def test_bounded_view_spaces_old_frames_evenly():
    from training.memory import view_frames

    config = MemoryConfig(window=4, pool=(2, 4), max_old=5)
    frames = view_frames(104, config)
    assert frames[-4:] == [100, 101, 102, 103]
    assert frames[:-4] == [0, 25, 50, 74, 99]  # round(linspace(0, 99, 5))
    grid = (9, 16)
    # the view's size stops growing: frame 300 reads as many tokens as frame 40
    assert view_tokens(300, grid, config) == view_tokens(40, grid, config)
    assert view_tokens(300, grid, MemoryConfig(window=None)) == 300 * 144


def test_replay_agrees_with_full_graph_under_bf16_autocast():
    torch.set_default_dtype(torch.float32)
    torch.use_deterministic_algorithms(False)
    config = tiny_config()
    model = randomized_model(config)
    batch = clip_batch(config, 2, 7)
    cfg = StudentConfig(block_frames=2, steps=(1.0, 0.7, 0.4), memory=MemoryConfig(window=2, pool=(1, 2)))
    student = Student(model, cfg)
    noise = torch.randn(2, 6, 3, config.height, config.width_px, generator=torch.Generator().manual_seed(0))
    delta = torch.randn(2, 6, 3, config.height, config.width_px, generator=torch.Generator().manual_seed(3))
    exits = [2, 0, 1]

    def flat() -> torch.Tensor:
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in model.parameters()])

    with torch.autocast("cpu", dtype=torch.bfloat16):
        model.zero_grad()
        full = student.rollout(batch.frames[:, 0], batch.actions, batch.poses, noise, exits, grad=True,
                               generator=torch.Generator().manual_seed(5))
        x_hat = full.frames[:, 1:].float()
        (0.5 * (x_hat - (x_hat - delta).detach()).pow(2).mean()).backward()
        reference = flat()
        model.zero_grad()
        with torch.no_grad():
            rolled = student.rollout(batch.frames[:, 0], batch.actions, batch.poses, noise, exits,
                                     generator=torch.Generator().manual_seed(5), keep_store=False)
        student.replay_backward(rolled, delta, batch.actions, batch.poses)
        replayed = flat()
    cosine = torch.nn.functional.cosine_similarity(reference.double(), replayed.double(), dim=0)
    assert cosine > 0.999, float(cosine)


def test_static_view_pads_to_one_shape_and_changes_nothing():
    """A fixed-capacity view (padding masked out) gives the same rollout and the same replayed
    gradients as the exact-size view, and every block forward after the first sees one shape."""
    config = tiny_config()
    model = randomized_model(config, dtype=torch.float64)
    batch = clip_batch(config, 2, 13, dtype=torch.float64)
    memory = MemoryConfig(window=2, pool=(1, 2, 4), max_old=3)
    capacity = view_capacity(config.grid, memory)
    assert capacity == 2 * 16 + 3 * 16  # the window at full size + 3 old frames at the finest factor (1)
    noise = torch.randn(2, 12, 3, config.height, config.width_px, generator=torch.Generator().manual_seed(0))
    delta = torch.randn(2, 12, 3, config.height, config.width_px, generator=torch.Generator().manual_seed(1))
    results = []
    for static in (False, True):
        student = Student(model, StudentConfig(block_frames=2, memory=memory, static_view=static))
        shapes = set()
        hook = model.blocks[0].attn.register_forward_hook(
            lambda _m, args, _out: shapes.add(None if args[4] is None else tuple(args[4].k.shape)))
        out = student.rollout(batch.frames[:, 0], batch.actions, batch.poses, noise, [3, 1, 0, 2, 3, 1],
                              generator=torch.Generator().manual_seed(2))
        hook.remove()
        model.zero_grad()
        student.replay_backward(out, delta, batch.actions, batch.poses)
        results.append((out.frames, [grad(p) for p in model.parameters()], shapes))
    (frames_a, grads_a, shapes_a), (frames_b, grads_b, shapes_b) = results
    assert torch.allclose(frames_a, frames_b, atol=1e-12)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(grads_a, grads_b))
    room = 2 * config.tokens_per_frame  # each view reserves room for its block's own tokens
    assert len(shapes_a) > 2 and shapes_b == {None, (2, config.heads, capacity + room, config.head_dim)}
    with pytest.raises(ValueError, match="bounded memory"):
        StudentConfig(memory=MemoryConfig(window=2), static_view=True)


def test_the_store_keeps_copies_of_what_it_is_given():
    """MemoryStore.append stores its own copies: K/V overwritten after the append (a CUDA graph's output
    buffers, which BlockGraphs.commit hands over without copying) leave the memory as it was."""
    config = tiny_config()
    memory = MemoryConfig(window=1, pool=(1, 2), max_old=4)
    model = randomized_model(config, dtype=torch.float64)
    student = Student(model, StudentConfig(block_frames=2, memory=memory))
    n = 2 * config.tokens_per_frame
    g = torch.Generator().manual_seed(0)
    kvs = [LayerKV(torch.randn(1, config.heads, n, config.head_dim, generator=g, dtype=torch.float64),
                   torch.randn(1, config.heads, n, config.head_dim, generator=g, dtype=torch.float64))
           for _ in range(config.depth)]
    kept, fresh = student.new_store(), student.new_store()
    kept.append(kvs, 2)
    fresh.append([LayerKV(kv.k.clone(), kv.v.clone()) for kv in kvs], 2)
    for kv in kvs:
        kv.k.zero_()
        kv.v.zero_()
    for a, b in zip(kept.frames, fresh.frames):
        for part_a, part_b in ((a.full, b.full), (a.pooled, b.pooled)):
            assert (part_a is None) == (part_b is None)
            for x, y in zip(part_a or [], part_b or []):
                assert torch.equal(x.k, y.k) and torch.equal(x.v, y.v) and x.v.abs().sum() > 0


def test_a_view_written_into_buffers_is_the_view_in_the_same_tensors_every_block():
    """memory.view(..., buffers=): the graphed path's views are written into one set of tensors per
    shape (which the graphs read in place): the real tokens and the mask equal the fresh view's, the
    padding is masked whatever it holds, and the next block's view reuses the same tensors."""
    config = tiny_config()
    model = randomized_model(config, dtype=torch.float64)
    batch = clip_batch(config, 2, 13, dtype=torch.float64)
    memory = MemoryConfig(window=2, pool=(1, 2, 4), max_old=3)
    student = Student(model, StudentConfig(block_frames=2, memory=memory, static_view=True))
    noise = torch.randn(2, 12, 3, config.height, config.width_px, generator=torch.Generator().manual_seed(0))
    buffers: dict = {}
    seen = []
    context = student.context

    def both(store, start, frames, pose, origin, _buffers=None):  # each block's view, fresh and written
        fresh = context(store, start, frames, pose, origin)
        written = context(store, start, frames, pose, origin, buffers)
        if fresh is None:  # nothing stored to read (frame 0's own commit)
            assert written is None
            return None
        assert written is not None
        valid = fresh[0].valid
        assert valid is not None and torch.equal(written[0].valid, valid)
        tokens = int(valid.sum())
        for a, b in zip(fresh, written):
            assert a.k.shape == b.k.shape and a.reserved == b.reserved
            assert torch.equal(a.k[:, :, :tokens], b.k[:, :, :tokens]) and torch.equal(a.v[:, :, :tokens], b.v[:, :, :tokens])
        seen.append((tokens, [layer.k for layer in written]))
        return fresh

    student.context = both  # type: ignore[method-assign]
    student.rollout(batch.frames[:, 0], batch.actions, batch.poses, noise)
    assert len({tokens for tokens, _ in seen}) > 2  # the view grew, then stayed bounded
    assert len(buffers) == 1 and all(all(x is y for x, y in zip(seen[0][1], ks)) for _, ks in seen)  # the same tensors


@pytest.mark.parametrize("spatial_rope,camera", [("grid", "pose"), ("rays", "pose"), ("rays", "pose+prope")])
def test_static_view_rollout_compiles_to_a_fixed_set_of_graphs(spatial_rope, camera):
    """With static views the block's time index is a tensor: a compiled forward is traced once per
    block size and call kind, not once per block (dynamo with the eager backend: no code generation);
    view-ray positions and camera transforms, computed from each block's poses inside the forward,
    change nothing there."""
    import torch._dynamo

    config = tiny_config(spatial_rope=spatial_rope, camera=camera, prope_dims=8)
    model = randomized_model(config)
    memory = MemoryConfig(window=2, pool=(1, 2), max_old=2)
    student = Student(model, StudentConfig(block_frames=2, memory=memory, static_view=True))
    traced = []

    def backend(graph, _inputs):
        traced.append(graph)
        return graph.forward

    counts = []
    try:
        for frames in (9, 17):  # 4 blocks, then 8: as many graphs (before, one more per block)
            torch._dynamo.reset()
            traced.clear()
            model.forward_kv = torch.compile(model.__class__.forward_kv.__get__(model), backend=backend,  # type: ignore[method-assign]
                                             dynamic=False)
            batch = clip_batch(config, 1, frames)
            noise = torch.randn(1, frames - 1, 3, config.height, config.width_px)
            with torch.no_grad():
                student.rollout(batch.frames[:, 0], batch.actions, batch.poses, noise)
            counts.append(len(traced))
    finally:
        del model.forward_kv
        torch._dynamo.reset()
    assert counts[0] == counts[1] <= 4, counts


@pytest.mark.parametrize("frames, exits, camera, commit", [(12, None, "pose", "clean"),
                                                          (13, [3, 1, 0, 2, 3, 1], "pose", "clean"),
                                                          (13, [3, 1, 0, 2, 3, 1], "pose+prope", "clean"),
                                                          (13, [3, 1, 0, 2, 3, 1], "pose", "fold")])
def test_block_graph_buffers_reproduce_the_eager_blocks(frames, exits, camera, commit):
    """BlockGraphs' static-buffer program (run uncaptured on CPU) gives the eager rollout exactly:
    inputs are loaded per block, outputs copied out before the next block overwrites them, one
    program per (block shape, exit step); a short last block gets its own."""
    from training.graphs import BlockGraphs

    config = tiny_config(camera=camera, prope_dims=8)
    model = randomized_model(config, dtype=torch.float64)
    batch = clip_batch(config, 2, frames, dtype=torch.float64)
    memory = MemoryConfig(window=2, pool=(1, 2, 4), max_old=3)
    noise = torch.randn(2, frames - 1, 3, config.height, config.width_px, generator=torch.Generator().manual_seed(0))
    student = Student(model, StudentConfig(block_frames=2, memory=memory, static_view=True, commit=commit))
    outs = []
    for graphs in (None, BlockGraphs(student, capture=False)):
        student.graphs = graphs
        with torch.no_grad():
            outs.append(student.rollout(batch.frames[:, 0], batch.actions, batch.poses, noise, exits,
                                        generator=torch.Generator().manual_seed(2)))
        streamed = list(student.stream(batch.frames[:, 0], batch.actions, batch.poses, torch.Generator().manual_seed(3)))
        outs.append(torch.cat([batch.frames[:, :1]] + [block for _s, _e, block in streamed], dim=1))
    eager, eager_stream, graphed, graphed_stream = outs
    assert torch.equal(eager.frames, graphed.frames) and torch.equal(eager_stream, graphed_stream)
    assert all(torch.equal(a.x, b.x) and a.sigma == b.sigma for a, b in zip(eager.replay, graphed.replay))
    assert eager.store is not None and graphed.store is not None
    for fa, fb in zip(eager.store.frames, graphed.store.frames):
        for part_a, part_b in ((fa.full, fb.full), (fa.pooled, fb.pooled)):
            assert (part_a is None) == (part_b is None)
            assert all(torch.equal(a.k, b.k) and torch.equal(a.v, b.v) for a, b in zip(part_a or [], part_b or []))
    spans = block_spans(frames, 2)[1:]
    kinds = {(end - start, exit) for (start, end), exit in zip(spans, exits or [3] * len(spans))}
    kinds |= {(end - start, 3) for start, end in spans}  # the stream's blocks exit at the last step
    assert graphs is not None and len(graphs) == len(kinds)
    with pytest.raises(ValueError, match="static_view"):
        BlockGraphs(Student(model, StudentConfig(memory=memory)))


@pytest.mark.parametrize("graphed", [False, True])
def test_a_live_stream_reads_each_action_after_the_commit_before_it(graphed):
    """The commit is off the path from an action to its frames: a block's frames come out before its
    commit runs, and that commit runs before the next block's actions are read (eager and graphed);
    the last block is committed when the stream ends, and a graph refuses a second block before the
    first's commit."""
    from training.graphs import BlockGraphs

    config = tiny_config()
    model = randomized_model(config)
    batch = clip_batch(config, 1, 9)
    memory = MemoryConfig(window=2, pool=(1, 2), max_old=2)
    student = Student(model, StudentConfig(block_frames=2, memory=memory, static_view=graphed))
    events: list[tuple[str, int]] = []
    if graphed:
        graphs = student.graphs = BlockGraphs(student, capture=False)
        steps, commit = graphs.steps, graphs.commit
        graphs.steps = lambda *a: (events.append(("steps", int(a[2]))), steps(*a))[1]  # type: ignore[method-assign]
        graphs.commit = lambda: (events.append(("commit", -1)), commit())[1]  # type: ignore[method-assign]
    else:
        commit_kv = student.commit_kv
        student.commit_kv = lambda *a: (events.append(("commit", -1)), commit_kv(*a))[1]  # type: ignore[method-assign]

    def block_inputs(start: int, end: int):
        events.append(("inputs", start))
        return batch.actions[:, start:end], batch.poses[:, start:end]

    stream = student.stream_live(batch.frames[:, 0], batch.poses[:, 0], block_inputs, torch.Generator().manual_seed(1),
                                 frames=9)
    with torch.no_grad():
        for start, _end, _block in stream:
            events.append(("frames", start))
    names = [name for name, _ in events if name != "steps"]
    assert names == ["inputs", "frames", "commit"] * 4
    assert [start for name, start in events if name == "inputs"] == [1, 3, 5, 7]
    if graphed:
        with torch.no_grad():
            args = (batch.frames[:, 1:3], [], student.time_index(9), None, batch.actions[:, 1:3], batch.poses[:, 1:3],
                    batch.poses[:, 0])
            with pytest.raises(RuntimeError, match="no block's steps to commit"):
                commit()
            store = student.new_store()
            student.commit(batch.frames[:, :1], 0, store, batch.actions, batch.poses, batch.poses[:, 0])
            context = student.context(store, 1, 2, batch.poses[:, 1], batch.poses[:, 0])
            steps(*args[:3], context, *args[4:])
            with pytest.raises(RuntimeError, match="commit has not run"):
                steps(*args[:3], context, *args[4:])
            graphs.discard()
            closed = student.stream(batch.frames[:, 0], batch.actions, batch.poses, torch.Generator().manual_seed(1))
            next(closed)
            closed.close()  # a consumer that stops mid-stream leaves no commit pending: the next stream runs
            again = [b for _s, _e, b in student.stream(batch.frames[:, 0], batch.actions, batch.poses,
                                                       torch.Generator().manual_seed(1))]
            assert len(again) == 4


def _on_gpu(batch_size: int, frames: int) -> tuple[ModelConfig, VideoDiT, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A GPU test's model and clip: the tiny config, random weights in fp32, first frame, actions, poses on CUDA."""
    torch.use_deterministic_algorithms(False)
    torch.set_default_dtype(torch.float32)
    device = torch.device("cuda")
    config = tiny_config()
    batch = clip_batch(config, batch_size, frames)
    first, actions, poses = (t.to(device) for t in (batch.frames[:, 0], batch.actions, batch.poses))
    return config, randomized_model(config).to(device), first, actions, poses


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_captured_block_graphs_match_eager_on_gpu():
    """The captured graphs replay the eager blocks (fp32 and bf16 autocast) on a GPU."""
    from training.graphs import BlockGraphs

    device = torch.device("cuda")
    _config, model, first, actions, poses = _on_gpu(3, 11)
    memory = MemoryConfig(window=2, pool=(1, 2, 4), max_old=3)
    for commit, precision in itertools.product(("clean", "fold"), (torch.float32, torch.bfloat16)):
        student = Student(model, StudentConfig(block_frames=2, memory=memory, static_view=True, commit=commit))
        results = []
        for graphs in (None, BlockGraphs(student)):
            student.graphs = graphs
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == torch.bfloat16):
                gen = torch.Generator(device).manual_seed(4)
                results.append(torch.cat([first[:, None]] + [b for _s, _e, b in student.stream(first, actions, poses, gen)],
                                         dim=1))
        assert graphs is not None and len(graphs) == 1
        tol = 1e-5 if precision == torch.float32 else 2e-2
        assert torch.allclose(results[0], results[1], atol=tol), (results[0] - results[1]).abs().max()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("select", ["spaced", "view"])
def test_captured_block_graphs_never_make_the_host_wait(select):
    """Once its graphs are captured, a rollout issues every block without waiting for the GPU: no
    blocking host-to-device copy (the block's time index, the retrieval's sample points) or read-back
    per block, so the host prepares the next block's view and memory while the last one runs.
    CUDA's sync debug mode raises on any synchronising call."""
    from training.graphs import BlockGraphs

    config, model, first, actions, poses = _on_gpu(2, 13)
    noise = torch.randn(2, 12, 3, config.height, config.width_px, device=first.device)
    memory = (MemoryConfig(window=2, pool=(1, 2, 4), max_old=3) if select == "spaced" else
              MemoryConfig(window=2, pool=(1,), max_old=2, select="view"))
    for commit in ("clean", "fold"):
        student = Student(model, StudentConfig(block_frames=2, memory=memory, static_view=True, commit=commit))
        student.graphs = BlockGraphs(student)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            student.rollout(first, actions, poses, noise, keep_store=False)  # captures the graphs
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                student.rollout(first, actions, poses, noise, keep_store=False)
            finally:
                torch.cuda.set_sync_debug_mode("default")


@pytest.mark.slow
def test_student_bench_runs_every_section_on_the_cpu(tmp_path):
    """bench/student.py is run on a GPU machine whose time is scarce: a broken section (a helper
    lost in a refactor) must fail here first. Tiny model, quick sizes; figures are not checked."""
    out = tmp_path / "bench.json"
    root = pathlib.Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "bench" / "student.py"), "--quick", "--preset", "tiny", "--device",
                           "cpu", "--batches", "1", "--sections", "memory,speed,latency,reaction,profile", "--reaction-steps", "4,1",
                           "--profile-student", "1f", "--json", str(out)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert {"memory_mib", "speed", "latency_ms", "reaction_ms", "profile"} <= set(figures)
    assert set(figures["reaction_ms"]) == {"4", "1"}
    for steps, reaction in figures["reaction_ms"].items():
        assert reaction["student_steps"] == int(steps)
        assert reaction["student_block"] > 0 and reaction["student_commit"] > 0 and reaction["teacher_clip"] > 0
        assert reaction["blocks_timed"] >= 3
        assert reaction["ratio"] == pytest.approx(reaction["student_block"] / reaction["teacher_clip"])
    assert figures["profile"]["student"]["top"] and figures["profile"]["teacher"]["top"]
    profiled = figures["profile"]["student"]
    assert (profiled["steps"], profiled["commit"]) == (1, "fold")
    assert profiled["eager_ops_per_block"] > 0 and profiled["wall_ms"] > 0 and profiled["busy"] > 0


def test_the_graphed_full_cache_of_the_latency_bench_is_the_full_cache():
    """bench/student.py times a CUDA-graphed full cache at frame f as a bounded memory of capacity
    f frames: it must generate the frames a full cache does up to f, and hold exactly the full
    cache's tokens at f (its capacity, so the graphed block reads no padding there)."""
    import importlib.util

    from training.graphs import BlockGraphs

    root = pathlib.Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("student_bench", root / "bench" / "student.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    config = tiny_config()
    model = randomized_model(config)
    frame, frames = 5, 11  # blocks of 2 start at frames 1, 3, 5, 7, 9
    memory, full = bench.full_cache_memory(frame), UNBOUNDED
    assert view_capacity(config.grid, memory) == view_tokens(frame, config.grid, full) == view_tokens(frame, config.grid,
                                                                                                      memory)
    assert view_tokens(frames - 1, config.grid, memory) == view_tokens(frame, config.grid, full)
    batch = clip_batch(config, 2, frames)
    outs = []
    for student in (Student(model, StudentConfig(block_frames=2, memory=full)),
                    Student(model, StudentConfig(block_frames=2, memory=memory, static_view=True))):
        if student.config.static_view:
            student.graphs = BlockGraphs(student, capture=False)
        with torch.no_grad():
            streamed = list(student.stream(batch.frames[:, 0], batch.actions, batch.poses, torch.Generator().manual_seed(3)))
        outs.append(torch.cat([block for _s, _e, block in streamed], dim=1))
    upto = frame + 1  # frames 1 .. 6: up to the block that starts at `frame`, every view is the full cache
    assert torch.equal(outs[0][:, :upto], outs[1][:, :upto])
    assert not torch.allclose(outs[0][:, upto:], outs[1][:, upto:], atol=1e-3)  # past it the window drops frame 0
