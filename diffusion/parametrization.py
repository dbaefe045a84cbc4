"""Prediction targets eps, x0 and v as pure conversions (Salimans & Ho 2022, sec. 4 and appendix D).

Every function takes ``alpha_bar`` broadcastable against ``x_t`` (a float or a (B, 1, 1, 1) tensor).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

PREDICTIONS = ("eps", "x0", "v")


class Prediction(NamedTuple):
    """What a denoiser returns for x_t: the noise and the clean-image estimates, both shaped like x_t."""

    eps: torch.Tensor
    x0: torch.Tensor


def x0_from_eps(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar) -> torch.Tensor:
    """x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)  (Ho et al. 2020, eq. 4 solved for x0)."""
    return (x_t - (1 - alpha_bar) ** 0.5 * eps) / alpha_bar**0.5


def eps_from_x0(x_t: torch.Tensor, x0: torch.Tensor, alpha_bar) -> torch.Tensor:
    """eps = (x_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar)."""
    return (x_t - alpha_bar**0.5 * x0) / (1 - alpha_bar) ** 0.5


def v_from_eps_x0(eps: torch.Tensor, x0: torch.Tensor, alpha_bar) -> torch.Tensor:
    """v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0  (Salimans & Ho 2022, eq. 10 analogue)."""
    return alpha_bar**0.5 * eps - (1 - alpha_bar) ** 0.5 * x0


def x0_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar) -> torch.Tensor:
    """x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v."""
    return alpha_bar**0.5 * x_t - (1 - alpha_bar) ** 0.5 * v


def eps_from_v(x_t: torch.Tensor, v: torch.Tensor, alpha_bar) -> torch.Tensor:
    """eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v."""
    return (1 - alpha_bar) ** 0.5 * x_t + alpha_bar**0.5 * v


def target_for(prediction: str, x0: torch.Tensor, eps: torch.Tensor, alpha_bar) -> torch.Tensor:
    """The regression target of a network trained to predict ``prediction`` (eps, x0 or v)."""
    if prediction == "eps":
        return eps
    if prediction == "x0":
        return x0
    if prediction == "v":
        return v_from_eps_x0(eps, x0, alpha_bar)
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")


def to_prediction(prediction: str, out: torch.Tensor, x_t: torch.Tensor, alpha_bar) -> Prediction:
    """Turn a network output for target ``prediction`` into (eps, x0).

    With eps-prediction at alpha_bar = 0 (zero terminal SNR) x0 is undefined; it is returned as 0/0 = nan
    by design of the parametrization (Lin et al. 2024 recommend v-prediction there).
    """
    if prediction == "eps":
        return Prediction(out, x0_from_eps(x_t, out, alpha_bar))
    if prediction == "x0":
        return Prediction(eps_from_x0(x_t, out, alpha_bar), out)
    if prediction == "v":
        return Prediction(eps_from_v(x_t, out, alpha_bar), x0_from_v(x_t, out, alpha_bar))
    raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
