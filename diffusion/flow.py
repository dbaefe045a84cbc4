"""Samplers of flow models in the flow's own time: Euler and Heun on the ODE dx/dt = v(x, t) and an
Euler-Maruyama SDE with the same marginals, along x = (1 - t) x0 + t eps (diffusion=flow; Liu et al. 2023,
Esser et al. 2024, Ma et al. 2024 "SiT" for the SDE).

They keep the samplers' signature and conventions (``diffusion/samplers.py``): a decreasing list of integer
timesteps, the last step to t = -1 (flow time 0, the clean image), one ``callback(i, t, x_t, x0_hat)`` per step
with the VP state, noise only from ``randn_like(x, generator)``. The chain carries the flow state x = x_t / (a + s)
(a = sqrt(alpha_bar), s = sqrt(1 - alpha_bar)) and gives the denoiser x_t; the velocity is eps_hat - x0_hat. At the
ends the two states agree (t = 1: pure noise; t = 0: the image), so x_T and the result are the usual ones.

Euler in flow time is DDIM (eta = 0) exactly: x + (t' - t)(eps_hat - x0_hat) = (1 - t') x0_hat + t' eps_hat.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from diffusion.denoiser import Denoiser
from diffusion.parametrization import Prediction
from diffusion.samplers import Callback, Generators, _t_batch, clip_prediction, randn_like
from diffusion.schedules import Schedule
from diffusion.steps import alpha_bar_at


def _time(schedule: Schedule, t: int) -> tuple[float, float]:
    """(flow time, a + s) at timestep t; t = -1 gives (0, 1)."""
    ab = alpha_bar_at(schedule, t)
    a, s = math.sqrt(ab), math.sqrt(1.0 - ab)
    return s / (a + s), a + s


def _predict(denoiser: Denoiser, x: torch.Tensor, schedule: Schedule, t: int, clip_x0: bool | float
             ) -> tuple[torch.Tensor, Prediction]:
    """(VP state, prediction) for the flow state x at timestep t; x0_hat thresholded when ``clip_x0``."""
    _, scale = _time(schedule, t)
    x_t = x * scale
    return x_t, clip_prediction(denoiser(x_t, _t_batch(x, t)), x_t, alpha_bar_at(schedule, t), clip_x0)


def _start(x_T: torch.Tensor, schedule: Schedule, t0: int) -> torch.Tensor:
    return x_T / _time(schedule, t0)[1]


@torch.no_grad()
def sample_flow_euler(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: Schedule,
    timesteps: Sequence[int],
    *,
    generator: Generators = None,
    callback: Callback | None = None,
    clip_x0: bool | float = False,
) -> torch.Tensor:
    """Euler on dx/dt = eps_hat - x0_hat, from timesteps[0] down to flow time 0; one call per timestep.
    ``generator`` is unused (deterministic; shared signature)."""
    ts = list(timesteps)
    x = _start(x_T, schedule, ts[0])
    for i, t in enumerate(ts):
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        x_t, pred = _predict(denoiser, x, schedule, t, clip_x0)
        if callback is not None:
            callback(i, t, x_t, pred.x0)
        x = x + (_time(schedule, t_next)[0] - _time(schedule, t)[0]) * (pred.eps - pred.x0)
    return x


@torch.no_grad()
def sample_flow_heun(
    denoiser: Denoiser,
    x_T: torch.Tensor,
    schedule: Schedule,
    timesteps: Sequence[int],
    *,
    generator: Generators = None,
    callback: Callback | None = None,
    clip_x0: bool | float = False,
) -> torch.Tensor:
    """Heun (the explicit trapezoidal rule) on dx/dt = eps_hat - x0_hat: an Euler step to the next time, then the
    mean of the two slopes; the final step, to flow time 0, is Euler (as Karras et al. 2022, alg. 1). 2N - 1
    calls for N timesteps. ``generator`` is unused (deterministic; shared signature)."""
    ts = list(timesteps)
    x = _start(x_T, schedule, ts[0])
    for i, t in enumerate(ts):
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        x_t, pred = _predict(denoiser, x, schedule, t, clip_x0)
        if callback is not None:
            callback(i, t, x_t, pred.x0)
        dt = _time(schedule, t_next)[0] - _time(schedule, t)[0]
        v = pred.eps - pred.x0
        x_euler = x + dt * v
        if t_next < 0:
            x = x_euler
        else:
            _, pred_next = _predict(denoiser, x_euler, schedule, t_next, clip_x0)
            x = x + dt * 0.5 * (v + pred_next.eps - pred_next.x0)
    return x


@torch.no_grad()
def sample_flow_sde(
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
    """Euler-Maruyama on the reverse-time SDE with the flow's marginals, dx = [v - (w_t / 2) score] dt +
    sqrt(w_t) dW, with diffusion w_t = eta t (SiT's "sigma" choice) and score = -eps_hat / t. A step from t down
    to t' = t - h: x - h (v + eta eps_hat / 2) + sqrt(eta t h) z. eta = 0 is Euler; the final step, to flow time
    0, is Euler (x_0 = x0_hat, no noise). Noise only from ``generator``."""
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    ts = list(timesteps)
    x = _start(x_T, schedule, ts[0])
    for i, t in enumerate(ts):
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        x_t, pred = _predict(denoiser, x, schedule, t, clip_x0)
        if callback is not None:
            callback(i, t, x_t, pred.x0)
        time, time_next = _time(schedule, t)[0], _time(schedule, t_next)[0]
        h, v = time - time_next, pred.eps - pred.x0
        if t_next < 0 or eta == 0:
            x = x - h * v
        else:
            x = x - h * (v + 0.5 * eta * pred.eps) + math.sqrt(eta * time * h) * randn_like(x, generator)
    return x
