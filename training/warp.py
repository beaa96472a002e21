"""A frame moved to other cameras by its depth: forward warping (splatting) with a depth test. Pure
tensor functions.

Each pixel of the source frame is unprojected along its ray (through the pixel centre, the project's
pinhole: conventions.md §1) to its planar depth, carried into each target camera by a rigid transform,
and projected there; it lands on the target pixel whose square holds its projection. Where several
land on one pixel the nearest surface wins (a z-buffer); where none lands — surfaces the source never
saw (disocclusions, what was outside its view) or the gaps between a magnified surface's pixels — the
target is marked invalid. What fills those is the caller's choice (training.eval.evaluate's
`warp_first` baseline inpaints them).

This is what the first frame alone says about a later one by geometry, with nothing learned: the
reference against which a model's parallax (how it renders a translation) can be read.
"""

from __future__ import annotations

import torch

from annotate.ue import fov_to_intrinsics
from training.conditioning import patch_rays, relative_poses, rigid_inverse

#: targets nearer than this (metres) in front of a camera are not drawn (behind it, or at its centre)
NEAR_M = 0.05


def source_to_targets(poses: torch.Tensor) -> torch.Tensor:
    """Camera-to-world poses (B, T, 4, 4) -> (B, T, 4, 4) maps from frame 0's camera coordinates to each
    frame's: pose_t⁻¹ · pose_0 (float64)."""
    return rigid_inverse(relative_poses(poses, poses[:, 0]))


def forward_warp(image: torch.Tensor, depth: torch.Tensor, fov_deg: float, transforms: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Splat `image` (B, C, H, W) with its planar `depth` (B, H, W, metres; +inf: at infinity, the sky, which
    only the rotation moves and any surface hides; NaN or <= 0: nothing there) into the cameras `transforms`
    (B, T, 4, 4) map its camera coordinates to (`source_to_targets`). Returns
    the warped images (B, T, C, H, W) in the image's dtype, zero where nothing landed, and where something
    did (B, T, H, W) bool. The identity transform returns the image itself wherever its depth is valid."""
    b, c, h, w = image.shape
    if depth.shape != (b, h, w):
        raise ValueError(f"depth must be {(b, h, w)} for an image of {tuple(image.shape)}, got {tuple(depth.shape)}")
    if transforms.shape[0] != b or transforms.shape[-2:] != (4, 4):
        raise ValueError(f"transforms must be ({b}, T, 4, 4), got {tuple(transforms.shape)}")
    t = transforms.shape[1]
    device = image.device
    rays = patch_rays(fov_deg, h, w, 1).to(device)  # (H*W, 3), z = 1: planar depth scales them
    z = depth.reshape(b, h * w).to(torch.float64)
    far = torch.isinf(z) & (z > 0)  # at infinity (the sky): moved by the rotation alone
    surface = (torch.isfinite(z) & (z > 0)) | far
    points = rays[None] * torch.where(surface & ~far, z, 1.0)[..., None]  # (B, N, 3) in the source camera
    rotation = transforms[..., :3, :3].to(points)
    moved = torch.einsum("btij,bnj->btni", rotation, points) \
        + torch.where(far[:, None, :, None], 0.0, transforms[..., None, :3, 3].to(points))  # (B, T, N, 3)
    k = torch.from_numpy(fov_to_intrinsics(fov_deg, w, h)).to(points)
    depth_t = moved[..., 2]
    front = surface[:, None] & (depth_t > torch.where(far, 1e-6, NEAR_M)[:, None])
    safe = torch.where(front, depth_t, 1.0)
    u = torch.floor(k[0, 0] * moved[..., 0] / safe + k[0, 2])
    v = torch.floor(k[1, 1] * moved[..., 1] / safe + k[1, 2])
    lands = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    frame = torch.arange(b * t, device=device).reshape(b, t, 1)
    target = (frame * (h * w) + v.clamp(0, h - 1).long() * w + u.clamp(0, w - 1).long())[lands]
    dist = torch.where(far[:, None], torch.inf, depth_t)[lands]  # any surface is nearer than the sky
    nearest = torch.full((b * t * h * w,), torch.inf, dtype=dist.dtype, device=device)
    nearest.scatter_reduce_(0, target, dist, reduce="amin")
    wins = dist <= nearest[target]  # ties (equal depth) keep one of them
    colour = image.permute(0, 2, 3, 1).reshape(b, 1, h * w, c).expand(b, t, h * w, c)[lands][wins]
    out = torch.zeros(b * t * h * w, c, dtype=image.dtype, device=device)
    out[target[wins]] = colour
    valid = torch.zeros(b * t * h * w, dtype=torch.bool, device=device)
    valid[target[wins]] = True
    return out.reshape(b, t, h, w, c).permute(0, 1, 4, 2, 3), valid.reshape(b, t, h, w)

