"""Prediction targets eps, x0, v and the flow velocity eps - x0: pure conversions (Salimans & Ho 2022, sec. 4 and
appendix D), and one ``Parametrization`` object per objective that owns target, conversion, variance split, loss
weighting and the training distribution of t.

Every function takes ``alpha_bar`` broadcastable against ``x_t`` (a float or a (B, 1, 1, 1) tensor).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from diffusion.losses import weighted_mse

PREDICTIONS = ("eps", "x0", "v", "flow")
WEIGHTINGS = ("uniform", "min_snr")
TIME_SAMPLINGS = ("uniform", "logit_normal")


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


def flow_time(alpha_bar):
    """The rectified-flow time t = s / (a + s) (a = sqrt(alpha_bar), s = sqrt(1 - alpha_bar)) with the same
    signal-to-noise ratio as alpha_bar: (1 - t)^2 / t^2 = a^2 / s^2. 0 at alpha_bar = 1, 1 at alpha_bar = 0."""
    a, s = alpha_bar**0.5, (1 - alpha_bar) ** 0.5
    return s / (a + s)


def flow_from_vp(x_t: torch.Tensor, alpha_bar) -> torch.Tensor:
    """The flow state (1 - t) x0 + t eps of the VP state x_t = a x0 + s eps: x_t / (a + s)."""
    return x_t / (alpha_bar**0.5 + (1 - alpha_bar) ** 0.5)


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

    def __init__(self, weighting: str = "uniform", snr_gamma: float = 5.0, time_sampling: str = "uniform",
                 logit_mean: float = 0.0, logit_std: float = 1.0):
        if weighting not in WEIGHTINGS:
            raise ValueError(f"loss weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"time sampling must be one of {TIME_SAMPLINGS}, got {time_sampling!r}")
        if not logit_std > 0:
            raise ValueError(f"logit_std must be > 0, got {logit_std}")
        self.weighting, self.snr_gamma = weighting, snr_gamma
        self.time_sampling, self.logit_mean, self.logit_std = time_sampling, logit_mean, logit_std

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(weighting={self.weighting!r}, snr_gamma={self.snr_gamma}, "
                f"time_sampling={self.time_sampling!r})")

    def sample_timesteps(self, b: int, num_timesteps: int, generator: torch.Generator,
                         interval: tuple[int, int] | None = None) -> torch.Tensor:
        """(b,) training timesteps in [0, T-1]: uniform, or logit-normal (Esser et al. 2024, eq. 19): u =
        sigmoid(logit_mean + logit_std n) in (0, 1), then the timestep i with u in (i/T, (i+1)/T] (timestep i
        sits at u_i = (i+1)/T). ``interval`` = (lo, hi) restricts them to lo <= t < hi, each distribution
        truncated to it (an eDiff-I expert, Balaji et al. 2022, Sec. 4)."""
        if interval is not None and tuple(interval) != (0, num_timesteps):
            return self._sample_in(b, num_timesteps, generator, *interval)
        if self.time_sampling == "uniform":
            return torch.randint(0, num_timesteps, (b,), generator=generator)
        u = torch.sigmoid(self.logit_mean + self.logit_std * torch.randn(b, generator=generator, dtype=torch.float64))
        return (torch.ceil(u * num_timesteps).long() - 1).clamp(0, num_timesteps - 1)

    def _sample_in(self, b: int, num_timesteps: int, generator: torch.Generator, lo: int, hi: int) -> torch.Tensor:
        if not 0 <= lo < hi <= num_timesteps:
            raise ValueError(f"the timestep interval [{lo}, {hi}) must lie inside [0, {num_timesteps})")
        if self.time_sampling == "uniform":
            return torch.randint(lo, hi, (b,), generator=generator)
        # timestep i <=> u in (i/T, (i+1)/T], so lo <= i < hi <=> n in (a, c] with a, c the logits of lo/T, hi/T:
        # draw n from the normal truncated there by inverting its CDF
        def cdf(i: int) -> torch.Tensor:
            logit = torch.logit(torch.tensor(i / num_timesteps, dtype=torch.float64))  # -inf at 0, inf at T
            return torch.special.ndtr((logit - self.logit_mean) / self.logit_std)
        p_lo, p_hi = cdf(lo), cdf(hi)
        p = p_lo + (p_hi - p_lo) * torch.rand(b, generator=generator, dtype=torch.float64)
        u = torch.sigmoid(self.logit_mean + self.logit_std * torch.special.ndtri(p))
        return (torch.ceil(u * num_timesteps).long() - 1).clamp(lo, hi - 1)

    def network_input(self, x_t: torch.Tensor, alpha_bar) -> torch.Tensor:
        """What the network is given for the VP state x_t: x_t itself (the flow objective overrides this)."""
        return x_t

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


class FlowPrediction(Parametrization):
    """Rectified flow / conditional flow matching (Liu et al. 2023; Lipman et al. 2023; Esser et al. 2024): on
    the path x = (1 - t) x0 + t eps the network is given x itself (``network_input``: the VP state rescaled) and
    predicts the velocity dx/dt = eps - x0. Any VP schedule fixes t through its SNR (``flow_time``); with
    ``schedules.flow_schedule`` the times are the flow's own (diffusion=flow)."""

    name = "flow"

    def network_input(self, x_t, alpha_bar):
        return flow_from_vp(x_t, alpha_bar)

    def target(self, x0, eps, alpha_bar):
        return eps - x0

    def convert(self, out, x_t, alpha_bar):
        x, t = flow_from_vp(x_t, alpha_bar), flow_time(alpha_bar)
        return Prediction(x + (1 - t) * out, x - t * out)  # eps, x0: exact for x = (1 - t) x0 + t eps

    def min_snr_weight(self, snr):
        return snr.clamp(max=self.snr_gamma) / (1 + snr.sqrt()) ** 2  # x0 error = t * velocity error


PARAMETRIZATIONS: dict[str, type[Parametrization]] = {
    c.name: c for c in (EpsPrediction, X0Prediction, VPrediction, FlowPrediction)}


def make_parametrization(prediction: str, weighting: str = "uniform", snr_gamma: float = 5.0,
                         time_sampling: str = "uniform", logit_mean: float = 0.0, logit_std: float = 1.0
                         ) -> Parametrization:
    """The parametrization named by a config's ``diffusion.prediction`` (eps, x0, v or flow)."""
    if prediction not in PARAMETRIZATIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    return PARAMETRIZATIONS[prediction](weighting, snr_gamma, time_sampling, logit_mean, logit_std)

