"""Noise schedules as data: an immutable ``Schedule`` holding alpha_bar, built by named functions."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class Schedule:
    """alpha_bar[t] for t = 0..T-1 in float64; everything else derives from it."""

    alphas_cumprod: torch.Tensor  # (T,) float64

    def __post_init__(self) -> None:
        ab = self.alphas_cumprod
        if ab.dtype != torch.float64 or ab.ndim != 1 or len(ab) < 1:
            raise ValueError("alphas_cumprod must be a 1-D float64 tensor")
        if not (ab[0] <= 1) or not bool((ab >= 0).all()) or not bool((ab[1:] < ab[:-1]).all()):
            raise ValueError("alphas_cumprod must lie in [0, 1] and decrease strictly")

    @property
    def num_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    @property
    def alphas_cumprod_prev(self) -> torch.Tensor:
        """alpha_bar[t-1] with alpha_bar[-1] = 1, shape (T,)."""
        return torch.cat([self.alphas_cumprod.new_ones(1), self.alphas_cumprod[:-1]])

    @property
    def betas(self) -> torch.Tensor:
        """beta[t] = 1 - alpha_bar[t] / alpha_bar[t-1], shape (T,)."""
        return 1.0 - self.alphas_cumprod / self.alphas_cumprod_prev

    @property
    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio alpha_bar / (1 - alpha_bar), shape (T,); inf never occurs since beta[0] > 0."""
        ab = self.alphas_cumprod
        return ab / (1.0 - ab)


def rescale_zero_terminal_snr(schedule: Schedule) -> Schedule:
    """Shift and scale sqrt(alpha_bar) so alpha_bar[T-1] = 0 exactly and alpha_bar[0] is kept.

    Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Algorithm 1.
    """
    s = schedule.alphas_cumprod.sqrt()
    s0, sT = s[0].clone(), s[-1].clone()
    s = (s - sT) * s0 / (s0 - sT)
    ab = s**2
    ab[-1] = 0.0  # exact, not a rounding residue
    return Schedule(ab)


def _finish(alphas_cumprod: torch.Tensor, zero_terminal_snr: bool) -> Schedule:
    schedule = Schedule(alphas_cumprod.to(torch.float64))
    return rescale_zero_terminal_snr(schedule) if zero_terminal_snr else schedule


def linear_schedule(
    timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02, zero_terminal_snr: bool = False
) -> Schedule:
    """Linear betas (Ho et al. 2020), rescaled by 1000/T so any T spans the same noise range (Nichol &
    Dhariwal 2021, `get_named_beta_schedule`)."""
    scale = 1000.0 / timesteps
    betas = torch.linspace(scale * beta_start, scale * beta_end, timesteps, dtype=torch.float64)
    return _finish(torch.cumprod(1.0 - betas.clamp(max=0.999), 0), zero_terminal_snr)


def cosine_schedule(timesteps: int = 1000, s: float = 0.008, zero_terminal_snr: bool = False) -> Schedule:
    """alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/T + s)/(1 + s)) pi/2) (Nichol & Dhariwal 2021, eq. 17),
    with beta clipped at 0.999 as in the paper."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1.0 - f[1:] / f[:-1]).clamp(max=0.999)
    return _finish(torch.cumprod(1.0 - betas, 0), zero_terminal_snr)


def sigmoid_schedule(
    timesteps: int = 1000, start: float = -3.0, end: float = 3.0, tau: float = 1.0, zero_terminal_snr: bool = False
) -> Schedule:
    """alpha_bar(t) = (sigmoid(end/tau) - sigmoid(((t/T)(end-start)+start)/tau)) / (sigmoid(end/tau) -
    sigmoid(start/tau)), so alpha_bar(0) = 1 and alpha_bar(T) = 0 (Chen 2023, "On the Importance of Noise
    Scheduling", Algorithm 1), beta clipped at 0.999."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))
    f = (v_end - torch.sigmoid((steps * (end - start) + start) / tau)) / (v_end - v_start)
    betas = (1.0 - f[1:] / f[:-1]).clamp(min=0.0, max=0.999)
    # f[0] = 1 exactly, so beta[0] may be ~1e-8; keep it strictly positive for a strictly decreasing alpha_bar.
    betas = betas.clamp(min=1e-8)
    return _finish(torch.cumprod(1.0 - betas, 0), zero_terminal_snr)


