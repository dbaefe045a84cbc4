"""High-order samplers (diffusion/solvers.py) and schedule-aware timesteps: convergence order against the exact
probability-flow ODE of Gaussian data, agreement with diffusers' schedulers on identical inputs, and the shared
sampler contract (partial chains, clipping, determinism, the global RNG)."""

import inspect
import math

import pytest
import torch

from diffusion.samplers import (
    SCHEDULE_SPACINGS,
    SPACINGS,
    make_timesteps,
    sample_ddim,
    sample_ddpm,
    schedule_timesteps,
)
from diffusion.schedules import cosine_schedule, linear_schedule, rescale_zero_terminal_snr
from diffusion.solvers import (
    SAMPLERS,
    ancestral_step,
    sample_dpmpp,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
    sample_unipc,
)
from tests.gaussian import gaussian_denoiser

MU, S = 0.3, 0.5  # non-trivial data N(mu, s^2): no data-prediction solver is exact on it
SCHED = linear_schedule(1000)
AB = SCHED.alphas_cumprod


def _exact(x, ab_from: float, ab_to: float, mu: float = MU, s: float = S):
    """The PF-ODE flow of N(mu, s^2) data from alpha_bar ab_from to ab_to: the standardised value is kept."""
    sd = lambda ab: (ab * s**2 + 1 - ab) ** 0.5  # noqa: E731
    return ab_to**0.5 * mu + sd(ab_to) * (x - ab_from**0.5 * mu) / sd(ab_from)


def _marginal(z, ab: float, mu: float = MU, s: float = S):
    """z mapped to a draw of x_t's marginal N(sqrt(ab) mu, ab s^2 + 1 - ab)."""
    return ab**0.5 * mu + (ab * s**2 + 1 - ab) ** 0.5 * z


