"""Wrap a network as a denoiser: a callable (x_t, t) -> Prediction(eps, x0) closed over its condition."""

from __future__ import annotations

from typing import Callable

import torch

from diffusion.forward_process import gather
from diffusion.parametrization import Parametrization, Prediction
from diffusion.schedules import Schedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], Prediction]

# A network's condition is None, a label tensor (B,), a tuple of batched tensors (a text model's
# TextCond(tokens, mask, pooled)), or a tuple holding conditions (a super-resolution model's SRCond). The helpers
# below treat them all alike, so nothing here knows the type.


def cond_map(cond, fn: Callable[[torch.Tensor], torch.Tensor]):
    """``fn`` applied to every tensor of a condition (None stays None)."""
    if cond is None:
        return None
    if isinstance(cond, torch.Tensor):
        return fn(cond)
    return type(cond)(*(cond_map(x, fn) for x in cond))  # nested: a super-resolution model's SRCond


def cond_cat(a, b):
    """Two conditions concatenated along the batch (for the batched CFG pass)."""
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    return type(a)(*(cond_cat(x, y) for x, y in zip(a, b)))


def cond_slice(cond, start: int, stop: int):
    """Samples start..stop-1 of a batched condition."""
    return cond_map(cond, lambda x: x[start:stop])


def net_denoiser(
    net: Callable, schedule: Schedule, parametrization: Parametrization, cond: torch.Tensor | None = None
) -> Denoiser:
    """Denoiser for a network ``net(x_t, t, cond)`` whose output ``parametrization`` interprets (its mean part
    only, so a network that also learns a variance works)."""

    def denoiser(x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        alpha_bar = gather(schedule.alphas_cumprod, t, x_t)
        return parametrization.predict(net(parametrization.network_input(x_t, alpha_bar), t, cond), x_t, alpha_bar)

    return denoiser
