"""High-order samplers: DPM-Solver++ (Lu et al. 2022), UniPC (Zhao et al. 2023), and the Euler, Heun and Euler
ancestral samplers of Karras et al. 2022 written in the sigma parametrization of our VP models.

All share the samplers' signature and conventions (``diffusion/samplers.py``): a decreasing list of integer
timesteps, step i from ``timesteps[i]`` to ``timesteps[i + 1]`` and the last to t = -1 (alpha_bar = 1), one
``callback(i, t, x_t, x0_hat)`` per step before the update, noise only from ``randn_like(x, generator)``. They see
only the denoiser, so CFG, inpainting and anagram wrappers work unchanged, and the list may begin anywhere (SDEdit):
x_T is taken to be at alpha_bar[timesteps[0]], whatever that is.

Symbols used here beyond those of ``diffusion/__init__.py``:

    alpha_t   sqrt(alpha_bar[t])                        VP signal scale (1 at t = -1)
    s_t       sqrt(1 - alpha_bar[t])                    VP noise scale (0 at t = -1)
    lambda_t  log(alpha_t / s_t)                        half log-SNR (Lu et al. 2022); +inf at t = -1
    sigma     s_t / alpha_t = sqrt((1 - ab) / ab)       Karras et al.'s noise level (0 at t = -1); in this file
                                                        only, not the DDIM/DDPM sampler noise of __init__.py
    x~        x_t / alpha_t = x0 + sigma eps            Karras et al.'s unscaled state
    h         lambda_next - lambda_t                    the step in half log-SNR
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from diffusion.denoiser import Denoiser
from diffusion.flow import sample_flow_euler, sample_flow_heun, sample_flow_sde
from diffusion.samplers import (
    Callback,
    Generators,
    _t_batch,
    randn_like,
    sample_ddim,
    sample_ddpm,
    threshold_x0,
)
from diffusion.schedules import Schedule
from diffusion.steps import alpha_bar_at

UNIPC_VARIANTS = ("bh1", "bh2")


def _scales(schedule: Schedule, t: int) -> tuple[float, float, float]:
    """(alpha_t, s_t, lambda_t) as Python floats; t = -1 gives (1, 0, inf)."""
    ab = alpha_bar_at(schedule, t)
    a, s = math.sqrt(ab), math.sqrt(1.0 - ab)
    lam = math.inf if s == 0 else (-math.inf if a == 0 else math.log(a) - math.log(s))
    return a, s, lam


def _predict_x0(denoiser: Denoiser, x: torch.Tensor, t: int, clip_x0: bool | float) -> torch.Tensor:
    """The denoiser's x0_hat at (x, t), thresholded (``threshold_x0``) when ``clip_x0``."""
    return threshold_x0(denoiser(x, _t_batch(x, t)).x0, clip_x0)


def _check_order(order: int, highest: int) -> None:
    if order not in range(1, highest + 1):
        raise ValueError(f"order must be an integer in 1..{highest}, got {order!r}")


# ----------------------------------------------------------------------------------------------- DPM-Solver++


def _dpmpp_update(x: torch.Tensor, hist: list[tuple[float, torch.Tensor]], s_s: float,
                  a_t: float, s_t: float, lam_t: float) -> torch.Tensor:
    """One multistep DPM-Solver++ step of order len(hist) (1, 2 or 3) from the latest entry of ``hist``
    ((lambda, x0_hat) pairs, oldest first) to (a_t, s_t, lam_t): Lu et al. 2022 (DPM-Solver++), eq. 9 and
    Algorithm 2 (the 2M "midpoint" form), and the 3M form of their code and of diffusers."""
    lam_s, m0 = hist[-1]
    h = lam_t - lam_s
    phi = -math.expm1(-h)  # 1 - e^(-h); 1 at the final step (h = inf)
    x_t = (s_t / s_s) * x + (a_t * phi) * m0  # first order: DDIM (Lu et al. 2022, eq. 9 with k = 1)
    if len(hist) == 2:
        lam_1, m1 = hist[-2]
        r0 = (lam_s - lam_1) / h
        x_t = x_t + (0.5 * a_t * phi / r0) * (m0 - m1)  # D1 = (m0 - m1) / r0
    elif len(hist) == 3:
        (lam_2, m2), (lam_1, m1) = hist[-3], hist[-2]
        r0, r1 = (lam_s - lam_1) / h, (lam_1 - lam_2) / h
        d1_0, d1_1 = (m0 - m1) / r0, (m1 - m2) / r1
        d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        x_t = x_t + (a_t * (1.0 - phi / h)) * d1 - (a_t * ((h - phi) / h**2 - 0.5)) * d2
    return x_t


