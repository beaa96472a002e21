"""RoPE at each token's view direction (model.spatial_rope: rays): the positions, the model, the
student's memory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from tests.training_helpers import clip_batch, random_pose, randomized_model, tiny_config
from training.conditioning import patch_rays, view_positions
from training.memory import MemoryConfig, MemoryStore, pool_positions, view
from training.model import VideoDiT, load_init
from training.student import Student, StudentConfig, block_causal_velocity, block_spans


def _pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rotation, translation
    return pose


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), angle=st.floats(0.0, 2.5), focal=st.floats(0.5, 20.0))
def test_a_view_position_depends_only_on_the_world_direction(seed, angle, focal):
    """A camera turned by Q (and moved anywhere) puts its ray r where the origin camera puts Q r:
    positions are a function of the direction in the origin camera, whatever the rest of the pose,
    and moving the whole trajectory rigidly changes nothing."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=3)
    turn = Rotation.from_rotvec(angle * axis / np.linalg.norm(axis))
    rays = rng.normal(0, 0.4, (12, 3))
    rays[:, 2] = 1.0  # in front of the camera
    seen = turn.apply(rays)
    # away from the wrap behind the origin camera and from straight up/down
    keep = (seen[:, 2] > 0.05) & (np.abs(seen[:, 1]) < 3 * np.hypot(seen[:, 0], seen[:, 2]))
    rays, seen = rays[keep], seen[keep]
    origin = random_pose(rng)
    pose = origin @ _pose(turn.as_matrix(), rng.normal(0, 2, 3))
    poses = torch.from_numpy(np.stack([origin, pose]))[None]
    got = view_positions(poses, torch.from_numpy(rays), focal, (9, 16))
    assert got.shape == (1, 2, len(rays), 2)
    still = torch.from_numpy(np.eye(4)).expand(1, 1, 4, 4)
    expected = view_positions(still, torch.from_numpy(seen), focal, (9, 16))[0, 0]
    assert torch.allclose(got[0, 1], expected, atol=1e-9)
    world = torch.from_numpy(random_pose(rng))
    assert torch.allclose(view_positions(world @ poses, torch.from_numpy(rays), focal, (9, 16)), got, atol=1e-9)


def test_view_positions_known_answer():
    still = torch.eye(4, dtype=torch.float64).expand(1, 1, 4, 4)
    s = math.sqrt(0.5)
    rays = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, -s, s * math.sqrt(3)], [-1.0, 0.0, 0.0]],
                        dtype=torch.float64)
    got = view_positions(still, rays, 8.0, (9, 16))[0, 0]
    centre_row, centre_col = 4.0, 7.5
    expected = torch.tensor([[centre_row, centre_col],  # straight ahead: the grid's centre
                             [centre_row, centre_col + 8.0 * math.pi / 4],  # 45 deg to the right
                             [centre_row - 8.0 * math.pi / 6, centre_col],  # 30 deg up (y is down)
                             [centre_row, centre_col - 8.0 * math.pi / 2]],  # 90 deg to the left
                            dtype=torch.float64)
    assert torch.allclose(got, expected, atol=1e-9)
    # a camera yawed 45 deg right: its centre ray sits where the origin's 45-deg ray does
    yaw = torch.from_numpy(_pose(Rotation.from_euler("y", 45, degrees=True).as_matrix(), np.zeros(3)))
    poses = torch.stack([torch.eye(4, dtype=torch.float64), yaw])[None]
    assert torch.allclose(view_positions(poses, rays[:1], 8.0, (9, 16))[0, 1, 0], expected[1], atol=1e-9)


def test_the_origin_cameras_layout_is_close_to_the_grid():
    config = tiny_config(spatial_rope="rays")  # 4x4 patches of 4 px, 90 deg: focal 2 patches
    model = VideoDiT(config)
    assert model.focal_patches == pytest.approx(2.0)
    still = model.get_buffer("still_positions")
    rows, cols = config.grid
    grid = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij"), -1).reshape(-1, 2)
    assert (still - grid).abs().max() < 0.45  # angles compress the edges and corners
    # the small model's frames (9x16 patches): the middle columns within half a patch of the grid
    big = VideoDiT(tiny_config(spatial_rope="rays", height=72, width_px=128, patch=8))
    grid = torch.stack(torch.meshgrid(torch.arange(9), torch.arange(16), indexing="ij"), -1).reshape(-1, 2)
    offsets = (big.get_buffer("still_positions") - grid).abs()
    assert offsets.max() < 1.5 and offsets.reshape(9, 16, 2)[:, 5:11].max() < 0.5
    with pytest.raises(ValueError, match="model.spatial_rope"):
        tiny_config(spatial_rope="pixels")


