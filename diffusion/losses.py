"""The denoising loss: a per-sample weighted mean squared error (the weights come from the parametrization), and
the whole training loss of one batch at given timesteps and noise."""

from __future__ import annotations

from typing import Any, Callable

import torch

from diffusion.forward_process import add_noise, gather


def weighted_mse(out: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean over the batch of the per-sample mean squared error (Ho et al. 2020, eq. 14).

    out, target: (B, ...); weight: (B,) in any float dtype. Computed in float32; returns a scalar.
    """
    mse = (out.float() - target.float()).pow(2).flatten(1).mean(1)  # (B,)
    return (weight.to(mse.dtype) * mse).mean()



def denoising_loss(net: Callable, parametrization: Any, schedule: Any, x0: torch.Tensor, t: torch.Tensor,
                   eps: torch.Tensor, cond: Any = None) -> torch.Tensor:
    """The diffusion training loss of ``net(x_t, t, cond)`` on clean images x0 (B, C, H, W) at timesteps t (B,)
    with noise eps: x_t from the forward process, the target and weighting from ``parametrization``. Training,
    textual inversion and Imagic all optimise this one function."""
    alpha_bar = gather(schedule.alphas_cumprod, t, x0)
    x_t = parametrization.network_input(add_noise(x0, eps, alpha_bar), alpha_bar)  # the flow's own x
    out = net(x_t, t, cond)  # (B, C or 2C, H, W)
    snr = schedule.snr.to(x0.device)[t]
    return parametrization.loss(out, x0, eps, alpha_bar, snr)
