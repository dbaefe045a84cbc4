"""Editing primitives against the closed-form Gaussian denoiser."""

import pytest
import torch

from diffusion.editing.inpaint import inpaint_denoiser, repaint_moves, sample_repaint
from diffusion.editing.inversion import invert_ddim
from diffusion.editing.sdedit import sdedit_start
from diffusion.samplers import make_timesteps, sample_ddim, sample_ddpm
from diffusion.schedules import linear_schedule
from tests.gaussian import gaussian_denoiser

MU, S = 0.3, 0.5
SCHED = linear_schedule(1000)


def _data(n, seed=0, shape=(1, 4, 4)):
    return MU + S * torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_sdedit_start_points():
    x0 = _data(4)
    same, ts = sdedit_start(x0, SCHED, 0.0, steps=50)
    assert same is x0 and ts == []
    x, ts = sdedit_start(x0, SCHED, 1.0, steps=50, generator=torch.Generator().manual_seed(0))
    assert ts[0] == 999 and len(ts) == 50
    x, ts = sdedit_start(x0, SCHED, 0.3, steps=50, generator=torch.Generator().manual_seed(0))
    assert ts[0] == 299 and len(ts) == 15 and 0 <= ts[-1] < 300 / 15  # trailing spacing below t0
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError):
            sdedit_start(x0, SCHED, bad, steps=50)


def test_sdedit_strength_trades_faithfulness_for_realism():
    x0 = torch.full((4000, 1, 1, 1), 2.0, dtype=torch.float64)  # an unlikely input (mean 0.3, std 0.5)
    den = gaussian_denoiser(SCHED, MU, S)
    dist = []
    for strength in (0.1, 0.5, 1.0):
        x, ts = sdedit_start(x0, SCHED, strength, steps=100, generator=torch.Generator().manual_seed(1))
        out = sample_ddim(den, x, SCHED, ts)
        dist.append((out - x0).abs().mean().item())
        if strength == 1.0:  # plain generation: the data distribution
            assert out.mean().item() == pytest.approx(MU, abs=0.03) and out.std().item() == pytest.approx(S, rel=0.05)
    assert dist[0] < dist[1] < dist[2]


def test_ddim_inversion_round_trip():
    den = gaussian_denoiser(SCHED, MU, S)
    x0 = _data(64, seed=2)
    ts = make_timesteps(1000, 50, "uniform")
    plain = sample_ddim(den, invert_ddim(den, x0, SCHED, ts), SCHED, ts)
    assert ((plain - x0) ** 2).mean().item() < 1e-3  # per-pixel MSE of plain DDIM inversion at 50 steps
    exact = sample_ddim(den, invert_ddim(den, x0, SCHED, ts, fixed_point_iters=3), SCHED, ts)
    assert (exact - x0).abs().max().item() < 1e-3  # every pixel, with fixed-point refinement
    assert (exact - x0).abs().max() < (plain - x0).abs().max()


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "repaint"])
def test_inpainting_keeps_known_region_exactly_and_fills_the_rest_from_the_data(sampler):
    n = 3000
    x_known = torch.full((n, 1, 2, 2), -0.7, dtype=torch.float64)
    keep = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64).reshape(1, 1, 2, 2)  # left column known
    den = inpaint_denoiser(gaussian_denoiser(SCHED, MU, S), SCHED, x_known, keep)
    g = torch.Generator().manual_seed(3)
    x_T = torch.randn(n, 1, 2, 2, generator=g, dtype=torch.float64)
    if sampler == "ddim":
        out = sample_ddim(den, x_T, SCHED, make_timesteps(1000, 50))
    elif sampler == "ddpm":
        out = sample_ddpm(den, x_T, SCHED, make_timesteps(1000, 100), generator=g)
    else:
        out = sample_repaint(den, x_T, SCHED, make_timesteps(1000, 100), jump_length=10, resamples=2, generator=g)
    assert torch.equal(out[..., 0], x_known[..., 0])  # bit-exact
    free = out[..., 1]  # independent pixels: the unknown region follows the data distribution
    assert free.mean().item() == pytest.approx(MU, abs=0.03)
    assert free.std().item() == pytest.approx(S, rel=0.08)


def test_repaint_moves_structure():
    ts = make_timesteps(1000, 20)
    moves = repaint_moves(ts, jump_length=5, resamples=3)
    down = [m for m in moves if m[1] < m[0]]
    up = [m for m in moves if m[1] > m[0]]
    assert moves[-1] == (0, -1) and moves[0] == (ts[0], ts[1])
    assert len(up) == 3 * 2  # blocks that end above 0: 3 of the 4, each resampled twice more
    assert len(down) == 20 + 3 * 2 * 5
    assert repaint_moves(ts, 5, 1) == list(zip(ts, [*ts[1:], -1]))  # resamples=1: plain DDPM chain
