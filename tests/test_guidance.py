"""Classifier-free guidance against its closed form on two Gaussian classes."""

import pytest
import torch

from diffusion.forward_process import gather
from diffusion.guidance import Guidance, cfg_denoiser
from diffusion.parametrization import EpsPrediction, eps_from_x0, make_parametrization
from diffusion.schedules import cosine_schedule

MU = torch.tensor([-1.0, 1.5], dtype=torch.float64)  # class means
S = 0.4  # shared std
NULL = 2


def posterior_x0(x_t, ab, mu):
    """E[x0 | x_t] for x0 ~ N(mu, S^2)."""
    return mu + ab.sqrt() * S**2 / (ab * S**2 + 1 - ab) * (x_t - ab.sqrt() * mu)


class ExactNet:
    """A 'network' predicting the exact eps for class 0/1 and for the 50/50 mixture (null label)."""

    def __init__(self, schedule):
        self.schedule, self.calls = schedule, []

    def __call__(self, x_t, t, cond):
        self.calls.append(x_t.shape[0])
        ab = gather(self.schedule.alphas_cumprod, t, x_t)
        var = ab * S**2 + 1 - ab  # marginal variance of x_t per class
        x0_c = torch.stack([posterior_x0(x_t, ab, m) for m in MU])  # (2, B, ...)
        logp = torch.stack([-(x_t - ab.sqrt() * m) ** 2 / (2 * var) for m in MU])
        resp = torch.softmax(logp, dim=0)  # p(class | x_t) under equal priors
        x0_null = (resp * x0_c).sum(0)
        c = cond.reshape(-1, *([1] * (x_t.ndim - 1)))
        x0 = torch.where(c == NULL, x0_null, torch.where(c == 0, x0_c[0], x0_c[1]))
        return eps_from_x0(x_t, x0, ab)


@pytest.mark.parametrize("batched", [True, False, None])
@pytest.mark.parametrize("scale", [1.0, 3.0, 7.5])
def test_cfg_equals_closed_form_guided_score(scale, batched):
    sched = cosine_schedule(1000)
    net = ExactNet(sched)
    x_t = torch.linspace(-3, 3, 41, dtype=torch.float64).reshape(-1, 1, 1, 1)
    t = torch.full((41,), 300)
    cond = torch.full((41,), 1)
    pred = Guidance(scale, batched=batched).denoiser(net, sched, EpsPrediction(), cond, torch.full((41,), NULL))(x_t, t)
    # closed form: eps = -sqrt(1 - ab) * [(1 - w) grad log p(x_t) + w grad log p(x_t | c)]
    ab = sched.alphas_cumprod[300]
    var = ab * S**2 + 1 - ab
    score_c = [-(x_t - ab.sqrt() * m) / var for m in MU]
    logp = torch.stack([-(x_t - ab.sqrt() * m) ** 2 / (2 * var) for m in MU])
    resp = torch.softmax(logp, 0)
    score_uncond = resp[0] * score_c[0] + resp[1] * score_c[1]
    expected = -(1 - ab).sqrt() * ((1 - scale) * score_uncond + scale * score_c[1])
    torch.testing.assert_close(pred.eps, expected, rtol=1e-9, atol=1e-9)
    # guided: one forward of 2B with cond and null together, or two of B (the default on the CPU);
    # scale 1 skips the null pass: one forward of B
    if scale == 1.0:
        assert net.calls == [41]
    else:
        assert net.calls == ([82] if batched else [41, 41])


def test_guidance_is_the_same_for_every_parametrization():
    sched = cosine_schedule(1000)
    net = ExactNet(sched)
    x_t = torch.randn(16, 1, 2, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.full((16,), 500)
    cond, null = torch.zeros(16, dtype=torch.long), torch.full((16,), NULL)
    ref = cfg_denoiser(net, sched, EpsPrediction(), cond, null, 4.0)(x_t, t)

    def as_x0(x, tt, c):
        a = gather(sched.alphas_cumprod, tt, x)
        return (x - (1 - a).sqrt() * net(x, tt, c)) / a.sqrt()

    def as_v(x, tt, c):
        a = gather(sched.alphas_cumprod, tt, x)
        return a.sqrt() * net(x, tt, c) - (1 - a).sqrt() * as_x0(x, tt, c)

    for name, fn in [("x0", as_x0), ("v", as_v)]:
        pred = cfg_denoiser(fn, sched, make_parametrization(name), cond, null, 4.0)(x_t, t)
        torch.testing.assert_close(pred.eps, ref.eps)
        torch.testing.assert_close(pred.x0, ref.x0)


def test_cfg_rescale_matches_conditional_std():
    sched = cosine_schedule(1000)
    net = ExactNet(sched)
    x_t = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t, cond, null = torch.full((4,), 200), torch.ones(4, dtype=torch.long), torch.full((4,), NULL)
    full = cfg_denoiser(net, sched, EpsPrediction(), cond, null, 5.0, rescale=1.0)(x_t, t).eps
    cond_only = net(x_t, t, cond)
    torch.testing.assert_close(full.std(dim=(1, 2, 3)), cond_only.std(dim=(1, 2, 3)))


def test_guidance_policy_checks_and_unconditional_models_are_unguided():
    for bad in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="scale"):
            Guidance(bad)
    with pytest.raises(ValueError, match="rescale"):
        Guidance(3.0, rescale=1.5)
    sched = cosine_schedule(1000)
    net = ExactNet(sched)
    x_t = torch.zeros(4, 1, 1, 1, dtype=torch.float64)
    t = torch.full((4,), 10)
    # no condition (an unconditional model): one plain forward, whatever the scale
    Guidance(5.0).denoiser(lambda x, t, c: net(x, t, torch.full((4,), NULL)), sched, EpsPrediction(), None, None)(
        x_t, t)
    assert net.calls == [4]