def test_a_ray_model_sees_rotations_in_its_positions_and_is_blind_to_them_when_dropped():
    config = tiny_config(spatial_rope="rays")
    model = randomized_model(config, dtype=torch.float64)
    batch = clip_batch(config, 2, 4, dtype=torch.float64)
    sigma = torch.full((2, 4), 0.5, dtype=torch.float64)
    positions = model.positions(4, 0, batch.poses)
    assert positions.shape == (2, 4 * 16, 3)
    still = model.get_buffer("still_positions")
    assert torch.allclose(positions[:, :16, 1:], still.expand(2, -1, -1), atol=1e-9)  # frame 0 is the origin
    assert not torch.allclose(positions[:, 16:32, 1:], still.expand(2, -1, -1), atol=1e-3)  # a turned camera
    assert torch.equal(positions[0, ::16, 0], torch.arange(4, dtype=torch.float64))
    drop = torch.tensor([False, True])
    dropped = model.positions(4, 0, batch.poses, keep=drop)
    assert torch.allclose(dropped[0, :, 1:], still.repeat(4, 1)) and torch.equal(dropped[1], positions[1])
    other = clip_batch(config, 2, 4, seed=9, dtype=torch.float64)
    none = torch.zeros(2, dtype=torch.bool)
    with torch.no_grad():
        assert torch.allclose(model(batch.frames, sigma, batch.actions, batch.poses, keep=none),
                              model(batch.frames, sigma, other.actions, other.poses, keep=none), atol=1e-12)
        # only the camera's rotation moves the positions: the same rotations, other translations
        moved = batch.poses.clone()
        moved[:, 1:, :3, 3] += 0.7
        assert torch.allclose(model.positions(4, 0, moved), positions, atol=1e-12)
        # and a ray model's output depends on the rotation through them even with the pose embedding shut
        for block in model.blocks:
            block.attn.pose_q.weight.zero_(), block.attn.pose_k.weight.zero_()
            block.attn.pose_q.bias.zero_(), block.attn.pose_k.bias.zero_()
        plain_actions = batch.actions
        turned = batch.poses.clone()
        turned[:, 2:, :3, :3] = batch.poses[:, 1:2, :3, :3]
        assert not torch.allclose(model(batch.frames, sigma, plain_actions, batch.poses),
                                  model(batch.frames, sigma, plain_actions, turned), atol=1e-6)


def test_a_plain_ray_model_starts_a_conditioned_one_unchanged_for_a_camera_that_does_not_turn():
    """With view-direction RoPE a camera's rotation moves the positions themselves, so --init from a
    plain video model is exact at step 0 only where the camera keeps its orientation (then every
    frame takes the origin's layout, as the plain model does)."""
    plain = randomized_model(tiny_config(conditioned=False, spatial_rope="rays"), seed=1)
    tuned = VideoDiT(tiny_config(spatial_rope="rays"))
    assert load_init(tuned, plain.state_dict(), "pretrained.pt")
    batch = clip_batch(tuned.cfg, 2, 4)
    walk = batch.poses.clone()
    walk[:, 1:, :3, :3] = batch.poses[:, :1, :3, :3]  # translations only
    sigma = torch.full((2, 4), 0.6)
    with torch.no_grad():
        reference = plain(batch.frames, sigma, batch.actions, batch.poses)
        assert torch.allclose(plain(batch.frames, sigma, batch.actions, walk), reference)  # no camera input at all
        assert torch.allclose(tuned(batch.frames, sigma, batch.actions, walk), reference, atol=1e-6)
        assert not torch.allclose(tuned(batch.frames, sigma, batch.actions, batch.poses), reference, atol=1e-4)


@pytest.mark.parametrize("window", [None, 1])
def test_cached_ray_blocks_equal_one_block_causal_forward(window):
    """The student's memory rotates each committed frame's keys at its own view positions (pooled
    frames at their cells' mean direction), so cached generation equals the uncached block-causal
    forward; with a window of 1 and pooling the pooled keys sit at the pooled positions."""
    torch.set_default_dtype(torch.float64)
    try:
        config = tiny_config(spatial_rope="rays")
        model = randomized_model(config, dtype=torch.float64)
        batch = clip_batch(config, 2, 7, dtype=torch.float64)
        sigma = torch.rand(2, 7)
        sigma[:, 0] = 0
        memory = MemoryConfig(window=window, pool=(2,))
        student = Student(model, StudentConfig(block_frames=2, memory=memory))
        store = MemoryStore(config.grid, memory, model.rope_angles)
        origin = batch.poses[:, 0]
        full = block_causal_velocity(model, batch.frames, sigma, batch.actions, batch.poses, block_frames=2)
        for start, end in block_spans(7, 2):
            with torch.no_grad():
                v, kvs = model.forward_kv(batch.frames[:, start:end], sigma[:, start:end], batch.actions[:, start:end],
                                          batch.poses[:, start:end], origin, first_frame=start,
                                          context=student.context(store, start, end - start, batch.poses[:, start], origin))
            student._append(store, kvs, start, batch.poses[:, start:end], origin)
            if window is None:
                assert torch.allclose(v, full[:, start:end], atol=1e-10), start
        if window == 1:  # frame 0 pooled 2x2: its first cell's key sits at the mean of 4 view positions
            own = model.positions(1, 0, batch.poses[:, :1], origin)
            cell = own.reshape(2, 4, 4, 3)[:, :2, :2].mean(dim=(1, 2))
            assert torch.allclose(pool_positions(own, config.grid, 2)[:, 0], cell)
            context = view(store, 7)
            assert context is not None and context[0].k.shape[2] == 6 * 4 + 16  # frames 0-5 pooled (4 tokens each), 6 full
    finally:
        torch.set_default_dtype(torch.float32)
