"""Samplers: stateless functions over a denoiser callable (Ho et al. 2020; Song et al. 2021).

Every sampler walks a decreasing list of integer timesteps and returns x_0. Step i goes from
``timesteps[i]`` to ``timesteps[i + 1]`` (alpha_bar = 1 after the last), so full, strided and respaced
chains are all just different lists (see ``make_timesteps``).
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from diffusion.denoiser import Denoiser
from diffusion.parametrization import Prediction
from diffusion.schedules import Schedule
from diffusion.steps import alpha_bar_at, ddim_step, ddpm_step

SPACINGS = ("uniform", "quadratic", "trailing")
Callback = Callable[[int, int, torch.Tensor, torch.Tensor], None]  # (i, t, x_t, x0_hat)


def make_timesteps(num_timesteps: int, steps: int, spacing: str = "uniform", start: int | None = None) -> list[int]:
    """A decreasing list of ``steps`` distinct timesteps in [0, T-1] (or [0, start], beginning at ``start``).

    uniform: 0, k, 2k, ... (DDIM, Song et al. 2021 sec. 4.2, "leading"); quadratic: (i * c)^2 spaced
    (DDIM appendix); trailing: ends exactly at T-1 (Lin et al. 2024, table 2). With ``start`` (partial
    chains: denoising from a noised image, SDEdit) the list is trailing-spaced so it begins at ``start``.
    """
    if start is not None:
        if not 0 <= start < num_timesteps:
            raise ValueError(f"start must be in [0, {num_timesteps - 1}], got {start}")
        return make_timesteps(start + 1, min(steps, start + 1), "trailing")
    T = num_timesteps
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, {T}], got {steps}")
    if spacing == "uniform":
        ts = [int(i * T / steps) for i in range(steps)]  # float stride keeps the list within [0, T-1]
    elif spacing == "trailing":
        ts = [round(T - 1 - i * T / steps) for i in range(steps)][::-1]
    elif spacing == "quadratic":
        ts = (torch.linspace(0, (0.8 * T) ** 0.5, steps, dtype=torch.float64) ** 2).long().tolist()
        for i in range(1, steps):  # collisions at the low end shift upwards, keeping ``steps`` values
            ts[i] = max(ts[i], ts[i - 1] + 1)
    else:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}")
    return sorted(set(ts), reverse=True)


SCHEDULE_SPACINGS = SPACINGS + ("logsnr", "karras")  # what ``schedule_timesteps`` accepts


def schedule_timesteps(
    schedule: Schedule, steps: int, spacing: str = "uniform", start: int | None = None, rho: float = 7.0,
    sigma_max: float | None = None,
) -> list[int]:
    """A decreasing list of ``steps`` distinct timesteps in [0, T-1] (or [0, start]) for spacings that need the
    schedule; the spacings of ``make_timesteps`` are passed to it unchanged.

    logsnr: uniform in log-SNR from t = T-1 (or ``start``) down to t = 0, both ends included (Lu et al. 2022,
    DPM-Solver, sec. 3.3 "logSNR"); karras: Karras et al. 2022, eq. 5, sigma_i = (sigma_max^(1/rho) + i/(N-1)
    (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho with sigma = sqrt((1 - alpha_bar)/alpha_bar) and sigma_min/max
    the schedule's ends, or with ``sigma_max`` the smaller of it and the schedule's top (EDM's sigma_max = 80: a
    cosine schedule's last timestep has sigma ~ 6e4, and rho = 7 would spend most of a short list up there; the
    sampler then starts from pure noise at the timestep of sigma_max, as k-diffusion does). Each target goes to the
    timestep nearest in log sigma (k-diffusion's quantized ``sigma_to_t``); timesteps that collide after rounding
    (many at the low-noise end) move up one by one, so the list keeps ``steps`` distinct values.
    """
    if spacing in SPACINGS:
        return make_timesteps(schedule.num_timesteps, steps, spacing, start)
    if spacing not in SCHEDULE_SPACINGS:
        raise ValueError(f"spacing must be one of {SCHEDULE_SPACINGS}, got {spacing!r}")
    T = schedule.num_timesteps
    top = T - 1 if start is None else start
    if not 0 <= top < T:
        raise ValueError(f"start must be in [0, {T - 1}], got {start}")
    if start is not None:
        steps = min(steps, top + 1)  # as make_timesteps does for partial chains
    if not 1 <= steps <= top + 1:
        raise ValueError(f"steps must be in [1, {top + 1}], got {steps}")
    ab = schedule.alphas_cumprod[: top + 1]
    if ab[-1] <= 0:
        raise ValueError(f"{spacing!r} spacing needs alpha_bar > 0 at t = {top} (sigma is infinite at zero "
                         "terminal SNR); use 'trailing'")
    log_sigma = 0.5 * (torch.log1p(-ab) - torch.log(ab))  # (top + 1,), increasing in t
    lo, hi = log_sigma[0].item(), log_sigma[-1].item()
    if spacing == "logsnr":
        targets = torch.linspace(hi, lo, steps, dtype=torch.float64)
    else:
        if sigma_max is not None:
            if not sigma_max > 0:
                raise ValueError(f"sigma_max must be > 0, got {sigma_max}")
            hi = min(hi, math.log(sigma_max))
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
        s_max, s_min = math.exp(hi / rho), math.exp(lo / rho)  # sigma^(1/rho) at the two ends
        targets = rho * torch.log(s_max + ramp * (s_min - s_max))
    ts = (targets[:, None] - log_sigma[None, :]).abs().argmin(dim=1).tolist()[::-1]  # increasing
    for i in range(1, steps):  # collisions move up, then the top is capped so the list still fits in [0, top]
        ts[i] = max(ts[i], ts[i - 1] + 1)
    ts = [min(t, top - (steps - 1 - i)) for i, t in enumerate(ts)]
    return ts[::-1]


Generators = torch.Generator | Sequence[torch.Generator] | None


def randn_like(x: torch.Tensor, generator: Generators) -> torch.Tensor:
    """Standard normal noise shaped like x from ``generator``, or from one generator per batch element
    (then a sample's noise does not depend on which batch it is in)."""
    if generator is None or isinstance(generator, torch.Generator):
        device = generator.device if generator is not None else x.device
        return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=device).to(x.device)
    if len(generator) != x.shape[0]:
        raise ValueError(f"{len(generator)} generators for a batch of {x.shape[0]}")
    noise = [torch.randn(x.shape[1:], generator=g, dtype=x.dtype, device=g.device) for g in generator]
    return torch.stack(noise).to(x.device)


def threshold_x0(x0: torch.Tensor, clip_x0: bool | float = False) -> torch.Tensor:
    """Clip x0_hat to [-1, 1] (True), or dynamic thresholding at that percentile (a float in (0, 1),
    Saharia et al. 2022, sec. 2.3: s = max(1, quantile(|x0|, p)) per sample, x0 <- clip(x0, -s, s) / s)."""
    if clip_x0 is False or clip_x0 is None:
        return x0
    if clip_x0 is True:
        return x0.clamp(-1, 1)
    s = torch.quantile(x0.abs().flatten(1).float(), float(clip_x0), dim=1).clamp(min=1.0).to(x0.dtype)
    s = s.reshape(-1, *([1] * (x0.ndim - 1)))
    return x0.clamp(-s, s) / s


def clip_prediction(pred: Prediction, x_t: torch.Tensor, alpha_bar: float, clip_x0: bool | float) -> Prediction:
    """``pred`` with x0_hat thresholded (``threshold_x0``) and eps_hat re-derived from it, so the step stays
    consistent with the clipped x0 (as GLIDE does, and diffusers' DDIM only with use_clipped_model_output)."""
    if not clip_x0:
        return pred
    x0 = threshold_x0(pred.x0, clip_x0)
    return Prediction((x_t - alpha_bar**0.5 * x0) / (1 - alpha_bar) ** 0.5, x0)


def _t_batch(x: torch.Tensor, t: int) -> torch.Tensor:
    return torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)


@torch.no_grad()
def sample_ddim(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: Schedule,
    timesteps: Sequence[int],
    *,
    eta: float = 0.0,
    generator: Generators = None,
    callback: Callback | None = None,
    clip_x0: bool | float = False,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12) along ``timesteps``: ``ddim_step`` at each; eta = 0 is deterministic,
    eta = 1 is DDPM-like. With ``clip_x0`` the prediction is clipped first (``clip_prediction``)."""
    x = x_T
    ts = list(timesteps)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        pred = clip_prediction(denoiser(x, _t_batch(x, t)), x, alpha_bar_at(schedule, t), clip_x0)
        if callback is not None:
            callback(i, t, x, pred.x0)
        noise = randn_like(x, generator) if eta > 0 and t_prev >= 0 else None  # sigma > 0 exactly then
        x = ddim_step(schedule, pred, x, t, t_prev, noise, eta=eta)
    return x


@torch.no_grad()
def sample_ddpm(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: Schedule,
    timesteps: Sequence[int],
    *,
    variance: str = "beta_tilde",
    generator: Generators = None,
    callback: Callback | None = None,
    clip_x0: bool | float = False,
) -> torch.Tensor:
    """Ancestral sampling (Ho et al. 2020, alg. 2) along any decreasing chain (respaced as in Nichol &
    Dhariwal 2021, sec. 4): ``ddpm_step`` at each. variance: "beta_tilde" (posterior, eq. 7) or "beta"."""
    if variance not in ("beta_tilde", "beta"):
        raise ValueError(f"variance must be 'beta_tilde' or 'beta', got {variance!r}")
    x = x_T
    ts = list(timesteps)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        pred = denoiser(x, _t_batch(x, t))
        pred = Prediction(pred.eps, threshold_x0(pred.x0, clip_x0))  # the posterior mean uses x0_hat and x_t only
        if callback is not None:
            callback(i, t, x, pred.x0)
        noise = randn_like(x, generator) if t_prev >= 0 else None  # no noise on the final step (alg. 2: z = 0)
        x = ddpm_step(schedule, pred, x, t, t_prev, noise, variance=variance)
    return x