@torch.no_grad()
def sample_dpmpp(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: Schedule,
    timesteps: Sequence[int],
    *,
    order: int = 2,
    generator: Generators = None,
    callback: Callback | None = None,
    clip_x0: bool | float = False,
) -> torch.Tensor:
    """Multistep DPM-Solver++ in data prediction (Lu et al. 2022, "DPM-Solver++", Algorithm 2; order 2 is
    "2M"), x_T (B, ...) at ``timesteps[0]`` to x_0. ``order`` 1 is DDIM; 3 is the 3M variant.

    Lower orders where the history or the step demand it, as diffusers' DPMSolverMultistepScheduler does by
    default (final_sigmas_type="zero", lower_order_final=True): the first steps warm up (order min(order, i + 1));
    the final step, to sigma = 0, is first order (x_0 = x0_hat: the multistep terms are singular at h = inf);
    with order 3 and fewer than 15 steps the one before it is second order. x0_hat is thresholded when
    ``clip_x0``. ``generator`` is unused (the solver is deterministic); it is accepted for the shared signature.
    """
    _check_order(order, 3)
    ts = list(timesteps)
    n = len(ts)
    x = x_T
    hist: list[tuple[float, torch.Tensor]] = []  # (lambda, x0_hat) of the last ``order`` evaluations
    for i, t in enumerate(ts):
        t_next = ts[i + 1] if i + 1 < n else -1
        x0 = _predict_x0(denoiser, x, t, clip_x0)
        if callback is not None:
            callback(i, t, x, x0)
        _, s_s, lam_s = _scales(schedule, t)
        hist = (hist + [(lam_s, x0)])[-order:]
        k = min(order, i + 1)
        if i == n - 1:
            k = 1
        elif i == n - 2 and n < 15:
            k = min(k, 2)
        x = _dpmpp_update(x, hist[-k:], s_s, *_scales(schedule, t_next))
    return x


# ------------------------------------------------------------------------------------------------------- UniPC


def _unipc_update(x: torch.Tensor, hist: list[tuple[float, torch.Tensor]], s_s: float, a_t: float, s_t: float,
                  lam_t: float, variant: str, model_t: torch.Tensor | None = None) -> torch.Tensor:
    """UniP-p (``model_t`` None) or UniC-p (``model_t``: x0_hat at the predicted point) with p = len(hist), from
    x at the latest entry of ``hist`` ((lambda, x0_hat), oldest first) to (a_t, s_t, lam_t): Zhao et al. 2023,
    Algorithms 2 and 3 (data prediction, B(h) = h for bh1, e^h - 1 for bh2), written as their code and diffusers'
    UniPCMultistepScheduler (``multistep_uni_p_bh_update``, ``multistep_uni_c_bh_update``)."""
    lam_s, m0 = hist[-1]
    p = len(hist)
    h = lam_t - lam_s
    hh = -h  # the data-prediction form integrates in -lambda
    h_phi_1 = math.expm1(hh)  # e^(-h) - 1
    x_t = (s_t / s_s) * x - (a_t * h_phi_1) * m0  # the DDIM part, shared by predictor and corrector
    n_rhos = p - 1 if model_t is None else p
    if n_rhos == 0:
        return x_t
    b_h = hh if variant == "bh1" else h_phi_1
    rks = [(hist[-1 - k][0] - lam_s) / h for k in range(1, p)] + [1.0]
    d1s = [(hist[-1 - k][1] - m0) / rks[k - 1] for k in range(1, p)]
    if model_t is not None:
        d1s.append(model_t - m0)  # rk = 1: the new evaluation
    if (model_t is None and p == 2) or (model_t is not None and p == 1):
        rhos = [0.5]  # the simplified coefficient of the paper's code (second order either way)
    else:
        b, h_phi_k, factorial = [], h_phi_1 / hh - 1, 1  # b_i = i! phi_(i+1)(hh) / B(h), the paper's eq. 8
        for i in range(1, p + 1):
            b.append(h_phi_k * factorial / b_h)
            factorial *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        R = torch.tensor([[rk ** (i - 1) for rk in rks] for i in range(1, p + 1)], dtype=torch.float64)
        rhos = torch.linalg.solve(R[:n_rhos, :n_rhos], torch.tensor(b[:n_rhos], dtype=torch.float64)).tolist()
    return x_t - (a_t * b_h) * sum(rho * d for rho, d in zip(rhos, d1s))


