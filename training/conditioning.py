"""What the model is conditioned on, per frame. Pure tensor functions.

* Actions: frame t receives the action of the transition into it, A_{t-1}; frame 0 (the clean
  conditioning frame) receives the static action. (B, T-1, 13) -> (B, T, 13).
* Poses: each frame's camera-to-world pose relative to an origin camera (the first frame of the
  clip or rollout): rel_t = origin^-1 · pose_t, as translation (3) plus the first two columns of
  the rotation (6, the continuous 6-d rotation representation). Moving the whole trajectory by a
  rigid transform leaves these features unchanged.
* Rays: per patch token, the Plücker coordinates (d, o × d) of the ray through the patch centre,
  in the origin camera's frame (o the camera centre, d the unit direction): six numbers that say
  where each token looks from, the same for a cached key as for a new query (CameraCtrl, Cameras
  as Rays).
* View positions (`model.spatial_rope` rays): per patch token, the azimuth and elevation of its
  centre ray in the origin camera's frame, in patch units, as the token's (row, col) RoPE position
  instead of its place on the patch grid. Two tokens that look in the same world direction then
  share a spatial position whatever each camera's rotation, so attention's relative positions are
  relative view directions: under a pure camera rotation a token's match in another frame sits at
  relative position 0 (the origin camera's tokens stay near their grid places).
"""

from __future__ import annotations

import torch

from annotate.actions import N_CHANNELS, STATIC
from annotate.ue import fov_to_intrinsics


def static_action(batch: int, device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(batch, 13) the static action: every motion channel 0, `static` 1."""
    action = torch.zeros(batch, N_CHANNELS, device=device, dtype=dtype)
    action[:, STATIC] = 1.0
    return action


def frame_actions(actions: torch.Tensor) -> torch.Tensor:
    """Per-transition actions (B, T-1, 13) -> per-frame actions (B, T, 13): frame t gets A_{t-1}."""
    if actions.shape[-1] != N_CHANNELS:
        raise ValueError(f"actions must have {N_CHANNELS} channels, got shape {tuple(actions.shape)}")
    first = static_action(actions.shape[0], actions.device, actions.dtype)[:, None]
    return torch.cat([first, actions], dim=1)


def static_first(actions: torch.Tensor) -> torch.Tensor:
    """Per-frame actions (B, F, 13) with frame 0's replaced by the static action (a copy): a rollout's
    given first frame is conditioned like the teacher's clean frame 0."""
    out = actions.clone()
    out[:, 0] = static_action(actions.shape[0], actions.device, actions.dtype)
    return out


def rigid_inverse(pose: torch.Tensor) -> torch.Tensor:
    """The inverse of rigid transforms (..., 4, 4) [[R, t], [0, 1]]: [[Rᵀ, −Rᵀt], [0, 1]], in their dtype."""
    rot_t = pose[..., :3, :3].transpose(-1, -2)
    inverse = torch.zeros_like(pose)
    inverse[..., :3, :3] = rot_t
    inverse[..., :3, 3:] = -(rot_t @ pose[..., :3, 3:])
    inverse[..., 3, 3] = 1.0
    return inverse


def relative_poses(poses: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """poses (B, T, 4, 4) and origin (B, 4, 4), camera-to-world -> origin^-1 · pose (B, T, 4, 4), float64."""
    poses, origin = poses.to(torch.float64), origin.to(torch.float64)
    return rigid_inverse(origin)[:, None] @ poses


def patch_rays(fov_deg: float, height: int, width: int, patch: int) -> torch.Tensor:
    """(N, 3) camera-frame directions (z = 1) through the patch centres, row-major like the tokens,
    with the project's pinhole (annotate.ue.fov_to_intrinsics; pixel u's centre at u + 0.5)."""
    k = torch.from_numpy(fov_to_intrinsics(fov_deg, width, height))
    v, u = torch.meshgrid(torch.arange(patch / 2, height, patch, dtype=torch.float64),
                          torch.arange(patch / 2, width, patch, dtype=torch.float64), indexing="ij")
    pixels = torch.stack([u.reshape(-1), v.reshape(-1), torch.ones(u.numel(), dtype=torch.float64)], dim=-1)
    return pixels @ torch.linalg.inv(k).T


def plucker(poses: torch.Tensor, rays: torch.Tensor, origin: torch.Tensor | None = None) -> torch.Tensor:
    """Absolute poses (B, T, 4, 4) and camera rays (N, 3) -> (B, T, N, 6) Plücker coordinates (d, o × d)
    relative to `origin` (default: frame 0), float32."""
    rel = relative_poses(poses, poses[:, 0] if origin is None else origin)
    d = torch.einsum("btij,nj->btni", rel[..., :3, :3], rays.to(rel))
    d = d / d.norm(dim=-1, keepdim=True)
    o = rel[..., None, :3, 3].expand_as(d)
    return torch.cat([d, torch.cross(o, d, dim=-1)], dim=-1).to(torch.float32)


def pose_features(poses: torch.Tensor, origin: torch.Tensor | None = None) -> torch.Tensor:
    """Absolute poses (B, T, 4, 4) -> (B, T, 9) features relative to `origin` (default: frame 0), float32."""
    rel = relative_poses(poses, poses[:, 0] if origin is None else origin)
    rot = rel[..., :3, :3]
    return torch.cat([rel[..., :3, 3], rot[..., :, 0], rot[..., :, 1]], dim=-1).to(torch.float32)


def view_positions(poses: torch.Tensor, rays: torch.Tensor, focal_patches: float, grid: tuple[int, int],
                   origin: torch.Tensor | None = None) -> torch.Tensor:
    """Absolute poses (B, T, 4, 4) and camera rays (N, 3) -> (B, T, N, 2) (row, col) positions: the
    elevation and azimuth of each ray in the `origin` camera's frame (default: frame 0), in radians
    times `focal_patches` (the focal length in patches, so one patch near the image centre is one
    unit), offset to the grid's centre. OpenCV axes: azimuth atan2(x, z) grows to the right,
    elevation atan2(y, hypot(x, z)) grows downwards, like rows. Float64.

    The azimuth wraps at ±180° behind the origin camera (a rollout that turns round sees a seam
    there), and elevation is degenerate straight up or down."""
    rel = relative_poses(poses, poses[:, 0] if origin is None else origin)
    d = torch.einsum("btij,nj->btni", rel[..., :3, :3], rays.to(rel))
    azimuth = torch.atan2(d[..., 0], d[..., 2])
    elevation = torch.atan2(d[..., 1], torch.hypot(d[..., 0], d[..., 2]))
    rows, cols = grid
    return torch.stack([(rows - 1) / 2 + focal_patches * elevation, (cols - 1) / 2 + focal_patches * azimuth], dim=-1)