def _z(n=64, seed=0):
    return torch.randn(n, 1, 1, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --------------------------------------------------------------------------------------------- convergence order

# T = 10000 makes the integer rounding of the grid negligible; the chain runs uniformly in log-SNR from T-1 down to
# T_END (alpha_bar ~ 0.98) and the error is read there, through the callback, before the final step to sigma = 0
# (x_0 = x0_hat, exact only as sigma -> 0) would floor it. 40..160 steps are past the pre-asymptotic wobble of the
# multistep methods and far above float64 rounding (the smallest error is ~2e-7).
ORDER_T, T_END, ORDER_STEPS = 10_000, 390, (40, 56, 80, 113, 160)
ORDER_SCHED = linear_schedule(ORDER_T)
SLOPE_TOL = 0.35


def _lambda_grid(n_steps: int) -> list[int]:
    lam = 0.5 * (torch.log(ORDER_SCHED.alphas_cumprod) - torch.log1p(-ORDER_SCHED.alphas_cumprod))
    targets = torch.linspace(lam[ORDER_T - 1].item(), lam[T_END].item(), n_steps + 1, dtype=torch.float64)
    return (targets[:, None] - lam[None, :]).abs().argmin(dim=1).tolist()


def _error_at_last_timestep(sampler, n_steps: int, **options) -> float:
    ts = _lambda_grid(n_steps)
    assert len(set(ts)) == len(ts) == n_steps + 1 and ts[-1] == T_END
    ab = ORDER_SCHED.alphas_cumprod
    x_T = _marginal(_z(64), ab[ts[0]].item())
    seen = {}
    den = gaussian_denoiser(ORDER_SCHED, MU, S)
    sampler(den, x_T, ORDER_SCHED, ts, callback=lambda i, t, x, x0: seen.update({t: x}), **options)
    return (seen[T_END] - _exact(x_T, ab[ts[0]].item(), ab[T_END].item())).abs().max().item()


def _slope(sampler, **options) -> float:
    """-d log(error) / d log(steps), least squares over ORDER_STEPS."""
    lx = torch.tensor([math.log(n) for n in ORDER_STEPS], dtype=torch.float64)
    ly = torch.tensor([math.log(_error_at_last_timestep(sampler, n, **options)) for n in ORDER_STEPS])
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return -(lx * ly).sum().item() / (lx * lx).sum().item()


# (sampler, options, expected slope). Measured (fit over ORDER_STEPS): ddim = euler = dpmpp order 1 0.99, heun 2.02,
# dpmpp 2M 1.88, unipc (corrected; UniC-p raises UniP-p to order p + 1, Zhao et al. 2023, sec. 3.2) order 1 1.99,
# order 2 bh2 2.90, bh1 3.00 (order 3: see below).
ORDERS = [
    (sample_ddim, {}, 1),  # first-order DPM-Solver (Lu et al. 2022, sec. 3.3)
    (sample_euler, {}, 1),
    (sample_dpmpp, {"order": 1}, 1),
    (sample_heun, {}, 2),
    (sample_dpmpp, {"order": 2}, 2),
    (sample_unipc, {"order": 1}, 2),
    (sample_unipc, {"order": 2}, 3),
    (sample_unipc, {"order": 2, "variant": "bh1"}, 3),
]


@pytest.mark.parametrize("sampler, options, order", ORDERS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_convergence_order(sampler, options, order):
    assert abs(_slope(sampler, **options) - order) < SLOPE_TOL


@pytest.mark.parametrize("variant", ["bh2", "bh1"])
def test_unipc_3_converges_at_least_at_fourth_order(variant):
    """UniC-3 makes UniP-3 fourth order per step. Over ORDER_STEPS the measured slope is above 4 (bh2 4.44, bh1
    4.41: not yet asymptotic). Asymptotically the warm-up (UniP-1 + UniC-1, second order, local error O(h^3))
    bounds the global order at 3, but that is invisible at these step counts: its error constant, at the
    high-noise start where x0_hat barely moves, is tiny. A broken corrector falls to 3 or below."""
    assert _slope(sample_unipc, order=3, variant=variant) > 4 - SLOPE_TOL


def test_dpmpp_3m_convergence_between_its_warm_up_and_its_order():
    """3M is third order per step, but its first step is first order (local error O(h^2)), so its global order
    falls from 3 towards 2 as steps grow (measured 2.27 over ORDER_STEPS, local slopes 2.45 -> 2.14)."""
    assert 2 - SLOPE_TOL < _slope(sample_dpmpp, order=3) < 3 + SLOPE_TOL


def test_first_order_samplers_are_one_method():
    """DDIM is Euler in sigma (Karras et al. 2022, sec. 4) and first-order DPM-Solver++ (Lu et al. 2022, sec. 4)."""
    den, ts = gaussian_denoiser(SCHED, MU, S), make_timesteps(1000, 12, "trailing")
    x_T = _marginal(_z(), AB[999].item())
    ddim = sample_ddim(den, x_T, SCHED, ts)
    torch.testing.assert_close(sample_euler(den, x_T, SCHED, ts), ddim, rtol=0, atol=1e-12)
    torch.testing.assert_close(sample_dpmpp(den, x_T, SCHED, ts, order=1), ddim, rtol=0, atol=1e-12)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_euler_ancestral_is_ddim_with_the_same_eta(eta):
    """k-diffusion's (sigma_down, sigma_up) is DDIM's eq. 12 in x~ = x / sqrt(alpha_bar): sigma_up = sigma_DDIM /
    sqrt(ab_prev), so with the same noise both give the same sample."""
    den, ts = gaussian_denoiser(SCHED, MU, S), make_timesteps(1000, 15, "trailing")
    x_T = _marginal(_z(), AB[999].item())
    a = sample_euler_ancestral(den, x_T, SCHED, ts, eta=eta, generator=torch.Generator().manual_seed(5))
    b = sample_ddim(den, x_T, SCHED, ts, eta=eta, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    if eta == 0:
        torch.testing.assert_close(a, sample_euler(den, x_T, SCHED, ts), rtol=0, atol=0)


def test_ancestral_step_keeps_the_marginal_variance():
    for sigma, sigma_next in [(80.0, 40.0), (1.0, 0.3), (0.5, 0.0)]:
        down, up = ancestral_step(sigma, sigma_next)
        assert down**2 + up**2 == pytest.approx(sigma_next**2) and down <= sigma_next
    assert ancestral_step(2.0, 1.0, eta=0.0) == (1.0, 0.0)


# ------------------------------------------------------------------------------------ agreement with diffusers

# Identical inputs: our schedule's betas (diffusers keeps them in float32, hence 1e-5 rather than 1e-12), the same
# integer timesteps, the same eps from the Gaussian denoiser, the same noise. 1e-5 is absolute on samples of
# size ~1.
REF_TOL = 1e-5
REF_STEPS = 12


def _run_diffusers(scheduler, x, model_input_scaled: bool):
    den = gaussian_denoiser(SCHED, MU, S)
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t) if model_input_scaled else x
        eps = den(x_in, torch.full((x.shape[0],), int(t), dtype=torch.long)).eps
        x = scheduler.step(eps, t, x).prev_sample
    return x


def _x_T(ts):
    return _marginal(_z(64, seed=7), AB[ts[0]].item())


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("steps", [6, REF_STEPS, 20])
def test_dpmpp_matches_diffusers(order, steps):
    diffusers = pytest.importorskip("diffusers")
    sch = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000, trained_betas=SCHED.betas.numpy(), algorithm_type="dpmsolver++", solver_order=order,
        solver_type="midpoint", lower_order_final=True, final_sigmas_type="zero", prediction_type="epsilon")
    ts = make_timesteps(1000, steps, "trailing")
    sch.set_timesteps(timesteps=ts)
    ours = sample_dpmpp(gaussian_denoiser(SCHED, MU, S), _x_T(ts), SCHED, ts, order=order)
    theirs = _run_diffusers(sch, _x_T(ts), model_input_scaled=False)
    assert (ours - theirs).abs().max().item() < REF_TOL


@pytest.mark.parametrize("order, variant", [(1, "bh2"), (2, "bh2"), (3, "bh2"), (2, "bh1"), (3, "bh1")])
def test_unipc_matches_diffusers(order, variant):
    diffusers = pytest.importorskip("diffusers")
    sch = diffusers.UniPCMultistepScheduler(
        num_train_timesteps=1000, trained_betas=SCHED.betas.numpy(), solver_order=order, solver_type=variant,
        predict_x0=True, lower_order_final=True, disable_corrector=[], final_sigmas_type="zero",
        timestep_spacing="trailing", prediction_type="epsilon")
    sch.set_timesteps(REF_STEPS)  # UniPC takes no custom list; its "trailing" is ours
    ts = make_timesteps(1000, REF_STEPS, "trailing")
    assert sch.timesteps.tolist() == ts
    seen = {}
    ours = sample_unipc(gaussian_denoiser(SCHED, MU, S), _x_T(ts), SCHED, ts, order=order, variant=variant,
                        callback=lambda i, t, x, x0: seen.update({t: x}))
    theirs = _run_diffusers(sch, _x_T(ts), model_input_scaled=False)
    # the corrected state at the last timestep (diffusers keeps it as last_sample), then the output
    assert (seen[ts[-1]] - sch.last_sample).abs().max().item() < REF_TOL
    if variant == "bh2":  # diffusers' bh1 returns NaN here: B(h) = -h = -inf times its zero (int) sum at sigma = 0
        assert (ours - theirs).abs().max().item() < REF_TOL
    assert torch.isfinite(ours).all()


@pytest.mark.parametrize("name", ["euler", "heun"])
def test_karras_samplers_match_diffusers(name):
    """diffusers' Euler/Heun schedulers integrate x~ (their init_noise_sigma scaling) and feed the model
    x~ / sqrt(sigma^2 + 1) = x_t (scale_model_input): we start them from x_T / sqrt(alpha_bar[t_0])."""
    diffusers = pytest.importorskip("diffusers")
    cls = {"euler": diffusers.EulerDiscreteScheduler, "heun": diffusers.HeunDiscreteScheduler}[name]
    sch = cls(num_train_timesteps=1000, trained_betas=SCHED.betas.numpy(), prediction_type="epsilon")
    ts = schedule_timesteps(SCHED, REF_STEPS, "karras")
    sch.set_timesteps(timesteps=ts)
    ours = SAMPLERS[name](gaussian_denoiser(SCHED, MU, S), _x_T(ts), SCHED, ts)
    theirs = _run_diffusers(sch, _x_T(ts) / AB[ts[0]].item() ** 0.5, model_input_scaled=True)
    assert (ours - theirs).abs().max().item() < REF_TOL


def test_euler_ancestral_matches_diffusers_with_the_same_noise():
    """diffusers draws its noise with randn_tensor(shape, generator, dtype) as randn_like does, one draw per step in
    the same order (its extra draw on the final step, times sigma_up = 0, comes after all of ours)."""
    diffusers = pytest.importorskip("diffusers")
    sch = diffusers.EulerAncestralDiscreteScheduler(
        num_train_timesteps=1000, trained_betas=SCHED.betas.numpy(), timestep_spacing="trailing",
        prediction_type="epsilon")
    sch.set_timesteps(REF_STEPS)
    ts = make_timesteps(1000, REF_STEPS, "trailing")
    assert sch.timesteps.long().tolist() == ts
    ours = sample_euler_ancestral(gaussian_denoiser(SCHED, MU, S), _x_T(ts), SCHED, ts,
                                  generator=torch.Generator().manual_seed(11))
    den, x, g = gaussian_denoiser(SCHED, MU, S), _x_T(ts) / AB[ts[0]].item() ** 0.5, torch.Generator().manual_seed(11)
    for t in sch.timesteps:
        eps = den(sch.scale_model_input(x, t), torch.full((x.shape[0],), int(t), dtype=torch.long)).eps
        x = sch.step(eps, t, x, generator=g).prev_sample
    assert (ours - x).abs().max().item() < REF_TOL


# ------------------------------------------------------------------------------------------ the sampler contract

NOISY = {"ddpm", "euler_a", "flow_sde"}


def _call(name, den, x_T, ts, sched=SCHED, seed=0, **options):
    g = torch.Generator().manual_seed(seed) if name in NOISY else None
    return SAMPLERS[name](den, x_T, sched, ts, generator=g, **options)


def test_registry_shares_one_signature():
    assert set(SAMPLERS) == {"ddim", "ddpm", "dpmpp_2m", "unipc", "heun", "euler", "euler_a", "flow_euler", "flow_heun",
                             "flow_sde"}
    for fn in SAMPLERS.values():
        params = inspect.signature(fn).parameters
        assert list(params)[:4] == ["denoiser", "x_T", "schedule", "timesteps"]
        for key in ("generator", "callback", "clip_x0"):
            assert params[key].kind is inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_partial_chain_starts_from_the_noised_image(name):
    """SDEdit: x at t0 = 400 has alpha_bar[400] (not unit variance); deterministic samplers land on the ODE's end,
    the noisy ones reproduce the data's mean and spread."""
    t0 = 400
    den, ts = gaussian_denoiser(SCHED, MU, S), make_timesteps(1000, 50, start=t0)
    x_t0 = _marginal(_z(4000, seed=3), AB[t0].item())
    x = _call(name, den, x_t0, ts)
    assert torch.isfinite(x).all()
    if name in NOISY:  # measured: mean 0.299, std 0.472 (ancestral sampling shrinks the spread at few steps)
        assert x.mean().item() == pytest.approx(MU, abs=0.02) and x.std().item() == pytest.approx(S, rel=0.1)
    else:  # measured max error: ddim = euler = flow_euler 0.042, heun 0.0042, dpmpp_2m 0.0021, unipc 0.0014
        tol = 0.06 if name in ("ddim", "euler", "flow_euler") else 0.006
        assert (x - _exact(x_t0, AB[t0].item(), 1.0)).abs().max().item() < tol


@pytest.mark.parametrize("clip_x0", [True, 0.9])
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_clip_x0_bounds_the_sample(name, clip_x0):
    """Data N(0.3, 2^2) leaves [-1, 1] often; every final step returns the thresholded x0_hat, so clipping (or
    dynamic thresholding, which then divides by s >= 1) keeps the sample inside."""
    den = gaussian_denoiser(SCHED, MU, 2.0)
    x_T = _marginal(_z(256, seed=4), AB[999].item(), s=2.0)
    ts = make_timesteps(1000, 10, "trailing")
    assert _call(name, den, x_T, ts).abs().max().item() > 1.5
    x = _call(name, den, x_T, ts, clip_x0=clip_x0)
    assert torch.isfinite(x).all() and x.abs().max().item() <= 1 + 1e-9


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_bit_identical_reruns_and_global_rng_untouched(name):
    den, ts = gaussian_denoiser(SCHED, MU, S), make_timesteps(1000, 10, "trailing")
    x_T = _marginal(_z(16, seed=5), AB[999].item())
    state = torch.get_rng_state()
    a, b = _call(name, den, x_T, ts, seed=9), _call(name, den, x_T, ts, seed=9)
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())
    if name in NOISY:  # and the noise really comes from the generator
        assert not torch.equal(a, _call(name, den, x_T, ts, seed=10))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_once_per_step_with_vp_state(name):
    den, ts = gaussian_denoiser(SCHED, MU, S), make_timesteps(1000, 7, "trailing")
    x_T = _marginal(_z(8), AB[999].item())
    seen = []
    _call(name, den, x_T, ts, callback=lambda i, t, x, x0: seen.append((i, t, x)))
    assert [(i, t) for i, t, _ in seen] == list(enumerate(ts))
    assert torch.equal(seen[0][2], x_T) or torch.allclose(seen[0][2], x_T, rtol=1e-12, atol=0)  # x_t, not x~


