"""The denoising loss: a per-sample weighted mean squared error (the weights come from the parametrization)."""

from __future__ import annotations

import torch


def weighted_mse(out: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean over the batch of the per-sample mean squared error (Ho et al. 2020, eq. 14).

    out, target: (B, ...); weight: (B,) in any float dtype. Computed in float32; returns a scalar.
    """
    mse = (out.float() - target.float()).pow(2).flatten(1).mean(1)  # (B,)
    return (weight.to(mse.dtype) * mse).mean()


# TEMPORARY (removed once training/module.py takes a Parametrization, later in this change)
def diffusion_loss(out, target, snr, prediction, weighting="uniform", snr_gamma=5.0):
    from diffusion.parametrization import make_parametrization

    weight = make_parametrization(prediction, weighting, snr_gamma).loss_weight(snr.to(torch.float64))
    return weighted_mse(out, target, weight)


def loss_weight(snr, prediction, weighting="uniform", snr_gamma=5.0):
    from diffusion.parametrization import make_parametrization

    return make_parametrization(prediction, weighting, snr_gamma).loss_weight(snr)
