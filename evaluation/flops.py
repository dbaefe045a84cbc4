"""Floating-point operations of one training step, counted by torch.utils.flop_counter (matmuls and convolutions,
forward and backward; elementwise ops are not counted). Used to compare models at equal training compute."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from diffusion.cascade import sr_condition
from diffusion.schedules import Schedule
from models.text import TextCond


def example_condition(net: nn.Module, batch: int, schedule: Schedule, text_dim: int = 384, text_len: int = 32):
    """A condition batch of the kind ``net`` takes: None, labels, a TextCond of ``text_len`` tokens of width
    ``text_dim``, or for an upscaler an SRCond around one of those."""
    cond = None
    if getattr(net, "cond", None) == "text":
        cond = TextCond(torch.randn(batch, text_len, text_dim), torch.ones(batch, text_len, dtype=torch.bool),
                        torch.randn(batch, text_dim))
    elif getattr(net, "num_classes", None):
        cond = torch.zeros(batch, dtype=torch.long)
    low_res = getattr(net, "low_res", None)
    if low_res:
        low = torch.zeros(batch, net.in_channels, low_res, low_res)
        cond = sr_condition(low, net.image_size, torch.zeros(batch, dtype=torch.long), schedule,
                            torch.zeros_like(low), cond)
    return cond


def training_step_flops(net: nn.Module, shape: tuple[int, int, int], schedule: Schedule, batch: int = 2) -> float:
    """FLOPs per image of one training step of ``net`` on (C, H, W) images: forward and backward of the network
    (the frozen text encoder runs once per caption set, not per step, and is not counted)."""
    x = torch.randn(batch, *shape)
    t = torch.randint(0, schedule.num_timesteps, (batch,))
    cond = example_condition(net, batch, schedule)
    with FlopCounterMode(display=False) as counter:
        net(x, t, cond).square().mean().backward()
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch
