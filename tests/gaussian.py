"""The exact denoiser for data x0 ~ N(mu, s^2 I): the closed form every sampler is checked against."""


from diffusion.forward_process import gather
from diffusion.parametrization import Prediction, eps_from_x0


def gaussian_denoiser(schedule, mu: float, s: float):
    """E[x0 | x_t] = mu + sqrt(ab) s^2 / (ab s^2 + 1 - ab) (x_t - sqrt(ab) mu), with its eps."""

    def denoiser(x_t, t):
        ab = gather(schedule.alphas_cumprod, t, x_t)
        x0 = mu + ab.sqrt() * s**2 / (ab * s**2 + 1 - ab) * (x_t - ab.sqrt() * mu)
        return Prediction(eps_from_x0(x_t, x0, ab), x0)

    return denoiser


def exact_ode_solution(x_T, ab_T: float, mu: float, s: float):
    """Where the probability-flow ODE takes x_T: it keeps the standardised value (x_t - m_t) / sd_t fixed."""
    m_T, sd_T = ab_T**0.5 * mu, (ab_T * s**2 + 1 - ab_T) ** 0.5
    return mu + s * (x_T - m_T) / sd_T
