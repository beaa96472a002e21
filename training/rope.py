"""3D rotary position embedding over (time, row, column). Pure functions.

A head's dim splits into frequency pairs: `hw` pairs each for rows and columns and the rest for
time (Wan's split: about 1/3 of the pairs each, time gets the remainder). Positions are floats, so
pooled memory tokens can sit at the centre of the patches they summarise (fractional positions),
and time can be rescaled:

* position interpolation: time positions are multiplied by `time_scale` (< 1 squeezes a longer
  clip into the trained range);
* NTK-style extension: the temporal base becomes theta * s^(d / (d - 2)) for an extension factor
  s = `time_ntk` (d = the temporal dims), which stretches low frequencies and keeps high ones.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


def axis_pairs(head_dim: int) -> tuple[int, int, int]:
    """Frequency pairs for (time, rows, cols)."""
    pairs = head_dim // 2
    hw = pairs // 3
    return pairs - 2 * hw, hw, hw


def _inv_freq(pairs: int, theta: float, device: torch.device) -> torch.Tensor:
    # made on the positions' device: no host-to-device copy (which a CUDA graph capture refuses)
    return theta ** (-torch.arange(pairs, dtype=torch.float64, device=device) / pairs)


def rope_angles(positions: torch.Tensor, head_dim: int, theta: float = 10000.0, time_scale: float = 1.0,
                time_ntk: float = 1.0) -> torch.Tensor:
    """positions (..., L, 3) as (t, row, col) -> rotation angles (..., L, head_dim/2), float64. Leading
    dims are per-sample positions (the view-ray positions of `model.spatial_rope` rays)."""
    n_t, n_h, n_w = axis_pairs(head_dim)
    d_t = 2 * n_t
    theta_t = theta * time_ntk ** (d_t / (d_t - 2)) if d_t > 2 else theta
    pos = positions.to(torch.float64)
    return torch.cat([
        (pos[..., 0:1] * time_scale) * _inv_freq(n_t, theta_t, pos.device),
        pos[..., 1:2] * _inv_freq(n_h, theta, pos.device),
        pos[..., 2:3] * _inv_freq(n_w, theta, pos.device),
    ], dim=-1)


class Rotation(NamedTuple):
    """cos and sin of rope angles (L, head_dim/2), float64: computed once, applied to every layer."""

    cos: torch.Tensor
    sin: torch.Tensor


def rotation(angles: torch.Tensor) -> Rotation:
    return Rotation(angles.cos(), angles.sin())


def apply_rope(x: torch.Tensor, rot: Rotation | torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x (..., L, head_dim) by angles (L, head_dim/2) (or their `rotation`;
    per-sample angles (B, 1, L, head_dim/2) broadcast over x's heads (B, heads, L, head_dim)):
    each pair (even, odd) as the complex number even + i·odd times cos + i·sin, that is
    (even·cos - odd·sin, even·sin + odd·cos). In >= fp32 even under bf16 autocast; as one complex
    multiply, not a dozen strided elementwise kernels per call (it runs for q and k in every layer)."""
    if not isinstance(rot, Rotation):
        rot = rotation(rot)
    dtype = torch.promote_types(x.dtype, torch.float32)
    pairs = torch.view_as_complex(x.to(dtype).reshape(*x.shape[:-1], -1, 2).contiguous())
    turn = torch.complex(rot.cos.to(dtype), rot.sin.to(dtype))
    return torch.view_as_real(pairs * turn).flatten(-2).to(x.dtype)


def grid_positions(frames: int, rows: int, cols: int, first_frame: int = 0,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """(frames*rows*cols, 3) positions of a frame-major token grid, frame indices from `first_frame`."""
    t, r, c = torch.meshgrid(torch.arange(first_frame, first_frame + frames, device=device),
                             torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
    return torch.stack([t, r, c], dim=-1).reshape(-1, 3).to(torch.float64)

