"""Denoising backbones: ADM-style U-Net, DiT and U-ViT, all called as net(x_t, t, cond=None); eDiff-I's ensemble of
expert copies of one of them answers the same call."""

from models.dit import DiT
from models.experts import ExpertEnsemble
from models.unet import UNet
from models.uvit import UViT

__all__ = ["DiT", "ExpertEnsemble", "UNet", "UViT"]
