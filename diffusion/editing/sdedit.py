"""SDEdit's start point: noise the input to t0 = strength * T, then run any sampler from there."""

from __future__ import annotations

import torch

from diffusion.forward_process import add_noise
from diffusion.samplers import Generators, make_timesteps, randn_like
from diffusion.schedules import Schedule


def sdedit_start(
    x0: torch.Tensor, schedule: Schedule, strength: float, steps: int, generator: Generators = None
) -> tuple[torch.Tensor, list[int]]:
    """x_t0 ~ q(x_t0 | x0) with t0 = round(strength T) - 1, and the sampler's timesteps from t0 down
    (Meng et al. 2022, sec. 3). ``steps`` is the step count of a full chain; a partial chain gets
    round(strength * steps) of them, so the cost is about ``strength`` of full sampling.
    strength 0 returns x0 and no timesteps (the input unchanged); strength 1 starts from T-1 (generation).
    """
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    T = schedule.num_timesteps
    t0 = round(strength * T) - 1
    if t0 < 0:
        return x0, []
    x_t0 = add_noise(x0, randn_like(x0, generator), float(schedule.alphas_cumprod[t0]))
    return x_t0, make_timesteps(T, max(1, round(strength * steps)), start=t0)
