"""Image generation from a network: the one path used by preview grids and by sample.py."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from diffusion.denoiser import net_denoiser
from diffusion.samplers import make_timesteps, sample_ddim
from diffusion.schedules import Schedule


@torch.no_grad()
def generate_images(
    net: nn.Module,
    schedule: Schedule,
    prediction: str,
    shape: tuple[int, int, int],
    labels: torch.Tensor | None,
    *,
    n: int,
    steps: int = 20,
    eta: float = 0.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``n`` DDIM samples (n, C, H, W) in [-1, 1]; ``labels`` (n,) or None; noise from ``seed`` only."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    x_T = torch.randn((n, *shape), generator=g).to(device)
    cond = labels.to(device) if labels is not None else None
    timesteps = make_timesteps(schedule.num_timesteps, steps, "trailing")
    x0 = sample_ddim(net_denoiser(net, schedule, prediction, cond), x_T, schedule, timesteps, eta=eta, generator=g)
    return x0.clamp(-1, 1)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> None:
    """Write images in [-1, 1] as one PNG grid."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torchvision.utils.save_image((images.float().cpu() + 1) / 2, str(path), nrow=nrow, padding=2, pad_value=1.0)
