"""Camera transforms inside attention (model.camera "prope"): relative camera geometry, translation
included, in every attention score. Pure tensor functions.

Each frame j has the 4x4 transform M_j from the origin camera's frame into camera j's (the inverse
of its pose relative to the origin, conditioning.relative_poses). Each head has `prope_dims` dims
after its RoPE dims (ModelConfig.attn_dim); those, in blocks of 4, are transformed per token by its
frame's matrix:

    q'_i = M_iᵀ q_i,   k'_j = M_j⁻¹ k_j,   v'_j = M_j⁻¹ v_j,   o_i = M_i · Σ_j a_ij v'_j

so a score q'_iᵀ k'_j = q_iᵀ (M_i M_j⁻¹) k_j and a value's contribution M_i M_j⁻¹ v_j depend on the
two cameras only through camera j seen from camera i — not on which camera is the origin, nor on
the world frame (GTA, Miyato et al. 2024; PRoPE, Li et al. 2025, which adds the intrinsics: one
pinhole here, so the rigid transform carries all that varies). RoPE keeps every dim it has
without them (VideoDiT.rope_angles gives the camera dims zero angles): the camera dims are added,
not taken from RoPE — taken, they cost a tiny CPU model 3 dB whether or not the transform was
applied (docs/training.md). Where a sample's condition is dropped
(classifier-free guidance) its matrices are the identity: a camera-blind attention.

Keys and values leave a layer already transformed by their own frame's M_j⁻¹ (LayerKV), so the
student's memory stores them as they are and a later query needs only its own M_i: the cache
stays valid as long as the origin does (a rollout's first frame). Pooling a frame's tokens
commutes with its transform (one matrix per frame).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from training.conditioning import relative_poses, rigid_inverse


class CameraTransforms(NamedTuple):
    """Per-frame 4x4 matrices (B, F, 4, 4) for one forward."""

    query: torch.Tensor  # M_iᵀ
    key: torch.Tensor  # M_j⁻¹ (keys and values)
    out: torch.Tensor  # M_i


def camera_transforms(poses: torch.Tensor, origin: torch.Tensor | None, keep: torch.Tensor | None,
                      dtype: torch.dtype) -> CameraTransforms:
    """Camera-to-world poses (B, F, 4, 4) -> the attention's per-frame matrices, relative to `origin`
    (default: poses[:, 0]); samples where `keep` (B,) is False get identities."""
    to_origin = relative_poses(poses, poses[:, 0] if origin is None else origin)  # camera j -> origin, float64
    if keep is not None:
        eye = torch.eye(4, dtype=to_origin.dtype, device=to_origin.device)
        to_origin = torch.where(keep.to(torch.bool)[:, None, None, None], to_origin, eye)
    into = rigid_inverse(to_origin)  # M: origin -> camera j
    return CameraTransforms(into.transpose(-1, -2).to(dtype), to_origin.to(dtype), into.to(dtype))


def transform(x: torch.Tensor, matrices: torch.Tensor, dims: int) -> torch.Tensor:
    """x (B, heads, F·N, head_dim) with its last `dims` dims of each token multiplied, in blocks of
    4, by its frame's matrix (B, F, 4, 4) (N tokens per frame, frame-major); the rest unchanged."""
    b, h, length, d = x.shape
    f = matrices.shape[1]
    if length % f or dims % 4 or dims > d:
        raise ValueError(f"camera transform: {length} tokens over {f} frames, {dims} of {d} dims in blocks of 4")
    dtype = torch.promote_types(x.dtype, torch.float32)  # >= fp32 even under bf16 autocast, as RoPE is
    blocks = x[..., d - dims:].to(dtype).reshape(b, h, f, length // f, dims // 4, 1, 4)
    m = matrices.to(dtype)[:, None, :, None, None]  # (B, 1, F, 1, 1, 4, 4)
    moved = (m * blocks).sum(dim=-1)  # elementwise, not a matmul: autocast leaves it in fp32
    return torch.cat([x[..., :d - dims], moved.reshape(b, h, length, dims).to(x.dtype)], dim=-1)
