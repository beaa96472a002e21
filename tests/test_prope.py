"""Camera transforms in attention (model.camera "prope"): the algebra, the model's invariances, and
that a prope model sees translation that the view-direction RoPE cannot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.training_helpers import clip_batch, random_pose, randomized_model, tiny_config
from training.conditioning import relative_poses
from training.prope import camera_transforms, transform


def _poses(rng: np.random.Generator, batch: int, frames: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([[random_pose(rng) for _ in range(frames)] for _ in range(batch)]))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), dims=st.sampled_from([4, 8, 12]))
def test_scores_and_values_see_only_the_relative_camera(seed, dims):
    """q'_i·k'_j = q_i·(M_i M_j⁻¹) k_j and o_i = M_i M_j⁻¹ v_j on the transformed dims, with M_i M_j⁻¹
    camera j seen from camera i whatever the origin; the other dims pass unchanged."""
    rng = np.random.default_rng(seed)
    poses, origin = _poses(rng, 1, 2), torch.from_numpy(random_pose(rng))[None]
    cams = camera_transforms(poses, origin, None, torch.float64)
    head = 16
    q, k, v = (torch.from_numpy(rng.normal(size=(1, 1, 2, head))) for _ in range(3))  # one token per frame
    qt, kt, vt = transform(q, cams.query, dims), transform(k, cams.key, dims), transform(v, cams.key, dims)
    assert torch.equal(qt[..., :head - dims], q[..., :head - dims]) and torch.equal(kt[..., :head - dims], k[..., :head - dims])
    j_in_i = (torch.linalg.inv(poses[0, 0]) @ poses[0, 1])  # camera 1 -> camera 0, from the world poses
    expected = sum(q[0, 0, 0, b:b + 4] @ j_in_i @ k[0, 0, 1, b:b + 4] for b in range(head - dims, head, 4))
    got = qt[0, 0, 0, head - dims:] @ kt[0, 0, 1, head - dims:]
    assert torch.allclose(got, expected, atol=1e-9)
    out = transform(vt[:, :, 1:].expand(1, 1, 2, head).contiguous(), cams.out, dims)[0, 0, 0, head - dims:]
    value = torch.cat([j_in_i @ v[0, 0, 1, b:b + 4] for b in range(head - dims, head, 4)])
    assert torch.allclose(out, value, atol=1e-9)


def test_dropped_samples_get_identities_and_bad_shapes_are_named():
    rng = np.random.default_rng(0)
    poses = _poses(rng, 2, 3)
    cams = camera_transforms(poses, None, torch.tensor([True, False]), torch.float32)
    eye = torch.eye(4).expand(3, 4, 4)
    assert all(torch.equal(m[1], eye) for m in cams) and not torch.allclose(cams.key[0, 1:], eye[1:])
    assert torch.allclose(cams.key[0, 0], torch.eye(4), atol=1e-6)  # the origin camera is the identity
    assert torch.allclose(cams.key[0].double(), relative_poses(poses, poses[:, 0])[0], atol=1e-5)  # kept: M⁻¹
    with pytest.raises(ValueError, match="7 tokens over 3 frames"):
        transform(torch.zeros(2, 1, 7, 16), cams.key, 8)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_a_prope_model_does_not_depend_on_which_camera_is_the_origin(seed):
    """Attention sees only relative transforms, so any origin (a rollout's first frame, or another
    camera) and any rigid motion of the whole trajectory give the same output. A pose embedding,
    fed the poses relative to the origin, does depend on it: the test can tell."""
    rng = np.random.default_rng(seed)
    sigma = torch.full((2, 4), 0.5, dtype=torch.float64)
    outs = {}
    for camera in ("prope", "pose"):
        config = tiny_config(camera=camera, prope_dims=8)
        model = randomized_model(config, dtype=torch.float64, seed=seed % 1000)
        batch = clip_batch(config, 2, 4, seed=seed % 1000, dtype=torch.float64)
        world = torch.from_numpy(random_pose(rng))
        other = torch.from_numpy(random_pose(rng)).expand(2, 4, 4)
        with torch.no_grad():
            outs[camera] = [model(batch.frames, sigma, batch.actions, batch.poses),
                            model(batch.frames, sigma, batch.actions, batch.poses, origin=other),
                            model(batch.frames, sigma, batch.actions, world @ batch.poses, origin=world @ other)]
    base, other_origin, moved = outs["prope"]
    assert torch.allclose(other_origin, base, atol=1e-10) and torch.allclose(moved, base, atol=1e-10)
    assert not torch.allclose(outs["pose"][1], outs["pose"][0], atol=1e-6)


def test_prope_sees_a_translation_that_view_rope_alone_cannot():
    """Cameras that only move (no turn): a view-direction RoPE model without a pose embedding gives
    the same output for any translation; adding "prope" makes the output depend on it."""
    outs = {}
    for camera in ("pose", "pose+prope"):
        config = tiny_config(camera=camera, prope_dims=8, spatial_rope="rays")
        model = randomized_model(config, dtype=torch.float64)
        for block in model.blocks:  # shut the pose embedding: only the rays (and prope) see the camera
            for layer in (block.attn.pose_q, block.attn.pose_k):
                torch.nn.init.zeros_(layer.weight), torch.nn.init.zeros_(layer.bias)
        batch = clip_batch(config, 2, 4, dtype=torch.float64)
        walk = batch.poses.clone()
        walk[:, 1:, :3, :3] = batch.poses[:, :1, :3, :3]
        farther = walk.clone()
        farther[:, 1:, :3, 3] += torch.tensor([0.3, 0.0, 0.5], dtype=torch.float64)
        sigma = torch.full((2, 4), 0.5, dtype=torch.float64)
        with torch.no_grad():
            outs[camera] = (model(batch.frames, sigma, batch.actions, walk),
                            model(batch.frames, sigma, batch.actions, farther))
    assert torch.allclose(*outs["pose"], atol=1e-12)
    assert not torch.allclose(*outs["pose+prope"], atol=1e-6)


def test_the_camera_dims_are_added_to_each_head_and_rope_keeps_all_of_its_own():
    """RoPE's frequencies are those of a model without "prope" (taking the camera's dims from RoPE
    cost a tiny model 3 dB on the CPU, transform or not); the camera dims come after them, unrotated."""
    config = tiny_config(camera="pose+prope", prope_dims=8)
    assert config.prope and config.head_dim == 24 and config.attn_dim == 32
    model = randomized_model(config)
    plain = randomized_model(tiny_config(camera="pose"))
    positions = torch.rand(5, 3) * 4
    angles = model.rope_angles(positions)
    assert angles.shape == (5, 16) and torch.equal(angles[:, 12:], torch.zeros(5, 4))
    assert torch.equal(angles[:, :12], plain.rope_angles(positions))
    assert model.blocks[0].attn.qkv.out_features == 3 * config.heads * 32 and model.blocks[0].attn.out.in_features == 64
    batch = clip_batch(config, 1, 3)
    with torch.no_grad():
        _, kvs = model.forward_kv(batch.frames, torch.full((1, 3), 0.5), batch.actions, batch.poses)
    assert kvs[0].k.shape == (1, config.heads, 3 * config.tokens_per_frame, 32)  # what the memory caches
    assert not tiny_config(camera="pose+prope", prope_dims=8, conditioned=False).prope  # no camera at all
    assert tiny_config(camera="prope").attn_dim == 40  # the default 16 fits any head
    with pytest.raises(ValueError, match="prope_dims"):
        tiny_config(camera="prope", prope_dims=6)
    with pytest.raises(ValueError, match="distinct parts"):
        tiny_config(camera="pose+gta")
    with pytest.raises(ValueError, match="distinct parts"):
        tiny_config(camera="pose+pose")


def test_the_transform_stays_in_fp32_under_bf16_autocast():
    """Like RoPE, the camera transform is computed in fp32 even under bf16 autocast (a 4x4 matmul would
    be cast to bf16 there, with errors of ~1e-2 on metre-scale translations)."""
    rng = np.random.default_rng(3)
    cams = camera_transforms(_poses(rng, 2, 3), None, None, torch.float32)
    x = torch.randn(2, 2, 3 * 5, 24, generator=torch.Generator().manual_seed(0))
    reference = transform(x.double(), cams.key.double(), 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = transform(x, cams.key, 8)
    assert got.dtype == torch.float32 and torch.allclose(got.double(), reference, atol=1e-5)
