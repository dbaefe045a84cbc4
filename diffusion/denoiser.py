"""Wrap a network as a denoiser: a callable (x_t, t) -> Prediction(eps, x0) closed over its condition."""

from __future__ import annotations

from typing import Callable

import torch

from diffusion.forward_process import gather
from diffusion.parametrization import Parametrization, Prediction
from diffusion.schedules import Schedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], Prediction]


def net_denoiser(
    net: Callable, schedule: Schedule, parametrization: Parametrization, cond: torch.Tensor | None = None
) -> Denoiser:
    """Denoiser for a network ``net(x_t, t, cond)`` whose output ``parametrization`` interprets (its mean part
    only, so a network that also learns a variance works)."""

    def denoiser(x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        return parametrization.predict(net(x_t, t, cond), x_t, gather(schedule.alphas_cumprod, t, x_t))

    return denoiser
