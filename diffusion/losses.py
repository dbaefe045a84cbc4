"""Denoising loss: MSE on the chosen target with uniform or min-SNR-gamma weighting."""

from __future__ import annotations

import torch

from diffusion.parametrization import PREDICTIONS

WEIGHTINGS = ("uniform", "min_snr")


def loss_weight(snr: torch.Tensor, prediction: str, weighting: str = "uniform", snr_gamma: float = 5.0) -> torch.Tensor:
    """Per-sample weight of the MSE on ``prediction``'s target.

    min_snr (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting", eq. 8-9): the x0-space
    weight min(snr, gamma) expressed for each target: x0 -> min(snr, gamma), eps -> min(snr, gamma) / snr,
    v -> min(snr, gamma) / (snr + 1). Written so snr = 0 (zero terminal SNR) gives a finite weight.
    """
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if weighting == "uniform":
        return torch.ones_like(snr)
    if weighting != "min_snr":
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    clipped = snr.clamp(max=snr_gamma)
    if prediction == "x0":
        return clipped
    if prediction == "eps":
        return (snr_gamma / snr).clamp(max=1.0)  # = min(snr, gamma)/snr, and 1 at snr = 0 (gamma/0 = inf)
    return clipped / (snr + 1)


def diffusion_loss(
    out: torch.Tensor,
    target: torch.Tensor,
    snr: torch.Tensor,
    prediction: str,
    weighting: str = "uniform",
    snr_gamma: float = 5.0,
) -> torch.Tensor:
    """Weighted mean over the batch of the per-sample mean squared error (Ho et al. 2020, eq. 14).

    out, target: (B, ...); snr: (B,) float64 or float32. Returns a scalar in out's dtype.
    """
    mse = (out.float() - target.float()).pow(2).flatten(1).mean(1)  # (B,)
    w = loss_weight(snr.to(torch.float64), prediction, weighting, snr_gamma).to(mse.dtype)
    return (w * mse).mean()
