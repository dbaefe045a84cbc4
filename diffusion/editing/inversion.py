"""DDIM inversion: the deterministic DDIM update run backwards, from x0 to x_T (Song et al. 2021, sec. 4.3)."""

from __future__ import annotations

from typing import Sequence

import torch

from diffusion.denoiser import Denoiser
from diffusion.samplers import Callback
from diffusion.schedules import Schedule


def _ab(schedule: Schedule, t: int) -> float:
    return 1.0 if t < 0 else float(schedule.alphas_cumprod[t])


@torch.no_grad()
def invert_ddim(
    denoiser: Denoiser,
    x0: torch.Tensor,
    schedule: Schedule,
    timesteps: Sequence[int],
    *,
    fixed_point_iters: int = 0,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Encode x0 to the x_T from which ``sample_ddim(eta=0)`` over the same ``timesteps`` returns x0.

    Each step goes from t_cur to the next larger t along the reversed list:
        x_next = sqrt(ab_next) x0_hat + sqrt(1 - ab_next) eps_hat,  eps_hat = eps(x_cur, t_next)
    (the network sees x_cur labelled t_next, as in Mokady et al. 2023 and diffusers' DDIMInverseScheduler).
    ``fixed_point_iters`` > 0 refines eps_hat = eps(x_next, t_next) by fixed-point iteration, so that the
    sampler's own step from x_next lands back on x_cur (Pan et al. 2023, "Effective real image editing with
    accelerated iterative diffusion inversion"); the round trip error then falls towards zero.
    """
    ts = list(timesteps)[::-1]  # increasing
    x = x0
    for i, t_next in enumerate(ts):
        t_cur = ts[i - 1] if i > 0 else -1
        ab_cur, ab_next = _ab(schedule, t_cur), _ab(schedule, t_next)
        t_batch = torch.full((x.shape[0],), t_next, device=x.device, dtype=torch.long)
        x_next = x  # the first eps is evaluated at x_cur; refinements at the current estimate of x_next
        for _ in range(fixed_point_iters + 1):
            eps = denoiser(x_next, t_batch).eps
            x0_hat = (x - (1 - ab_cur) ** 0.5 * eps) / ab_cur**0.5
            x_next = ab_next**0.5 * x0_hat + (1 - ab_next) ** 0.5 * eps
        if callback is not None:
            callback(i, t_next, x_next, x0_hat)
        x = x_next
    return x
