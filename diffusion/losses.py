"""The denoising loss: a per-sample weighted mean squared error (the weights come from the parametrization)."""

from __future__ import annotations

import torch


def weighted_mse(out: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted mean over the batch of the per-sample mean squared error (Ho et al. 2020, eq. 14).

    out, target: (B, ...); weight: (B,) in any float dtype. Computed in float32; returns a scalar.
    """
    mse = (out.float() - target.float()).pow(2).flatten(1).mean(1)  # (B,)
    return (weight.to(mse.dtype) * mse).mean()

