"""The video diffusion transformer shared by the teacher (bidirectional) and the student (block-causal).

Tokens are pixel patches: a frame (3, H, W) in [-1, 1] becomes (H/p)·(W/p) tokens of p·p·3 values,
embedded linearly. (Why pixels rather than a trained autoencoder: nothing to train before the
teacher, no reconstruction error floor under PSNR, and the student sees exactly the same token
space. The price is more tokens per frame than a 16x-compressing latent space; at 128x72 with
p = 8 that is 144 tokens a frame, cheap for a model of this size.)

Per block (DiT with adaLN-Zero):
    mod   = Linear(SiLU(timestep_embedding(sigma_frame)))        per frame: shift/scale/gate x 2
    x    += gate1 · Attn(modulate(LN(x)), pose)                   q, k += per-layer pose projections
    x    += action_out(action_embedding)                          per frame, after self-attention (RELIC)
    x    += gate2 · MLP(modulate(LN(x)))
With model.camera "plucker" (or "pose+plucker") every token also gets, before the first block, an
embedding of its ray's Plücker coordinates relative to the origin camera (conditioning.plucker);
its last layer starts at zero, so such a model starts out exactly as one without rays.
Attention is `scaled_dot_product_attention` with 3D RoPE over (frame, row, col) and RMS-normed q/k;
with model.spatial_rope "rays" a token's (row, col) is the direction of its centre ray in the origin
camera (conditioning.view_positions) instead of its grid place: per sample, from the poses; a
sample whose conditioning is dropped (and a plain video model) takes the origin camera's layout;
the pose embedding is added to q and k (not v) after the norm and before RoPE, so a cached key
carries its frame's viewpoint. With model.camera "prope" each head has `prope_dims` more dims of q,
k and v (cfg.attn_dim), transformed by the frame's camera (training/prope.py), so every score and
value sees the relative camera transform between its two frames, translation included; RoPE keeps
all head_dim dims it has without them, and keys and values are cached transformed. Sigma is per frame: the clean first frame of image-to-video has
sigma 0 and the student's blocks each carry their own noise level.

Shapes: x (B, F, 3, H, W); sigma (B, F); actions (B, F, 13) per frame (see conditioning.py);
poses (B, F, 4, 4) camera-to-world. The output is the flow velocity, shaped like x.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from annotate.ue import fov_to_intrinsics
from training.conditioning import patch_rays, plucker, pose_features, view_positions
from training.config import ModelConfig
from training.prope import CameraTransforms, camera_transforms, transform
from training.rope import Rotation, apply_rope, grid_positions, rope_angles, rotation


class LayerContext(NamedTuple):
    """Extra keys/values a layer attends to before its own tokens (the student's memory view)."""

    k: torch.Tensor  # (B, heads, Lc + reserved, head_dim) keys (pose embedding and camera transform included), RoPE applied at their positions
    v: torch.Tensor  # (B, heads, Lc + reserved, head_dim) values (camera transform included)
    valid: torch.Tensor | None = None  # (Lc,) bool: False marks padding (a fixed-capacity view); None = all
    # room after the Lc context tokens for the layer's own tokens: a forward without grad whose
    # tokens fit writes its keys/values there (in place) instead of concatenating [context | own]
    reserved: int = 0


class LayerKV(NamedTuple):
    k: torch.Tensor  # (B, heads, L, head_dim) pre-RoPE keys of this call's tokens (with camera "prope": transformed, prope.py)
    v: torch.Tensor  # values, likewise transformed


def timestep_embedding(sigma: torch.Tensor, dim: int = 256) -> torch.Tensor:
    """sigma (...) in [0, 1] -> sinusoidal features (..., dim) of 1000·sigma."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=sigma.device, dtype=torch.float32) / half)
    angles = sigma.float()[..., None] * 1000.0 * freqs
    return torch.cat([angles.cos(), angles.sin()], dim=-1)


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, F, C, H, W) -> (B, F, N, p·p·C), tokens row-major."""
    b, f, c, h, w = x.shape
    x = x.reshape(b, f, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 1, 3, 5, 4, 6, 2).reshape(b, f, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(tokens: torch.Tensor, patch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """(B, F, N, p·p·C) -> (B, F, C, H, W)."""
    b, f = tokens.shape[:2]
    rows, cols = height // patch, width // patch
    x = tokens.reshape(b, f, rows, cols, patch, patch, channels)
    return x.permute(0, 1, 6, 2, 4, 3, 5).reshape(b, f, channels, height, width)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, F, N, D), shift/scale (B, F, D)."""
    return x * (1 + scale[:, :, None]) + shift[:, :, None]


def _zero(linear: nn.Linear) -> nn.Linear:
    nn.init.zeros_(linear.weight)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)
    return linear


def _rms(norm: nn.RMSNorm, x: torch.Tensor) -> torch.Tensor:
    """RMSNorm with its weight cast to x's dtype: under bf16 autocast a float32 weight sends
    torch.rms_norm down its unfused path."""
    weight = None if norm.weight is None else norm.weight.to(x.dtype)
    return F.rms_norm(x, norm.normalized_shape, weight, norm.eps)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.attn_dim  # the head's q, k, v: RoPE dims (+ camera dims)
        self.prope_dims = cfg.prope_dims if cfg.prope else 0
        inner = cfg.heads * cfg.attn_dim
        self.qkv = nn.Linear(cfg.width, 3 * inner)
        self.out = nn.Linear(inner, cfg.width)
        self.q_norm = nn.RMSNorm(cfg.attn_dim, eps=1e-6)
        self.k_norm = nn.RMSNorm(cfg.attn_dim, eps=1e-6)
        self.pose_q: nn.Linear | None = _zero(nn.Linear(cfg.width, inner)) if cfg.conditioned else None
        self.pose_k: nn.Linear | None = _zero(nn.Linear(cfg.width, inner)) if cfg.conditioned else None

    def project(self, x: torch.Tensor, pose: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, F, N, D), pose (B, F, D) or None (a plain video model) -> q, k, v (B, heads, F·N,
        head_dim), pre-RoPE."""
        b, f, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, f, n, 3, self.heads, self.head_dim).permute(3, 0, 4, 1, 2, 5)
        q, k = _rms(self.q_norm, q), _rms(self.k_norm, k)
        if pose is not None and self.pose_q is not None and self.pose_k is not None:
            q = q + self.pose_q(pose).reshape(b, f, self.heads, self.head_dim).permute(0, 2, 1, 3)[:, :, :, None]
            k = k + self.pose_k(pose).reshape(b, f, self.heads, self.head_dim).permute(0, 2, 1, 3)[:, :, :, None]
        return (q.reshape(b, self.heads, f * n, self.head_dim), k.reshape(b, self.heads, f * n, self.head_dim),
                v.reshape(b, self.heads, f * n, self.head_dim))

    def forward(self, x: torch.Tensor, pose: torch.Tensor | None, rot: Rotation, mask: torch.Tensor | None,
                context: LayerContext | None, cameras: CameraTransforms | None = None) -> tuple[torch.Tensor, LayerKV]:
        b, f, n, _ = x.shape
        q, k, v = self.project(x, pose)
        if cameras is not None:  # prope.py: its dims carry no RoPE (zero angles), so the two commute
            q = transform(q, cameras.query, self.prope_dims)
            k, v = transform(k, cameras.key, self.prope_dims), transform(v, cameras.key, self.prope_dims)
        q_rot, k_rot, v_all = apply_rope(q, rot), apply_rope(k, rot), v
        if context is not None:
            own, room = k_rot.shape[2], context.reserved
            if room == own and not torch.is_grad_enabled():  # the view's reserved room: copy own tokens only
                context.k[:, :, -room:] = k_rot
                context.v[:, :, -room:] = v
                k_rot, v_all = context.k, context.v
            else:
                lc = context.k.shape[2] - room
                k_rot = torch.cat([context.k[:, :, :lc], k_rot], dim=2)
                v_all = torch.cat([context.v[:, :, :lc], v], dim=2)
        out = F.scaled_dot_product_attention(q_rot, k_rot, v_all, attn_mask=mask)
        if cameras is not None:
            out = transform(out, cameras.out, self.prope_dims)
        out = out.permute(0, 2, 1, 3).reshape(b, f, n, self.heads * self.head_dim)
        return self.out(out), LayerKV(k, v)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.width
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(cfg)
        hidden = int(d * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        self.ada = _zero(nn.Linear(d, 6 * d))
        self.action_out: nn.Linear | None = _zero(nn.Linear(d, d)) if cfg.conditioned else None

    def forward(self, x: torch.Tensor, c: torch.Tensor, action: torch.Tensor | None, pose: torch.Tensor | None,
                rot: Rotation, mask: torch.Tensor | None, context: LayerContext | None,
                cameras: CameraTransforms | None = None) -> tuple[torch.Tensor, LayerKV]:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(F.silu(c)).chunk(6, dim=-1)
        attn, kv = self.attn(modulate(self.norm1(x), shift1, scale1), pose, rot, mask, context, cameras)
        x = x + gate1[:, :, None] * attn
        if action is not None and self.action_out is not None:
            x = x + self.action_out(action)[:, :, None]
        x = x + gate2[:, :, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x, kv


class VideoDiT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        self.patch_in = nn.Linear(cfg.patch_dim, d)
        self.time_embed = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        if cfg.conditioned:
            self.action_embed = nn.Sequential(nn.Linear(cfg.action_dim, d), nn.SiLU(), nn.Linear(d, d))
            self.pose_embed = nn.Sequential(nn.Linear(cfg.pose_dim, d), nn.SiLU(), nn.Linear(d, d))
            self.null_action = nn.Parameter(torch.zeros(d))  # the dropped-condition embeddings (CFG)
            self.null_pose = nn.Parameter(torch.zeros(d))
        cameras = cfg.camera.split("+") if cfg.conditioned else []
        self.uses_pose = "pose" in cameras
        self.ray_embed: nn.Sequential | None = None
        if "plucker" in cameras:
            self.ray_embed = nn.Sequential(nn.Linear(6, d), nn.SiLU(), _zero(nn.Linear(d, d)))
        if "plucker" in cameras or cfg.spatial_rope == "rays":
            self.register_buffer("rays", patch_rays(cfg.fov, cfg.height, cfg.width_px, cfg.patch).float(),
                                 persistent=False)
        if cfg.spatial_rope == "rays":  # the origin camera's own layout: a still camera, or no camera known
            self.focal_patches = float(fov_to_intrinsics(cfg.fov, cfg.width_px, cfg.height)[0, 0]) / cfg.patch
            still = torch.eye(4, dtype=torch.float64).expand(1, 1, 4, 4)
            self.register_buffer("still_positions", view_positions(still, self.get_buffer("rays"), self.focal_patches,
                                                                   cfg.grid)[0, 0], persistent=False)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.depth)])
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.final_ada = _zero(nn.Linear(d, 2 * d))
        self.patch_out = _zero(nn.Linear(d, cfg.patch_dim))
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear) and module.weight.abs().sum() > 0:  # keep the zero inits
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for layer in (self.time_embed[0], self.time_embed[2]):
            assert isinstance(layer, nn.Linear)
            nn.init.normal_(layer.weight, std=0.02)

    # -- conditioning ----------------------------------------------------------------------------
    def condition(self, actions: torch.Tensor, poses: torch.Tensor, origin: torch.Tensor | None,
                  keep: torch.Tensor | None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(action, pose) embeddings (B, F, D); where keep is False both become the null embeddings.
        A plain video model (`conditioned` False) has neither: (None, None)."""
        if not self.cfg.conditioned:
            return None, None
        dtype = self.patch_in.weight.dtype
        action = self.action_embed(actions.to(dtype))
        if self.uses_pose:
            pose = self.pose_embed(pose_features(poses, origin).to(dtype))
        else:  # the attention's pose projections see the null embedding: the rays carry the camera
            pose = self.null_pose.to(dtype).expand(*actions.shape[:2], -1)
        if keep is not None:
            k = keep.to(torch.bool)[:, None, None]
            action = torch.where(k, action, self.null_action.to(action.dtype))
            pose = torch.where(k, pose, self.null_pose.to(pose.dtype))
        return action, pose

    def ray_tokens(self, poses: torch.Tensor, origin: torch.Tensor | None, keep: torch.Tensor | None
                   ) -> torch.Tensor | None:
        """(B, F, N, D) per-token ray embeddings (zero where keep is False), or None without rays."""
        if self.ray_embed is None:
            return None
        directions = self.get_buffer("rays")
        rays = self.ray_embed(plucker(poses, directions, origin).to(self.patch_in.weight.dtype))
        if keep is not None:
            rays = rays * keep.to(rays.dtype)[:, None, None, None]
        return rays

    def positions(self, frames: int, first_frame: int | float | torch.Tensor, poses: torch.Tensor,
                  origin: torch.Tensor | None = None, keep: torch.Tensor | None = None,
                  times: torch.Tensor | None = None) -> torch.Tensor:
        """RoPE positions (t, row, col) of `frames` frames' tokens from time index `first_frame`, or
        at the per-frame time indices `times` (F,) (frames that are not consecutive: a clip with
        memory context): (F·N, 3) on the patch grid, or with spatial_rope "rays" (B, F·N, 3) at each
        token's view direction relative to `origin` (default: poses[:, 0]); samples where `keep` is
        False, and every sample of a plain video model, take the origin camera's layout."""
        rows, cols = self.cfg.grid
        device = poses.device
        positions = grid_positions(frames, rows, cols, device=device)
        if times is not None:
            if times.shape != (frames,):
                raise ValueError(f"times must give one time index per frame ({frames},), got {tuple(times.shape)}")
            positions[:, 0] = times.to(device, torch.float64).repeat_interleave(rows * cols)
        else:
            positions[:, 0] += first_frame.to(device) if isinstance(first_frame, torch.Tensor) else first_frame
        if self.cfg.spatial_rope == "grid":
            return positions
        still = self.get_buffer("still_positions")
        if not self.cfg.conditioned:
            return torch.cat([positions[:, :1], still.repeat(frames, 1)], dim=1)
        spatial = view_positions(poses, self.get_buffer("rays"), self.focal_patches, self.cfg.grid, origin)
        if keep is not None:
            spatial = torch.where(keep.to(torch.bool)[:, None, None, None], spatial, still)
        spatial = spatial.reshape(poses.shape[0], frames * rows * cols, 2)
        return torch.cat([positions[None, :, :1].expand(poses.shape[0], -1, -1), spatial], dim=-1)

    def rope_angles(self, positions: torch.Tensor) -> torch.Tensor:
        """RoPE angles (..., L, attn_dim/2) of positions (..., L, 3) over the first head_dim dims; with
        camera "prope" the camera's dims after them get angle 0, which leaves them as they are."""
        cfg = self.cfg
        angles = rope_angles(positions, cfg.head_dim, cfg.rope_theta, cfg.rope_time_scale, cfg.rope_time_ntk)
        if cfg.attn_dim == cfg.head_dim:
            return angles
        return torch.cat([angles, angles.new_zeros(*angles.shape[:-1], (cfg.attn_dim - cfg.head_dim) // 2)], dim=-1)

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, sigma: torch.Tensor, actions: torch.Tensor, poses: torch.Tensor,
                origin: torch.Tensor | None = None, keep: torch.Tensor | None = None, *,
                first_frame: int | float | torch.Tensor = 0, mask: torch.Tensor | None = None,
                context: list[LayerContext] | None = None, times: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity (B, F, C, H, W). `first_frame` is the RoPE time index of x's first frame (or `times`
        (F,) each frame's); `mask` (Lq, Lc + Lq) boolean (True = attend) over [context | own tokens];
        `context` per layer."""
        return self.forward_kv(x, sigma, actions, poses, origin, keep, first_frame=first_frame, mask=mask,
                               context=context, times=times)[0]

    def forward_kv(self, x: torch.Tensor, sigma: torch.Tensor, actions: torch.Tensor, poses: torch.Tensor,
                   origin: torch.Tensor | None = None, keep: torch.Tensor | None = None, *,
                   first_frame: int | float | torch.Tensor = 0, mask: torch.Tensor | None = None,
                   context: list[LayerContext] | None = None, times: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, list[LayerKV]]:
        """`forward` plus every layer's pre-RoPE keys and values of x's tokens (what a cache stores)."""
        cfg = self.cfg
        b, f = x.shape[:2]
        if x.shape[2:] != (cfg.channels, cfg.height, cfg.width_px):
            raise ValueError(f"model expects frames {(cfg.channels, cfg.height, cfg.width_px)}, got {tuple(x.shape[2:])}")
        if sigma.shape != (b, f) or actions.shape[:2] != (b, f) or poses.shape[:2] != (b, f):
            raise ValueError(f"per-frame inputs must be ({b}, {f}, ...): sigma {tuple(sigma.shape)}, "
                             f"actions {tuple(actions.shape)}, poses {tuple(poses.shape)}")
        if context is not None and len(context) != cfg.depth:
            raise ValueError(f"context has {len(context)} layers, model has {cfg.depth}")
        h = self.patch_in(patchify(x, cfg.patch).to(self.patch_in.weight.dtype))
        c = self.time_embed(timestep_embedding(sigma).to(h.dtype))
        # contiguous: a block's actions/poses are often strided slices of a longer clip's, and a strided
        # operand can take another BLAS path and change the last bits (an AMD EPYC host did: a graphed
        # student block, fed contiguous copies, differed from the eager block by 1 ulp)
        poses, origin = poses.contiguous(), None if origin is None else origin.contiguous()
        action, pose = self.condition(actions.contiguous(), poses, origin, keep)
        rays = self.ray_tokens(poses, origin, keep)
        if rays is not None:
            h = h + rays
        angles = self.rope_angles(self.positions(f, first_frame, poses, origin, keep, times))
        rot = rotation(angles if angles.dim() == 2 else angles[:, None])  # once for all layers; per sample: over heads
        cameras = (camera_transforms(poses, origin, keep, torch.promote_types(h.dtype, torch.float32))
                   if cfg.prope else None)  # >= fp32, as the transform itself
        if context is not None and context[0].valid is not None:  # padded view: no query attends to the padding
            keys = torch.cat([context[0].valid, context[0].valid.new_ones(h.shape[2] * f)])[None, :]
            mask = keys if mask is None else mask & keys
        kvs = []
        for i, block in enumerate(self.blocks):
            h, kv = block(h, c, action, pose, rot, mask, None if context is None else context[i], cameras)
            kvs.append(kv)
        shift, scale = self.final_ada(F.silu(c)).chunk(2, dim=-1)
        out = self.patch_out(modulate(self.final_norm(h), shift, scale))
        return unpatchify(out, cfg.patch, cfg.channels, cfg.height, cfg.width_px), kvs


#: parameter names of the action and camera conditioning (absent from a plain video model)
CONDITIONING = ("action_embed.", "pose_embed.", "null_action", "null_pose", "ray_embed.", ".action_out.", ".pose_q.",
                ".pose_k.")


def load_init(model: VideoDiT, weights: dict[str, torch.Tensor], where: str) -> list[str]:
    """Start `model` from `weights` (--init). Weights of a plain video model (`conditioned` False)
    start a conditioned one: the conditioning it lacks keeps its fresh initialisation, whose output
    layers (action_out, pose_q, pose_k, the rays' last layer) are zero, so the model computes
    exactly what the pretrained one did until training moves them. Returns the names added; any
    other mismatch is a ValueError naming the keys."""
    own = model.state_dict()
    added = [k for k in own if k not in weights]
    unknown = [k for k in weights if k not in own]
    foreign = [k for k in added if not any(part in f".{k}" for part in CONDITIONING)]
    if unknown or foreign:
        raise ValueError(f"{where}: its weights do not fit this model: {len(unknown)} unknown "
                         f"({unknown[:3]}), {len(foreign)} missing outside the conditioning ({foreign[:3]})")
    model.load_state_dict({**own, **weights})
    return added


def forward_flops(cfg: ModelConfig, frames: int, context_tokens: int = 0) -> float:
    """Matmul FLOPs of one forward over one clip of `frames` frames (2 per multiply-add)."""
    tokens = frames * cfg.tokens_per_frame
    d, inner = cfg.width, cfg.heads * cfg.attn_dim  # inner = d unless the heads carry camera dims
    dense = 2 * tokens * (4 * d * inner + 2 * cfg.mlp_ratio * d * d)  # qkv + out, MLP
    attention = 2 * 2 * tokens * (tokens + context_tokens) * inner  # q·kᵀ and attn·v
    embed = 2 * tokens * 2 * cfg.patch_dim * d
    return float(cfg.depth * (dense + attention) + embed)