@torch.no_grad()
def sample_unipc(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: Schedule,
    timesteps: Sequence[int],
    *,
    order: int = 2,
    variant: str = "bh2",
    generator: Generators = None,
    callback: Callback | None = None,
    clip_x0: bool | float = False,
) -> torch.Tensor:
    """UniPC (Zhao et al. 2023, Algorithm 3, data prediction): the multistep predictor UniP-``order`` then, with
    the next evaluation and no extra network call, the corrector UniC, x_T (B, ...) at ``timesteps[0]`` to x_0.
    variant: "bh1" (B(h) = h) or "bh2" (B(h) = e^h - 1, the paper's choice for guided sampling).

    As diffusers' UniPCMultistepScheduler by default (disable_corrector=[], lower_order_final=True,
    final_sigmas_type="zero"): the order warms up (min(order, i + 1)) and falls at the end (min(order, N - i), so
    the final step, to sigma = 0, is first order: x_0 = x0_hat); every step but the first corrects the previous
    prediction, and nothing corrects the final one. ``callback`` sees the corrected x_t with x0_hat, the prediction
    at the uncorrected x_t that UniC reuses. ``generator`` is unused (deterministic; shared signature).
    """
    _check_order(order, 3)
    if variant not in UNIPC_VARIANTS:
        raise ValueError(f"variant must be one of {UNIPC_VARIANTS}, got {variant!r}")
    ts = list(timesteps)
    n = len(ts)
    x = x_T
    hist: list[tuple[float, torch.Tensor]] = []  # (lambda, x0_hat) of the last ``order`` evaluations
    last = None  # (x at the previous timestep, its s, the predictor's order there)
    for i, t in enumerate(ts):
        t_next = ts[i + 1] if i + 1 < n else -1
        x0 = _predict_x0(denoiser, x, t, clip_x0)
        scales = _scales(schedule, t)
        if last is not None:  # UniC: correct the step that led here with the evaluation just made
            x_prev, s_prev, k_prev = last
            x = _unipc_update(x_prev, hist[-k_prev:], s_prev, *scales, variant, model_t=x0)
        if callback is not None:
            callback(i, t, x, x0)
        hist = (hist + [(scales[2], x0)])[-order:]
        k = min(order, n - i, i + 1)
        last = (x, scales[1], k)
        x = _unipc_update(x, hist[-k:], scales[1], *_scales(schedule, t_next), variant)
    return x


# ------------------------------------------------------------------------------- Karras et al. sigma samplers


def _sigma(schedule: Schedule, t: int) -> float:
    """sigma = sqrt((1 - alpha_bar) / alpha_bar) (Karras et al. 2022, table 1, VP); 0 at t = -1."""
    ab = alpha_bar_at(schedule, t)
    return math.sqrt((1.0 - ab) / ab)


def _unscale(x_T: torch.Tensor, schedule: Schedule, t0: int) -> torch.Tensor:
    """x~ = x_t / sqrt(alpha_bar[t0]) at the chain's first timestep."""
    ab = alpha_bar_at(schedule, t0)
    if ab <= 0:
        raise ValueError(f"alpha_bar[{t0}] = 0 (zero terminal SNR) makes sigma infinite; start the chain at a "
                         "lower timestep or use ddim, dpmpp or unipc")
    return x_T / math.sqrt(ab)


