"""Image metrics on uint8-range video tensors. Pure torch.

PSNR in dB over [0, 255] pixels, with the MSE floored at 1/12 (the error of rounding to 8 bits), so
identical frames score 58.9 dB instead of infinity (out-and-back scripts return to the first frame); SSIM (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5),
K1 = 0.01, K2 = 0.03, computed per channel on 'valid' windows and averaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(..., C, H, W) in [0, 255] -> (...) dB, at most 10·log10(12·255²) = 58.9."""
    mse = (pred.double() - target.double()).pow(2).flatten(-3).mean(-1).clamp_min(1 / 12)
    return 10 * torch.log10(255.0**2 / mse)


def _gaussian(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(..., C, H, W) in [0, 255] -> (...) mean SSIM. The Gaussian window is applied separably in float32."""
    shape = pred.shape
    c = shape[-3]
    x = pred.float().reshape(-1, c, *shape[-2:]) / 255.0
    y = target.float().reshape(-1, c, *shape[-2:]) / 255.0
    g = _gaussian().float().to(x.device)
    rows, cols = g.reshape(1, 1, -1, 1).expand(c, 1, -1, 1), g.reshape(1, 1, 1, -1).expand(c, 1, 1, -1)

    def blur(z: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(z, rows, groups=c), cols, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1).double().reshape(shape[:-3])
