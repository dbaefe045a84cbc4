"""Denoising backbones: ADM-style U-Net and DiT, both called as net(x_t, t, cond=None)."""

from models.dit import DiT
from models.unet import UNet

__all__ = ["DiT", "UNet"]
