"""Diffusion maths: schedules, forward process, prediction targets, losses, samplers.

Notation (used in every file of this package, after Ho et al. 2020 and Song et al. 2021):

    T               number of training timesteps; t is an integer in {0, ..., T-1}
    alpha_bar[t]    cumulative signal fraction, ``schedule.alphas_cumprod[t]`` (float64, strictly decreasing)
    beta[t]         1 - alpha_bar[t] / alpha_bar[t-1]   (alpha_bar[-1] := 1)
    x0              clean data, scaled to [-1, 1]
    eps             standard normal noise, shaped like x0
    x_t             sqrt(alpha_bar[t]) * x0 + sqrt(1 - alpha_bar[t]) * eps          (Ho et al. eq. 4)
    v               sqrt(alpha_bar[t]) * eps - sqrt(1 - alpha_bar[t]) * x0         (Salimans & Ho 2022)
    snr[t]          alpha_bar[t] / (1 - alpha_bar[t])
    sigma_t         the standard deviation of the noise a sampler adds at step t (DDPM/DDIM eta)

A *denoiser* is a callable ``denoiser(x_t, t) -> Prediction(eps, x0)``; samplers and editing methods see
only that, never a network.
"""