def test_bad_options_are_refused():
    den, ts = gaussian_denoiser(SCHED, MU, S), make_timesteps(1000, 5)
    x_T = _z(4)
    for call in (lambda: sample_dpmpp(den, x_T, SCHED, ts, order=4), lambda: sample_unipc(den, x_T, SCHED, ts, order=0),
                 lambda: sample_unipc(den, x_T, SCHED, ts, variant="bh3"),
                 lambda: sample_euler_ancestral(den, x_T, SCHED, ts, eta=-1)):
        with pytest.raises(ValueError):
            call()
    zsnr = rescale_zero_terminal_snr(SCHED)  # sigma is infinite at alpha_bar = 0
    with pytest.raises(ValueError, match="zero terminal SNR"):
        sample_euler(den, x_T, zsnr, make_timesteps(1000, 5, "trailing"))


# ------------------------------------------------------------------------------------------------- timesteps

@pytest.mark.parametrize("spacing", ["logsnr", "karras"])
@pytest.mark.parametrize("sched", [linear_schedule(1000), cosine_schedule(1000), linear_schedule(10)],
                         ids=["linear1000", "cosine1000", "linear10"])
def test_schedule_timesteps_distinct_decreasing_spanning_the_schedule(spacing, sched):
    T = sched.num_timesteps
    for steps in sorted({1, 2, 3, 7, T // 2, T - 1, T}):
        ts = schedule_timesteps(sched, steps, spacing)
        assert len(ts) == steps and ts == sorted(set(ts), reverse=True) and ts[0] == T - 1
        assert ts[-1] == (0 if steps > 1 else T - 1)
    assert schedule_timesteps(sched, T, spacing) == list(range(T - 1, -1, -1))
    part = schedule_timesteps(sched, 8, spacing, start=T // 2)
    assert part[0] == T // 2 and part[-1] == 0 and len(part) == min(8, T // 2 + 1)


def test_schedule_timesteps_follow_their_formulas():
    """8 steps: few enough that no two targets share a timestep, so the lists are the plain nearest ones."""
    lam = 0.5 * (torch.log(AB) - torch.log1p(-AB))
    targets = torch.linspace(lam[-1].item(), lam[0].item(), 8, dtype=torch.float64)  # uniform in log-SNR
    assert schedule_timesteps(SCHED, 8, "logsnr") == [int((lam - v).abs().argmin()) for v in targets]
    sigma = ((1 - AB) / AB).sqrt()
    s_max, s_min = sigma[-1].item() ** (1 / 7), sigma[0].item() ** (1 / 7)
    karras = [(s_max + i / 7 * (s_min - s_max)) ** 7 for i in range(8)]  # Karras et al. 2022, eq. 5
    want = [int((sigma.log() - math.log(k)).abs().argmin()) for k in karras]
    assert schedule_timesteps(SCHED, 8, "karras") == want
    # EDM's sigma_max = 80: the ramp starts there instead of at the schedule's top
    s_cap = 80.0 ** (1 / 7)
    capped = [(s_cap + i / 7 * (s_min - s_cap)) ** 7 for i in range(8)]
    want = [int((sigma.log() - math.log(k)).abs().argmin()) for k in capped]
    assert schedule_timesteps(SCHED, 8, "karras", sigma_max=80.0) == want
    assert float(sigma[want[0]]) == pytest.approx(80.0, rel=0.05) and want[0] < len(AB) - 1
    # a cap above the top changes nothing
    assert schedule_timesteps(SCHED, 8, "karras", sigma_max=1e12) == schedule_timesteps(SCHED, 8, "karras")


def test_schedule_timesteps_passes_make_timesteps_spacings_through():
    assert set(SPACINGS) < set(SCHEDULE_SPACINGS)
    for spacing in SPACINGS:
        assert schedule_timesteps(SCHED, 13, spacing) == make_timesteps(1000, 13, spacing)
    assert schedule_timesteps(SCHED, 13, "uniform", start=300) == make_timesteps(1000, 13, start=300)
    with pytest.raises(ValueError):
        schedule_timesteps(SCHED, 10, "cubic")
    with pytest.raises(ValueError, match="zero terminal SNR"):
        schedule_timesteps(rescale_zero_terminal_snr(SCHED), 10, "karras")


def test_ddpm_in_registry_is_the_samplers_one():
    assert SAMPLERS["ddpm"] is sample_ddpm and SAMPLERS["ddim"] is sample_ddim
