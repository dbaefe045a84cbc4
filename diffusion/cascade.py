"""The two-stage cascade's maths (Ho et al. 2022, "Cascaded Diffusion Models"; DeepFloyd IF's stage II).

A super-resolution model denoises the high-resolution image x_t given the low-resolution image, upsampled to
the high resolution and concatenated to x_t as channels. The low-resolution image is noise-augmented first:
z_s = sqrt(alpha_bar[s]) z + sqrt(1 - alpha_bar[s]) noise, with the model's own schedule, and the network is
told s (CDM sec. 4.2, "conditioning augmentation"). Training draws s uniformly from [0, aug_max]; sampling
uses one fixed s (IF's stage II uses 250 of 1000).

The condition the network receives is an ``SRCond``: the augmented upsampled image, s, and the base condition
(None, labels or a TextCond). The denoiser helpers (``cond_map``/``cond_cat``) recurse into it, so guidance
batches it like any other condition; guidance drops only the base condition, never the low-resolution image.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from diffusion.forward_process import add_noise, gather
from diffusion.schedules import Schedule


class SRCond(NamedTuple):
    """What a super-resolution network is conditioned on, batched over B."""

    low: torch.Tensor  # (B, C, H, W): the noise-augmented low-resolution image, upsampled to H x W
    aug_t: torch.Tensor  # (B,) long: its augmentation level s
    cond: Any = None  # the base condition: None, (B,) labels, or a TextCond


def downsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size), antialiased bicubic (the low-resolution view of a training image)."""
    return F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False).clamp(-1, 1)


def upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, size, size), bicubic: the baseline and the network's low-resolution input."""
    return F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)


def augment(low: torch.Tensor, aug_t: torch.Tensor, schedule: Schedule, noise: torch.Tensor) -> torch.Tensor:
    """q(z_s | z): the low-resolution image noised to level s = ``aug_t`` (B,), under the model's schedule.
    Level 0 still adds the schedule's smallest noise (std sqrt(1 - alpha_bar[0]))."""
    return add_noise(low, noise, gather(schedule.alphas_cumprod, aug_t.to(low.device), low))


def sr_condition(low: torch.Tensor, size: int, aug_t: torch.Tensor, schedule: Schedule, noise: torch.Tensor,
                 cond: Any = None) -> SRCond:
    """The SRCond of low-resolution images ``low`` (B, C, h, w) for a size x size model: augmented at level
    ``aug_t`` (B,) with ``noise`` (shaped like ``low``), then upsampled."""
    return SRCond(upsample(augment(low, aug_t, schedule, noise), size), aug_t.to(low.device), cond)
