"""The student's memory retrieved by view (memory.select: view, WorldPlay's reconstituted context)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from tests.training_helpers import clip_batch, randomized_model, tiny_config
from training.memory import MemoryConfig, view, view_capacity, view_tokens
from training.retrieval import ViewGeometry, retrieve, view_overlap
from training.student import Student, StudentConfig

GEOMETRY = ViewGeometry.of(90.0, 72, 128, 8)  # the small model's frames


def camera(yaw_deg: float = 0.0, position: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> torch.Tensor:
    """Camera-to-world, OpenCV axes, turned right by yaw (about the camera's y axis, which points down)."""
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = torch.from_numpy(Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix())
    pose[:3, 3] = torch.tensor(position, dtype=torch.float64)
    return pose


def test_overlap_known_answers():
    assert GEOMETRY.tan_half == pytest.approx((1.0, 36 / 64))
    here = camera()[None]
    cases = {"same camera": (camera(), 1.0), "turned round": (camera(180), 0.0),
             "taken 0.5 m further ahead": (camera(position=(0, 0, 0.5)), 1.0),
             "taken 20 m further back": (camera(position=(0, 0, -20)), 0.0)}
    past = torch.stack([c for c, _ in cases.values()])[None]
    got = view_overlap(past, here, GEOMETRY)[0]
    for (name, (_, expected)), value in zip(cases.items(), got.tolist()):
        assert value == pytest.approx(expected), name
    # the past camera turned 45 deg left of the current one: its right half of columns is in view
    # (the rows near its corners leave the current camera's narrower vertical field first)
    half = view_overlap(camera(-45)[None, None], here, GEOMETRY)[0, 0]
    assert 0.3 < float(half) <= 0.5


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_overlap_is_unchanged_by_moving_everything_rigidly(seed):
    rng = np.random.default_rng(seed)

    def pose() -> torch.Tensor:
        p = torch.eye(4, dtype=torch.float64)
        p[:3, :3] = torch.from_numpy(Rotation.random(random_state=rng.integers(1 << 31)).as_matrix())
        p[:3, 3] = torch.from_numpy(rng.normal(0, 1, 3))
        return p

    past = torch.stack([pose() for _ in range(5)])[None]
    current = pose()[None]
    world = pose()
    overlap = view_overlap(past, current, GEOMETRY)
    assert torch.allclose(view_overlap(world @ past, world @ current, GEOMETRY), overlap, atol=1e-12)
    assert ((overlap >= 0) & (overlap <= 1)).all()


def test_retrieval_finds_the_frames_that_saw_what_the_camera_sees_again():
    # a walk 3 m ahead and back: at the start again, frame 0 (taken there) beats every frame since,
    # which saw the same directions from further ahead
    walk = torch.stack([camera(position=(0, 0, 0.3 * f)) for f in range(11)])[None]
    assert retrieve(walk, camera()[None], GEOMETRY, 2, distance_m=1.0).tolist() == [[0, 1]]
    # a turn right in steps of 20 deg: looking 140 deg right, the frames that looked that way
    turn = torch.stack([camera(20 * f) for f in range(10)])[None]
    assert retrieve(turn, camera(140)[None], GEOMETRY, 3, distance_m=1.0).tolist() == [[6, 7, 8]]
    # per sample: each of a batch retrieves for its own camera; ties go to the latest frame
    both = torch.cat([turn, torch.stack([camera(0)] * 10)[None]])
    picks = retrieve(both, torch.stack([camera(0), camera(0)]), GEOMETRY, 2, distance_m=1.0)
    assert picks.tolist() == [[0, 1], [8, 9]]


def test_view_config_is_checked():
    with pytest.raises(ValueError, match="memory.select must be"):
        MemoryConfig(select="nearest")
    with pytest.raises(ValueError, match="needs memory.window and memory.max_old"):
        MemoryConfig(select="view", pool=(1,))
    with pytest.raises(ValueError, match="memory.pool must be"):
        MemoryConfig(select="view", max_old=2)
    assert MemoryConfig(select="view", pool=(0,), max_old=2).pool == (0,)  # window only: eval's baseline
    config = MemoryConfig(window=2, pool=(1,), max_old=3, select="view")
    assert view_capacity((4, 4), config) == (2 + 3) * 16
    assert view_tokens(9, (4, 4), config) == (2 + 3) * 16 and view_tokens(4, (4, 4), config) == 4 * 16


def test_a_student_reads_per_sample_the_frames_its_camera_sees_again():
    """Two rollouts at once: the first turns right 30 deg per frame and back, the second stands
    still. At the block where the first is back at its start, its view holds the keys of the
    frames that looked that way (its first two) and the second's its latest older frames (ties),
    each exactly as stored."""
    torch.set_default_dtype(torch.float64)
    try:
        config = tiny_config()
        model = randomized_model(config, dtype=torch.float64)
        batch = clip_batch(config, 2, 9, dtype=torch.float64)
        yaws = [0, 30, 60, 90, 60, 30, 0, 0, -30]
        poses = torch.stack([torch.stack([camera(y) for y in yaws]), torch.stack([camera(0)] * 9)])
        memory = MemoryConfig(window=2, pool=(1,), max_old=2, select="view")
        student = Student(model, StudentConfig(block_frames=2, memory=memory))
        noise = torch.randn(2, 8, 3, config.height, config.width_px, generator=torch.Generator().manual_seed(0))
        rollout = student.rollout(batch.frames[:, 0], batch.actions, poses, noise,
                                  generator=torch.Generator().manual_seed(1))
        assert rollout.frames.shape == (2, 9, 3, config.height, config.width_px) and rollout.store is not None
        store = rollout.store
        assert all(frame.full is not None for frame in store.frames)  # nothing released: any frame may be read
        context = student.context(store, 7, 2, poses[:, 7], poses[:, 0])  # block [7, 9): window 5, 6; older 0-4
        n = config.tokens_per_frame
        assert context is not None and context[0].k.shape[2] == (2 + 2) * n + 2 * n  # + room for the block
        picks = {0: [0, 1], 1: [3, 4]}  # sample 0 back at 0 deg: frames 0 (0 deg) and 1 (30); sample 1: latest
        for layer in (0, len(context) - 1):
            for sample, frames in picks.items():
                for slot, f in enumerate(frames):
                    got = context[layer].k[sample, :, slot * n:(slot + 1) * n]
                    assert torch.equal(got, store.frames[f].full[layer].k[sample]), (layer, sample, f)
                window = context[layer].k[sample, :, 2 * n:4 * n]
                assert torch.equal(window, torch.cat([store.frames[5].full[layer].k[sample],
                                                      store.frames[6].full[layer].k[sample]], dim=1))
        with pytest.raises(ValueError, match="needs the block's camera"):
            view(store, 7)
        # the same rollout again, block by block from its clean frames (the replayed backward's path)
        loss = student.replay_backward(rollout, torch.zeros_like(noise), batch.actions, poses)
        assert float(loss) == 0.0
    finally:
        torch.set_default_dtype(torch.float32)
