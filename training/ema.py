"""Exponential moving average of a network's weights, with warm-up."""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(step: int, decay: float, warmup_power: float) -> float:
    """Decay used after ``step`` optimizer steps: min(decay, 1 - (1 + step)^-power).

    The warm-up keeps early averages from being dominated by the random initialisation (the
    ``inv_gamma = 1`` form of diffusers' EMAModel / @crowsonkb); warmup_power = 0 turns it off.
    """
    if warmup_power <= 0:
        return decay
    return min(decay, 1.0 - (1.0 + step) ** -warmup_power)


def make_ema(net: nn.Module) -> nn.Module:
    """A frozen copy of ``net`` to hold the averaged weights (put it in eval mode before sampling)."""
    ema = copy.deepcopy(net)
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * net for parameters; buffers are copied."""
    ema_params = list(ema.parameters())
    net_params = [p.detach() for p in net.parameters()]
    torch._foreach_lerp_(ema_params, net_params, 1.0 - decay)
    for b_ema, b in zip(ema.buffers(), net.buffers()):
        b_ema.copy_(b)
