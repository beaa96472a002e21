"""Rectified flow: the noising path, the training target, timestep shift and the Euler sampler. Pure.

    x_sigma = (1 - sigma) · x0 + sigma · noise,     v = noise - x0,     x0 = x_sigma - sigma · v
    shift:  sigma = s·u / (1 + (s - 1)·u)     (u in [0, 1]; s > 1 spends more steps at high noise)

Image-to-video: frame 0 is the clean conditioning frame (sigma 0, never noised, not in the loss);
the sampler integrates the other frames from sigma 1 to 0 in Euler steps on the shifted grid.
Classifier-free guidance on the motion condition (actions and poses together):
v = v_uncond + w · (v_cond - v_uncond); w = 1 is the conditional model alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def draw_device(generator: torch.Generator | None, fallback: torch.device | str) -> torch.device:
    """Where random draws from `generator` happen: on its own device (a CPU generator stays
    reproducible across devices; a CUDA one keeps large draws off the CPU), else on `fallback`."""
    return generator.device if generator is not None else torch.device(fallback)


def shift_sigma(u: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * u / (1 + (shift - 1) * u)


def sample_sigma(batch: int, shift: float, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """(batch,) training noise levels: u ~ U(0, 1), shifted."""
    u = torch.rand(batch, generator=generator, device=device)
    return shift_sigma(u, shift)


def _frames(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """sigma (B, F) -> broadcastable over (B, F, C, H, W)."""
    return sigma.reshape(*sigma.shape, *([1] * (like.dim() - sigma.dim()))).to(like.dtype)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s = _frames(sigma, x0)
    return (1 - s) * x0 + s * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def x0_from_velocity(x_sigma: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return x_sigma - _frames(sigma, x_sigma) * v


def velocity_from_x0(x_sigma: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Inverse of x0_from_velocity (sigma > 0)."""
    return (x_sigma - x0) / _frames(sigma, x_sigma)


def schedule(steps: int, shift: float, device: torch.device | str | None = None) -> torch.Tensor:
    """(steps + 1,) sigmas from 1 down to 0 on the shifted grid."""
    u = torch.linspace(1.0, 0.0, steps + 1, device=device, dtype=torch.float64)
    return shift_sigma(u, shift)


def i2v_sigma(batch: int, frames: int, sigma: torch.Tensor | float, device: torch.device | str | None = None
              ) -> torch.Tensor:
    """(B, F) per-frame noise levels: frame 0 clean, the rest at sigma ((B,) or a number)."""
    out = torch.zeros(batch, frames, device=device)
    if isinstance(sigma, torch.Tensor):
        out[:, 1:] = sigma.to(device=device, dtype=torch.float32).reshape(-1, 1)
    else:
        out[:, 1:] = float(sigma)  # a fill, no host-to-device copy (CUDA graph capture)
    return out


#: velocity(x (B, F, C, H, W), sigma (B, F), keep (B,) bool or None) -> (B, F, C, H, W)
VelocityFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def guided(velocity: VelocityFn, x: torch.Tensor, sigma: torch.Tensor, guidance: float) -> torch.Tensor:
    """CFG over the motion condition; one batched call for both branches when guidance != 1."""
    if guidance == 1.0:
        return velocity(x, sigma, None)
    b = x.shape[0]
    keep = torch.arange(2 * b, device=x.device) < b  # conditional branch first, then the unconditional
    v = velocity(torch.cat([x, x]), torch.cat([sigma, sigma]), keep)
    v_cond, v_uncond = v[:b], v[b:]
    return v_uncond + guidance * (v_cond - v_uncond)


def sample_i2v(velocity: VelocityFn, first: torch.Tensor, frames: int, steps: int, shift: float,
               guidance: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Generate (B, frames, C, H, W) from the clean first frame (B, C, H, W) by Euler steps."""
    b = first.shape[0]
    noise = torch.randn((b, frames - 1, *first.shape[1:]), generator=generator, device=first.device,
                        dtype=first.dtype)
    x = noise
    sigmas = schedule(steps, shift).tolist()  # on the host: no device sync per step (and capturable)
    for i in range(steps):
        s, s_next = sigmas[i], sigmas[i + 1]
        full = torch.cat([first[:, None], x], dim=1)
        v = guided(velocity, full, i2v_sigma(b, frames, s, first.device), guidance)[:, 1:]
        x = x + (s_next - s) * v.to(x.dtype)
    return torch.cat([first[:, None], x], dim=1)
