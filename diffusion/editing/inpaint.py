"""Inpainting: a denoiser wrapper that pins the known region, and RePaint's resampling schedule."""

from __future__ import annotations

from typing import Sequence

import torch

from diffusion.denoiser import Denoiser
from diffusion.forward_process import gather, renoise
from diffusion.parametrization import Prediction, eps_from_x0
from diffusion.samplers import Callback, Generators, randn_like, threshold_x0
from diffusion.schedules import Schedule
from diffusion.steps import alpha_bar_at, ddpm_step


def inpaint_denoiser(denoiser: Denoiser, schedule: Schedule, x_known: torch.Tensor, keep: torch.Tensor) -> Denoiser:
    """Replace the known region (keep = 1) of the prediction by the original image.

    x0_hat <- keep x_known + (1 - keep) x0_hat, and eps_hat in the known region is the noise that x_t
    actually carries there, so every sampler step moves the known region along q(x_t | x_known): the
    replacement method of Song et al. 2021 (appendix I) / Lugmayr et al. 2022 (eq. 8), as a wrapper.
    At the last step (alpha_bar = 1) the output equals x_known there.
    """

    def wrapped(x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        pred = denoiser(x_t, t)
        ab = gather(schedule.alphas_cumprod, t, x_t)
        x0 = keep * x_known + (1 - keep) * pred.x0
        eps = keep * eps_from_x0(x_t, x_known, ab) + (1 - keep) * pred.eps
        return Prediction(eps, x0)

    return wrapped


def repaint_moves(timesteps: Sequence[int], jump_length: int = 10, resamples: int = 10) -> list[tuple[int, int]]:
    """RePaint's schedule (Lugmayr et al. 2022, sec. 4.2, fig. 4) over a decreasing list of timesteps:
    a list of (t_from, t_to) moves, t_to = -1 being the clean image. After every ``jump_length`` denoising
    moves, jump back up ``jump_length`` steps (re-noise) and denoise again, ``resamples`` - 1 extra times."""
    ts = [*timesteps, -1]
    moves: list[tuple[int, int]] = []
    i = 0
    while i < len(ts) - 1:
        end = min(i + jump_length, len(ts) - 1)
        repeats = resamples if ts[end] >= 0 else 1  # the block that reaches the clean image is not redone
        for r in range(repeats):
            moves += [(ts[k], ts[k + 1]) for k in range(i, end)]
            if r < repeats - 1:
                moves.append((ts[end], ts[i]))  # up: re-noise back to where this block started
        i = end
    return moves


@torch.no_grad()
def sample_repaint(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: Schedule,
    timesteps: Sequence[int],
    *,
    jump_length: int = 10,
    resamples: int = 10,
    variance: str = "beta_tilde",
    clip_x0: bool | float = False,
    generator: Generators = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Ancestral sampling along ``repaint_moves``: down moves are ``ddpm_step`` (with ``variance``, on x0_hat
    thresholded by ``clip_x0`` as in ``sample_ddpm``), up moves draw q(x_to | x_from) with ``renoise``."""
    x = x_T
    for i, (t_from, t_to) in enumerate(repaint_moves(timesteps, jump_length, resamples)):
        if t_to > t_from:  # up: forward-noise
            x = renoise(x, alpha_bar_at(schedule, t_from), alpha_bar_at(schedule, t_to), randn_like(x, generator))
            continue
        pred = denoiser(x, torch.full((x.shape[0],), t_from, device=x.device, dtype=torch.long))
        pred = Prediction(pred.eps, threshold_x0(pred.x0, clip_x0))
        if callback is not None:
            callback(i, t_from, x, pred.x0)
        noise = randn_like(x, generator) if t_to >= 0 else None
        x = ddpm_step(schedule, pred, x, t_from, t_to, noise, variance=variance)
    return x
