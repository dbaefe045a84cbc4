"""Single steps between two timesteps: pure functions of (prediction, x_t, t, t_prev, noise).

Samplers, DDIM inversion, RePaint and DDIB are loops over these; no step maths is written anywhere else.
``t_prev = -1`` (or ``t_next``'s start, ``t = -1``) stands for the clean image, alpha_bar = 1.
"""

from __future__ import annotations

import torch

from diffusion.forward_process import posterior_mean_variance
from diffusion.parametrization import Prediction
from diffusion.schedules import Schedule


def alpha_bar_at(schedule: Schedule, t: int) -> float:
    """alpha_bar[t] as a Python float, and 1 for t = -1 (the clean image)."""
    return 1.0 if t < 0 else float(schedule.alphas_cumprod[t])


def ddim_sigma(alpha_bar: float, alpha_bar_prev: float, eta: float) -> float:
    """sigma = eta sqrt((1 - ab_prev)/(1 - ab) (1 - ab/ab_prev))  (Song et al. 2021, eq. 16)."""
    return eta * ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)) ** 0.5


def ddim_step(
    schedule: Schedule, pred: Prediction, x_t: torch.Tensor, t: int, t_prev: int,
    noise: torch.Tensor | None = None, *, eta: float = 0.0,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12): x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - s^2) eps + s z,
    s = ``ddim_sigma``; ``noise`` z is needed only when s > 0 (eta > 0 and t_prev >= 0)."""
    ab, ab_prev = alpha_bar_at(schedule, t), alpha_bar_at(schedule, t_prev)
    sigma = ddim_sigma(ab, ab_prev, eta)
    x = ab_prev**0.5 * pred.x0 + max(1 - ab_prev - sigma**2, 0.0) ** 0.5 * pred.eps
    if sigma > 0:
        if noise is None:
            raise ValueError("ddim_step with eta > 0 needs noise")
        x = x + sigma * noise
    return x


def ddpm_step(
    schedule: Schedule, pred: Prediction, x_t: torch.Tensor, t: int, t_prev: int,
    noise: torch.Tensor | None = None, *, variance: str = "beta_tilde",
) -> torch.Tensor:
    """Ancestral step x_prev ~ q(x_prev | x_t, x0_hat) (Ho et al. 2020, alg. 2, on a possibly strided chain).
    variance: "beta_tilde" (the posterior's, eq. 7) or "beta" (1 - ab/ab_prev). ``noise`` None adds none
    (the last step, t_prev = -1, always adds none)."""
    ab, ab_prev = alpha_bar_at(schedule, t), alpha_bar_at(schedule, t_prev)
    mean, var = posterior_mean_variance(pred.x0, x_t, ab, ab_prev)
    if variance == "beta":
        var = 1 - ab / ab_prev
    elif variance != "beta_tilde":
        raise ValueError(f"variance must be 'beta_tilde' or 'beta', got {variance!r}")
    return mean if noise is None or t_prev < 0 else mean + var**0.5 * noise


def ddim_inverse_step(schedule: Schedule, pred: Prediction, x_t: torch.Tensor, t: int, t_next: int) -> torch.Tensor:
    """The deterministic DDIM update run backwards, from t to a later t_next (Song et al. 2021, sec. 4.3):
    x_next = sqrt(ab_next) x0' + sqrt(1 - ab_next) eps, x0' = (x_t - sqrt(1 - ab) eps) / sqrt(ab).

    Only ``pred.eps`` is used, and x0' is recomputed from x_t, so that ``ddim_step`` from x_next with the same
    eps lands exactly back on x_t. Where eps comes from (x_t or an estimate of x_next) is the caller's choice.
    """
    ab, ab_next = alpha_bar_at(schedule, t), alpha_bar_at(schedule, t_next)
    x0 = (x_t - (1 - ab) ** 0.5 * pred.eps) / ab**0.5
    return ab_next**0.5 * x0 + (1 - ab_next) ** 0.5 * pred.eps