def _denoise_unscaled(denoiser: Denoiser, x_u: torch.Tensor, schedule: Schedule, t: int, clip_x0: bool | float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, D) for x~ at t: the VP input x_t = sqrt(alpha_bar) x~ the denoiser sees, and its x0_hat."""
    x = x_u * math.sqrt(alpha_bar_at(schedule, t))
    return x, _predict_x0(denoiser, x, t, clip_x0)


@torch.no_grad()
def sample_euler(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: Schedule,
    timesteps: Sequence[int],
    *,
    generator: Generators = None,
    callback: Callback | None = None,
    clip_x0: bool | float = False,
) -> torch.Tensor:
    """Euler on dx~/dsigma = (x~ - D(x~; sigma)) / sigma (Karras et al. 2022, eq. 4; k-diffusion
    ``sample_euler`` without churn), x_T (B, ...) at ``timesteps[0]`` to x_0. Mathematically DDIM (eta = 0).
    ``generator`` is unused (deterministic; shared signature)."""
    ts = list(timesteps)
    x_u = _unscale(x_T, schedule, ts[0])
    for i, t in enumerate(ts):
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        x, denoised = _denoise_unscaled(denoiser, x_u, schedule, t, clip_x0)
        if callback is not None:
            callback(i, t, x, denoised)
        sigma, sigma_next = _sigma(schedule, t), _sigma(schedule, t_next)
        x_u = x_u + (x_u - denoised) / sigma * (sigma_next - sigma)
    return x_u  # t = -1: alpha_bar = 1, so x_0 = x~


@torch.no_grad()
def sample_heun(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: Schedule,
    timesteps: Sequence[int],
    *,
    generator: Generators = None,
    callback: Callback | None = None,
    clip_x0: bool | float = False,
) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 1, deterministic: S_churn = 0), x_T (B, ...) at
    ``timesteps[0]`` to x_0; the final step, to sigma = 0, is Euler (alg. 1, line 8). 2N - 1 denoiser calls for
    N timesteps; the second call of step i is at timesteps[i + 1]. ``generator`` is unused (shared signature)."""
    ts = list(timesteps)
    x_u = _unscale(x_T, schedule, ts[0])
    for i, t in enumerate(ts):
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        x, denoised = _denoise_unscaled(denoiser, x_u, schedule, t, clip_x0)
        if callback is not None:
            callback(i, t, x, denoised)
        sigma, sigma_next = _sigma(schedule, t), _sigma(schedule, t_next)
        d = (x_u - denoised) / sigma
        x_euler = x_u + d * (sigma_next - sigma)
        if t_next < 0:
            x_u = x_euler
        else:  # the trapezoidal correction with the slope at the Euler point (alg. 1, lines 9-11)
            _, denoised_next = _denoise_unscaled(denoiser, x_euler, schedule, t_next, clip_x0)
            d_next = (x_euler - denoised_next) / sigma_next
            x_u = x_u + 0.5 * (d + d_next) * (sigma_next - sigma)
    return x_u


def ancestral_step(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """(sigma_down, sigma_up) for an ancestral step from sigma to sigma_next: sigma_up = min(sigma_next, eta
    sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2)), sigma_down = sqrt(sigma_next^2 - sigma_up^2)
    (k-diffusion ``get_ancestral_step``; eta = 1 is the DDPM posterior's variance)."""
    if eta == 0 or sigma_next == 0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - sigma_up**2), sigma_up


@torch.no_grad()
def sample_euler_ancestral(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: Schedule,
    timesteps: Sequence[int],
    *,
    eta: float = 1.0,
    generator: Generators = None,
    callback: Callback | None = None,
    clip_x0: bool | float = False,
) -> torch.Tensor:
    """Euler ancestral (k-diffusion ``sample_euler_ancestral``): an Euler step down to sigma_down, then fresh
    noise of std sigma_up (``ancestral_step``), x_T (B, ...) at ``timesteps[0]`` to x_0. eta in [0, 1] (above 1
    sigma_up is capped at sigma_next): 0 is Euler, 1 the usual ancestral sampler. Noise is drawn only when
    sigma_up > 0 (never on the final step) and only from ``generator``."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    ts = list(timesteps)
    x_u = _unscale(x_T, schedule, ts[0])
    for i, t in enumerate(ts):
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        x, denoised = _denoise_unscaled(denoiser, x_u, schedule, t, clip_x0)
        if callback is not None:
            callback(i, t, x, denoised)
        sigma, sigma_next = _sigma(schedule, t), _sigma(schedule, t_next)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, eta)
        x_u = x_u + (x_u - denoised) / sigma * (sigma_down - sigma)
        if sigma_up > 0:
            x_u = x_u + sigma_up * randn_like(x_u, generator)
    return x_u


# The samplers by their config names (configs/sampler/<name>.yaml).
SAMPLERS = {
    "ddim": sample_ddim,
    "ddpm": sample_ddpm,
    "dpmpp_2m": sample_dpmpp,
    "unipc": sample_unipc,
    "heun": sample_heun,
    "euler": sample_euler,
    "euler_a": sample_euler_ancestral,
    "flow_euler": sample_flow_euler,  # flow models only (diffusion=flow): in the flow's own time
    "flow_heun": sample_flow_heun,
    "flow_sde": sample_flow_sde,
}
FLOW_SAMPLERS = ("flow_euler", "flow_heun", "flow_sde")
