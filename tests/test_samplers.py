"""Samplers against the closed-form Gaussian denoiser."""

import pytest
import torch

from diffusion.samplers import make_timesteps, sample_ddim, sample_ddpm
from diffusion.schedules import cosine_schedule, linear_schedule
from tests.gaussian import exact_ode_solution, gaussian_denoiser

MU, S = 0.3, 0.5


def _noise(n, seed=0):
    return torch.randn(n, 1, 1, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("spacing", ["uniform", "quadratic", "trailing"])
@pytest.mark.parametrize("T", [10, 1000])
def test_timesteps_distinct_decreasing_in_range(spacing, T):
    for steps in sorted({1, 2, 7, T // 2, T - 1, T}):
        ts = make_timesteps(T, steps, spacing)
        assert len(ts) == steps and ts == sorted(set(ts), reverse=True)
        assert 0 <= ts[-1] and ts[0] <= T - 1
    assert make_timesteps(T, T, spacing) == list(range(T - 1, -1, -1))
    assert make_timesteps(1000, 10, "trailing")[0] == 999


# DDIM is first order: at 50 steps the sample spread is ~5% low for this s, at 1000 steps within ~1%.
@pytest.mark.parametrize("steps, rel", [(50, 0.06), (1000, 0.02)])
def test_ddim_reproduces_data_mean_and_variance(steps, rel):
    sched = linear_schedule(1000)
    x_T = _noise(20_000)
    x = sample_ddim(gaussian_denoiser(sched, MU, S), x_T, sched, make_timesteps(1000, steps))
    assert x.mean().item() == pytest.approx(MU, abs=0.02)
    assert x.std().item() == pytest.approx(S, rel=rel)


def test_ddpm_full_chain_reproduces_data_mean_and_variance():
    sched = cosine_schedule(1000)
    g = torch.Generator().manual_seed(1)
    x = sample_ddpm(gaussian_denoiser(sched, MU, S), _noise(20_000), sched, list(range(999, -1, -1)), generator=g)
    assert x.mean().item() == pytest.approx(MU, abs=0.02)
    assert x.std().item() == pytest.approx(S, rel=0.03)


def test_ddim_error_against_exact_solution_shrinks_with_steps():
    sched = linear_schedule(1000)
    x_T = _noise(256, seed=2)
    ab_T = sched.alphas_cumprod[-1].item()
    errors = []
    for steps in (5, 20, 100, 1000):
        ts = make_timesteps(1000, steps, "trailing")  # starts at T-1, where x_T lives
        x = sample_ddim(gaussian_denoiser(sched, MU, S), x_T, sched, ts)
        errors.append((x - exact_ode_solution(x_T, ab_T, MU, S)).abs().max().item())
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < 1e-2


def test_same_generator_bit_identical_and_global_rng_untouched():
    sched = linear_schedule(100)
    den = gaussian_denoiser(sched, MU, S)
    state = torch.get_rng_state()
    a = sample_ddim(den, _noise(8), sched, make_timesteps(100, 10), eta=1.0, generator=torch.Generator().manual_seed(3))
    b = sample_ddim(den, _noise(8), sched, make_timesteps(100, 10), eta=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(state, torch.get_rng_state())
