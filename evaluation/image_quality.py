"""Full-reference image quality: PSNR and SSIM (Wang et al. 2004), per image, on images in [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B,) peak signal-to-noise ratio in dB of images x against y, both (B, C, H, W) in [-1, 1] (peak 1 on the
    [0, 1] scale): 10 log10(1 / MSE)."""
    mse = ((x.double() - y.double()) / 2).square().flatten(1).mean(1)
    return 10 * torch.log10(1 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """(size, size) normalised Gaussian window, SSIM's standard weighting."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-r.square() / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: torch.Tensor, y: torch.Tensor, size: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03) -> torch.Tensor:
    """(B,) structural similarity of x against y, both (B, C, H, W) in [-1, 1], on the [0, 1] scale: local
    means, variances and covariance under a Gaussian window (11, sigma 1.5), the SSIM map over every window
    inside the image ('valid'), averaged over positions and channels (each channel on its own, as for RGB in
    Wang et al.'s code and torchmetrics)."""
    if min(x.shape[-2:]) < size:
        raise ValueError(f"SSIM needs images of at least {size}x{size}, got {tuple(x.shape[-2:])}")
    x, y = (x.double() + 1) / 2, (y.double() + 1) / 2
    c = x.shape[1]
    w = gaussian_window(size, sigma).to(x.device).expand(c, 1, size, size)
    blur = lambda z: F.conv2d(z, w, groups=c)  # noqa: E731
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = k1**2, k2**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)
