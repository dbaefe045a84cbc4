"""The forward process q(x_t | x0) and its posterior q(x_{t-1} | x_t, x0) (Ho et al. 2020, sec. 2)."""

from __future__ import annotations

import torch

from diffusion.schedules import Schedule


def gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] for a batch of timesteps t (B,), reshaped to (B, 1, ..., 1) in ``like``'s dtype/device."""
    out = values.to(like.device)[t.long().to(like.device)].to(like.dtype)
    return out.reshape(-1, *([1] * (like.ndim - 1)))


def add_noise(x0: torch.Tensor, eps: torch.Tensor, alpha_bar) -> torch.Tensor:
    """Sample q(x_t | x0): x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps  (Ho et al. 2020, eq. 4)."""
    return alpha_bar**0.5 * x0 + (1 - alpha_bar) ** 0.5 * eps


def renoise(x: torch.Tensor, alpha_bar_from: float, alpha_bar_to: float, noise: torch.Tensor) -> torch.Tensor:
    """Sample q(x_to | x_from) for a later, noisier step: N(sqrt(a) x, (1 - a) I), a = ab_to / ab_from
    (RePaint's jump back up, Lugmayr et al. 2022, eq. 9 over several steps)."""
    a = alpha_bar_to / alpha_bar_from
    return a**0.5 * x + (1 - a) ** 0.5 * noise


def q_sample(schedule: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``add_noise`` at integer timesteps t (B,) of ``schedule``."""
    return add_noise(x0, eps, gather(schedule.alphas_cumprod, t, x0))


def posterior_mean_variance(x0, x_t, alpha_bar_t, alpha_bar_prev):
    """Mean and variance of q(x_prev | x_t, x0) for any earlier step ``prev`` (Ho et al. 2020, eq. 6-7).

    With alpha = alpha_bar_t / alpha_bar_prev and beta = 1 - alpha (one step of a possibly strided chain):
        mean = (sqrt(alpha_bar_prev) beta x0 + sqrt(alpha) (1 - alpha_bar_prev) x_t) / (1 - alpha_bar_t)
        var  = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta                                  (beta-tilde)
    Accepts floats or tensors broadcastable against x_t.
    """
    alpha = alpha_bar_t / alpha_bar_prev
    beta = 1 - alpha
    mean = (alpha_bar_prev**0.5 * beta * x0 + alpha**0.5 * (1 - alpha_bar_prev) * x_t) / (1 - alpha_bar_t)
    var = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta
    return mean, var
