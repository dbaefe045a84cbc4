"""Prediction targets eps, x0 and v: pure conversions (Salimans & Ho 2022, sec. 4 and appendix D), and one
``Parametrization`` object per objective that owns target, conversion, variance split and loss weighting.

Every function takes ``alpha_bar`` broadcastable against ``x_t`` (a float or a (B, 1, 1, 1) tensor).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from diffusion.losses import weighted_mse

PREDICTIONS = ("eps", "x0", "v")
WEIGHTINGS = ("uniform", "min_snr")


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


class Parametrization:
    """What a network's output means, on a VP schedule: one object per objective, used alike by the loss and
    by every sampler (as EDM's ``VPPrecond``/``EDMLoss`` and k-diffusion's ``external.py`` wrappers are).

    It owns the regression target, the conversion of an output to ``Prediction(eps, x0)``, the split of a
    learned-variance output into its mean part and its variance part, and the loss weighting. A new objective
    is one new subclass.
    """

    name: str = ""

    def __init__(self, weighting: str = "uniform", snr_gamma: float = 5.0):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"loss weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.weighting, self.snr_gamma = weighting, snr_gamma

    def __repr__(self) -> str:
        return f"{type(self).__name__}(weighting={self.weighting!r}, snr_gamma={self.snr_gamma})"

    def target(self, x0: torch.Tensor, eps: torch.Tensor, alpha_bar) -> torch.Tensor:
        """The regression target for x_t = sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps."""
        raise NotImplementedError

    def convert(self, out: torch.Tensor, x_t: torch.Tensor, alpha_bar) -> Prediction:
        """(eps, x0) from the mean part of a network output (shaped like x_t)."""
        raise NotImplementedError

    def min_snr_weight(self, snr: torch.Tensor) -> torch.Tensor:
        """The x0-space weight min(snr, gamma) (Hang et al. 2023, eq. 8-9) written for this target."""
        raise NotImplementedError

    @staticmethod
    def split(out: torch.Tensor, channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mean part (B, C, ...), learned-variance part or None) of an output with C or 2C channels."""
        return out[:, :channels], (out[:, channels:] if out.shape[1] > channels else None)

    def predict(self, out: torch.Tensor, x_t: torch.Tensor, alpha_bar) -> Prediction:
        """(eps, x0) from a raw network output: its mean part, converted."""
        return self.convert(self.split(out, x_t.shape[1])[0], x_t, alpha_bar)

    def loss_weight(self, snr: torch.Tensor) -> torch.Tensor:
        """Per-sample weight of the MSE on this target: 1 (uniform) or the min-SNR-gamma weight."""
        return torch.ones_like(snr) if self.weighting == "uniform" else self.min_snr_weight(snr)

    def loss(self, out: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, alpha_bar, snr: torch.Tensor
             ) -> torch.Tensor:
        """Weighted batch mean of the per-sample MSE between the mean part of ``out`` and the target
        (Ho et al. 2020, eq. 14). out: (B, C or 2C, H, W); x0, eps: (B, C, H, W); snr: (B,)."""
        mean, _ = self.split(out, x0.shape[1])
        weight = self.loss_weight(snr.to(torch.float64))
        return weighted_mse(mean, self.target(x0, eps, alpha_bar), weight)


class EpsPrediction(Parametrization):
    """The network predicts the noise eps (Ho et al. 2020)."""

    name = "eps"

    def target(self, x0, eps, alpha_bar):
        return eps

    def convert(self, out, x_t, alpha_bar):
        # with alpha_bar = 0 (zero terminal SNR) x0 is 0/0 = nan: Lin et al. 2024 recommend v-prediction there
        return Prediction(out, x0_from_eps(x_t, out, alpha_bar))

    def min_snr_weight(self, snr):
        return (self.snr_gamma / snr).clamp(max=1.0)  # = min(snr, gamma)/snr, and 1 at snr = 0 (gamma/0 = inf)


class X0Prediction(Parametrization):
    """The network predicts the clean image x0."""

    name = "x0"

    def target(self, x0, eps, alpha_bar):
        return x0

    def convert(self, out, x_t, alpha_bar):
        return Prediction(eps_from_x0(x_t, out, alpha_bar), out)

    def min_snr_weight(self, snr):
        return snr.clamp(max=self.snr_gamma)


class VPrediction(Parametrization):
    """The network predicts v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0 (Salimans & Ho 2022)."""

    name = "v"

    def target(self, x0, eps, alpha_bar):
        return v_from_eps_x0(eps, x0, alpha_bar)

    def convert(self, out, x_t, alpha_bar):
        return Prediction(eps_from_v(x_t, out, alpha_bar), x0_from_v(x_t, out, alpha_bar))

    def min_snr_weight(self, snr):
        return snr.clamp(max=self.snr_gamma) / (snr + 1)


PARAMETRIZATIONS: dict[str, type[Parametrization]] = {c.name: c for c in (EpsPrediction, X0Prediction, VPrediction)}


def make_parametrization(prediction: str, weighting: str = "uniform", snr_gamma: float = 5.0) -> Parametrization:
    """The parametrization named by a config's ``diffusion.prediction`` (eps, x0 or v)."""
    if prediction not in PARAMETRIZATIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    return PARAMETRIZATIONS[prediction](weighting, snr_gamma)