def flow_schedule(timesteps: int = 1000, shift: float = 1.0) -> Schedule:
    """The rectified-flow path x = (1 - t) x0 + t eps (Liu et al. 2023; Esser et al. 2024) on T discrete times
    t_i = shift u_i / (1 + (shift - 1) u_i), u_i = (i + 1)/T (SD3 eq. 23's resolution shift; 1 = none), so
    t_{T-1} = 1 (pure noise). Written as the VP schedule with the same signal-to-noise ratio: alpha_bar =
    (1 - t)^2 / ((1 - t)^2 + t^2), a VP x_t being the flow's x divided by sqrt((1 - t)^2 + t^2). Zero terminal
    SNR: alpha_bar[T-1] = 0."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    if not shift > 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    u = torch.arange(1, timesteps + 1, dtype=torch.float64) / timesteps
    t = shift * u / (1 + (shift - 1) * u)
    return Schedule((1 - t) ** 2 / ((1 - t) ** 2 + t**2))


def shifted_cosine_schedule(
    timesteps: int = 1000,
    resolution: int = 64,
    base_resolution: int = 64,
    interpolate_base: int | None = None,
    logsnr_min: float = -15.0,
    logsnr_max: float = 15.0,
) -> Schedule:
    """The cosine log-SNR schedule shifted for the image resolution (Hoogeboom et al. 2023, "simple diffusion",
    Sec. 3.1 and its `logsnr_schedule_cosine_shifted`), on T discrete times t_i = (i + 1)/T, alpha_bar =
    sigmoid(logsnr).

    The cosine schedule logsnr(t) = -2 log tan(pi t / 2) is clipped to [logsnr_min, logsnr_max] by mapping t into
    [t_min, t_max], t_min = atan(exp(-logsnr_max / 2)), t_max = atan(exp(-logsnr_min / 2)):
    logsnr_cos(t) = -2 log tan(t_min + t (t_max - t_min)) (the paper's `logsnr_schedule_cosine`). Shifting it,
    logsnr_shift(t; d) = logsnr_cos(t) + 2 log(d / resolution), makes the noisy image, average-pooled to d x d
    (which multiplies its SNR by (resolution / d)^2), see the plain cosine schedule (d = base_resolution; the
    paper's reference is 64). With interpolate_base, the two shifted schedules are mixed over t (Sec. 3.1,
    interpolated schedule; the same formula as lucidrains/simple-diffusion's `logsnr_schedule_interpolated`):
    logsnr(t) = t logsnr_shift(t; noise_d_low) + (1 - t) logsnr_shift(t; noise_d_high) with noise_d_low =
    base_resolution and noise_d_high = interpolate_base, so the base_resolution shift governs high noise
    (t -> 1) and the interpolate_base shift low noise (t -> 0); the paper's 512 x 512 setting mixes 32 and 256.
    Ends: logsnr(t_{T-1}) = logsnr_min + 2 log(base_resolution / resolution); no zero terminal SNR.
    """
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    if resolution < 1 or base_resolution < 1 or (interpolate_base is not None and interpolate_base < 1):
        raise ValueError(f"resolutions must be >= 1, got {resolution}, {base_resolution}, {interpolate_base}")
    if not logsnr_min < logsnr_max:
        raise ValueError(f"logsnr_min must be < logsnr_max, got {logsnr_min} and {logsnr_max}")
    t = torch.arange(1, timesteps + 1, dtype=torch.float64) / timesteps
    t_min, t_max = math.atan(math.exp(-0.5 * logsnr_max)), math.atan(math.exp(-0.5 * logsnr_min))
    logsnr = -2 * torch.log(torch.tan(t_min + t * (t_max - t_min)))
    shift = 2 * math.log(base_resolution / resolution)
    if interpolate_base is None:
        logsnr = logsnr + shift
    else:
        logsnr = t * (logsnr + shift) + (1 - t) * (logsnr + 2 * math.log(interpolate_base / resolution))
    alphas_cumprod = torch.sigmoid(logsnr)
    # logsnr above ~37 (a large positive shift) rounds alpha_bar to exactly 1 in float64, infinite SNR: refuse it
    if not alphas_cumprod[0] < 1 or not bool((alphas_cumprod[1:] < alphas_cumprod[:-1]).all()):
        raise ValueError("the shifted log-SNR does not decrease strictly within float64 (shift too large?)")
    return Schedule(alphas_cumprod)
