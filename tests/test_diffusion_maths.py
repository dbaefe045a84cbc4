"""Closed-form checks of the diffusion maths in float64."""

import math

import pytest
import torch

from diffusion.forward_process import add_noise, posterior_mean_variance, q_sample, renoise
from diffusion.parametrization import (
    Prediction,
    eps_from_v,
    eps_from_x0,
    make_parametrization,
    v_from_eps_x0,
    x0_from_eps,
    x0_from_v,
)
from diffusion.schedules import (
    Schedule,
    cosine_schedule,
    linear_schedule,
    rescale_zero_terminal_snr,
    sigmoid_schedule,
)
from diffusion.steps import ddim_inverse_step, ddim_step, ddpm_step

BUILDERS = [linear_schedule, cosine_schedule, sigmoid_schedule]


@pytest.mark.parametrize("build", BUILDERS)
@pytest.mark.parametrize("T", [1, 10, 1000, 4000])
@pytest.mark.parametrize("ztsnr", [False, True])
def test_alpha_bar_strictly_decreasing_in_unit_interval(build, T, ztsnr):
    if ztsnr and T == 1:
        pytest.skip("one step cannot both keep alpha_bar[0] and reach zero")
    ab = build(T, zero_terminal_snr=ztsnr).alphas_cumprod
    assert ab.dtype == torch.float64 and ab.shape == (T,)
    assert bool((ab[1:] < ab[:-1]).all())
    assert 0 <= float(ab[-1]) and float(ab[0]) < 1


def test_linear_matches_ho_et_al_values():
    s = linear_schedule(1000)
    assert s.betas[0].item() == pytest.approx(1e-4, rel=1e-9)
    assert s.betas[-1].item() == pytest.approx(0.02, rel=1e-9)
    # alpha_bar at T-1 for DDPM's schedule is ~4.04e-5 (a well-known figure, SNR not zero)
    assert s.alphas_cumprod[-1].item() == pytest.approx(4.036e-5, rel=1e-2)


def test_cosine_matches_formula():
    T, s_off = 1000, 0.008
    s = cosine_schedule(T)
    f = lambda t: math.cos((t / T + s_off) / (1 + s_off) * math.pi / 2) ** 2  # noqa: E731
    for t in [0, 10, 500, 900]:
        assert s.alphas_cumprod[t].item() == pytest.approx(f(t + 1) / f(0), rel=1e-9)


@pytest.mark.parametrize("build", BUILDERS)
def test_zero_terminal_snr_is_exact_and_keeps_first(build):
    base = build(1000)
    z = rescale_zero_terminal_snr(base)
    assert z.alphas_cumprod[-1].item() == 0.0
    assert z.alphas_cumprod[0].item() == pytest.approx(base.alphas_cumprod[0].item(), rel=1e-12)
    assert z.snr[-1].item() == 0.0


