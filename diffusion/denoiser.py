"""Wrap a network as a denoiser: a callable (x_t, t) -> Prediction(eps, x0) closed over its condition."""

from __future__ import annotations

from typing import Callable

import torch

from diffusion.forward_process import gather
from diffusion.parametrization import Prediction, to_prediction
from diffusion.schedules import Schedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], Prediction]


def net_denoiser(net: Callable, schedule: Schedule, prediction: str, cond: torch.Tensor | None = None) -> Denoiser:
    """Denoiser for a network ``net(x_t, t, cond)`` trained to predict ``prediction`` (eps, x0 or v).

    Only the first ``x_t.shape[1]`` output channels are used, so a network that also learns a variance works.
    """

    def denoiser(x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        out = net(x_t, t, cond)[:, : x_t.shape[1]]  # (B, C, H, W)
        return to_prediction(prediction, out, x_t, gather(schedule.alphas_cumprod, t, x_t))

    return denoiser