def test_schedule_rejects_bad_input():
    with pytest.raises(ValueError):
        Schedule(torch.tensor([0.5, 0.6], dtype=torch.float64))
    with pytest.raises(ValueError):
        Schedule(torch.tensor([0.9, 0.5], dtype=torch.float32))


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("ab", [0.9999, 0.7, 0.3, 1e-4])
def test_conversions_round_trip(ab):
    x0, eps = _rand(4, 3, 8, 8, seed=1), _rand(4, 3, 8, 8, seed=2)
    x_t = add_noise(x0, eps, ab)
    v = v_from_eps_x0(eps, x0, ab)
    torch.testing.assert_close(x0_from_eps(x_t, eps, ab), x0, rtol=0, atol=1e-9)
    torch.testing.assert_close(eps_from_x0(x_t, x0, ab), eps, rtol=0, atol=1e-9)
    torch.testing.assert_close(x0_from_v(x_t, v, ab), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(eps_from_v(x_t, v, ab), eps, rtol=0, atol=1e-12)
    for p in ("eps", "x0", "v"):
        param = make_parametrization(p)
        pred = param.convert(param.target(x0, eps, ab), x_t, ab)
        torch.testing.assert_close(pred.x0, x0, rtol=0, atol=1e-9)
        torch.testing.assert_close(pred.eps, eps, rtol=0, atol=1e-9)


def test_v_prediction_defined_at_zero_terminal_snr():
    x0, eps = _rand(2, 1, 4, 4, seed=3), _rand(2, 1, 4, 4, seed=4)
    x_t = add_noise(x0, eps, 0.0)  # pure noise
    v = make_parametrization("v")
    pred = v.convert(v.target(x0, eps, 0.0), x_t, 0.0)
    torch.testing.assert_close(pred.x0, x0)
    torch.testing.assert_close(pred.eps, eps)


@pytest.mark.parametrize("t", [1, 2, 100, 999])
def test_posterior_matches_ho_eq_7_and_bayes(t):
    s = linear_schedule(1000)
    ab, ab_prev, beta = s.alphas_cumprod[t], s.alphas_cumprod[t - 1], s.betas[t]
    alpha = 1 - beta
    x0, x_t = _rand(5, seed=5), _rand(5, seed=6)
    mean, var = posterior_mean_variance(x0, x_t, ab, ab_prev)
    # Ho et al. 2020, eq. 7 as printed
    mean_eq7 = ab_prev.sqrt() * beta / (1 - ab) * x0 + alpha.sqrt() * (1 - ab_prev) / (1 - ab) * x_t
    torch.testing.assert_close(mean, mean_eq7, rtol=1e-12, atol=1e-12)
    assert var.item() == pytest.approx(((1 - ab_prev) / (1 - ab) * beta).item(), rel=1e-12)
    # Independently, Bayes' rule on Gaussians: prior N(sqrt(ab_prev) x0, 1-ab_prev), likelihood N(sqrt(alpha) x, beta)
    precision = 1 / (1 - ab_prev) + alpha / beta
    mean_bayes = (ab_prev.sqrt() * x0 / (1 - ab_prev) + alpha.sqrt() * x_t / beta) / precision
    torch.testing.assert_close(mean, mean_bayes, rtol=1e-9, atol=1e-9)
    assert var.item() == pytest.approx(1 / precision.item(), rel=1e-9)


def test_q_sample_statistics():
    s = cosine_schedule(1000)
    n = 200_000
    x0 = torch.full((n, 1), 0.7, dtype=torch.float64)
    t = torch.full((n,), 400)
    eps = torch.randn(n, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_t = q_sample(s, x0, t, eps)
    ab = s.alphas_cumprod[400].item()
    assert x_t.mean().item() == pytest.approx(math.sqrt(ab) * 0.7, abs=4 / math.sqrt(n))
    assert x_t.var().item() == pytest.approx(1 - ab, rel=0.02)


def test_min_snr_weights_and_zero_terminal_snr_loss_finite():
    s = rescale_zero_terminal_snr(linear_schedule(1000))
    snr = s.snr
    gamma = 5.0
    w_eps, w_v, w_x0 = (make_parametrization(p, "min_snr", gamma).loss_weight(snr) for p in ("eps", "v", "x0"))
    assert torch.isfinite(w_eps).all() and torch.isfinite(w_v).all() and torch.isfinite(w_x0).all()
    t = 500
    assert w_x0[t].item() == pytest.approx(min(snr[t].item(), gamma))
    assert w_eps[t].item() == pytest.approx(min(snr[t].item(), gamma) / snr[t].item())
    assert w_v[t].item() == pytest.approx(min(snr[t].item(), gamma) / (snr[t].item() + 1))
    assert w_eps[-1].item() == 1.0 and w_v[-1].item() == 0.0
    assert make_parametrization("eps").loss_weight(snr).eq(1).all()  # uniform
    # the loss at t = T-1 (alpha_bar = 0) is finite for every target and weighting
    x0, eps = _rand(3, 1, 4, 4, seed=7).float(), _rand(3, 1, 4, 4, seed=8).float()
    t_last = torch.full((3,), 999)
    for p in ("eps", "x0", "v"):
        for w in ("uniform", "min_snr"):
            loss = make_parametrization(p, w, gamma).loss(torch.zeros_like(x0), x0, eps, 0.0, snr[t_last])
            assert torch.isfinite(loss)


def test_diffusion_loss_value_and_learned_variance_split():
    x0 = torch.zeros(2, 1, 2, 2)
    eps = torch.tensor([1.0, 3.0]).reshape(2, 1, 1, 1).expand(2, 1, 2, 2)
    snr = torch.tensor([1.0, 10.0], dtype=torch.float64)
    out = torch.zeros(2, 1, 2, 2)
    assert make_parametrization("eps").loss(out, x0, eps, 0.5, snr).item() == pytest.approx((1 + 9) / 2)
    # min-SNR with gamma 5 on eps: weights 1 and 0.5
    assert make_parametrization("eps", "min_snr", 5.0).loss(out, x0, eps, 0.5, snr).item() == pytest.approx(
        (1 + 4.5) / 2)
    # a learned-variance output (2C channels): only the first C enter the loss and the prediction
    wide = torch.cat([out, torch.full_like(out, 100.0)], dim=1)
    assert make_parametrization("eps").loss(wide, x0, eps, 0.5, snr).item() == pytest.approx((1 + 9) / 2)
    pred = make_parametrization("eps").predict(wide, torch.ones(2, 1, 2, 2), 0.5)
    assert pred.eps.shape == (2, 1, 2, 2) and pred.eps.eq(0).all()
    with pytest.raises(ValueError, match="prediction"):
        make_parametrization("score")
    with pytest.raises(ValueError, match="weighting"):
        make_parametrization("v", "snr_plus_one")


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_ddim_inverse_step_undoes_ddim_step_with_the_same_eps(prediction):
    s = cosine_schedule(1000)
    x_t, eps = _rand(3, 2, 4, 4, seed=9), _rand(3, 2, 4, 4, seed=10)
    for t, t_prev in [(999, 700), (500, 480), (20, -1)]:
        ab = s.alphas_cumprod[t].item()
        pred = Prediction(eps, x0_from_eps(x_t, eps, ab))
        x_prev = ddim_step(s, pred, x_t, t, t_prev)
        back = ddim_inverse_step(s, Prediction(eps, pred.x0 * float("nan")), x_prev, t_prev, t)  # uses eps only
        torch.testing.assert_close(back, x_t, rtol=0, atol=1e-10)


def test_ddpm_step_is_the_posterior_and_renoise_has_the_forward_statistics():
    s = linear_schedule(1000)
    n = 200_000
    x_t, x0, z = _rand(n, seed=11), torch.full((n,), 0.4, dtype=torch.float64), _rand(n, seed=12)
    pred = Prediction(eps_from_x0(x_t, x0, s.alphas_cumprod[300].item()), x0)
    mean, var = posterior_mean_variance(x0, x_t, s.alphas_cumprod[300].item(), s.alphas_cumprod[250].item())
    torch.testing.assert_close(ddpm_step(s, pred, x_t, 300, 250, z), mean + var**0.5 * z, rtol=0, atol=1e-12)
    torch.testing.assert_close(ddpm_step(s, pred, x_t, 300, 250), mean)  # no noise given: the mean
    torch.testing.assert_close(ddpm_step(s, pred, x_t, 0, -1, z), x0, rtol=0, atol=1e-12)  # last step: no noise
    # renoise from 250 to 300 of a constant has the mean and variance of q(x_300 | x_250)
    a = s.alphas_cumprod[300].item() / s.alphas_cumprod[250].item()
    up = renoise(x0, s.alphas_cumprod[250].item(), s.alphas_cumprod[300].item(), z)
    assert up.mean().item() == pytest.approx(a**0.5 * 0.4, abs=4 / n**0.5)
    assert up.var().item() == pytest.approx(1 - a, rel=0.02)
