"""simple diffusion (Hoogeboom et al. 2023): the shifted cosine schedule (Sec. 3.1) and the U-Net's per-level
block counts and low-resolution dropout (Sec. 3.3, 3.4), whose defaults must leave ADM's U-Net untouched."""

import hashlib
import math
import re

import pytest
import torch
from hydra.utils import instantiate

from diffusion.schedules import Schedule, shifted_cosine_schedule
from models.unet import Level, ResBlock, SuperResUNet, UNet
from tests.test_configs import compose_train
from tests.test_models import CONFIG_DIR, build, count, perturb

LOGSNR_MIN, LOGSNR_MAX = -15.0, 15.0
T_MIN, T_MAX = math.atan(math.exp(-0.5 * LOGSNR_MAX)), math.atan(math.exp(-0.5 * LOGSNR_MIN))


def logsnr(schedule: Schedule) -> torch.Tensor:
    """log(alpha_bar / (1 - alpha_bar)) per timestep, float64."""
    ab = schedule.alphas_cumprod
    return torch.log(ab / (1 - ab))


def clipped_cosine(t: float, lo: float = LOGSNR_MIN, hi: float = LOGSNR_MAX) -> float:
    """The paper's logsnr_schedule_cosine, written out independently in plain floats."""
    t_min, t_max = math.atan(math.exp(-0.5 * hi)), math.atan(math.exp(-0.5 * lo))
    return -2 * math.log(math.tan(t_min + t * (t_max - t_min)))


# --- the shifted cosine schedule -----------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [16, 32, 128, 256])
def test_shift_is_two_log_base_over_resolution_at_every_timestep(resolution):
    plain, shifted = shifted_cosine_schedule(1000, 64, 64), shifted_cosine_schedule(1000, resolution, 64)
    diff = logsnr(shifted) - logsnr(plain)
    # 1e-9: log(ab / (1 - ab)) loses ~1e-16 / (1 - ab) near ab = 1 (logsnr up to ~15 here)
    torch.testing.assert_close(diff, torch.full_like(diff, 2 * math.log(64 / resolution)), rtol=0, atol=1e-9)
    # a larger image gets more noise at every step, a smaller one less
    assert bool(((diff < 0) if resolution > 64 else (diff > 0)).all())


@pytest.mark.parametrize("lo, hi", [(LOGSNR_MIN, LOGSNR_MAX), (-10.0, 8.0)])
def test_unshifted_schedule_is_the_clipped_cosine(lo, hi):
    T = 1000
    s = shifted_cosine_schedule(T, 32, 32, logsnr_min=lo, logsnr_max=hi)
    got = logsnr(s)
    for i in [0, 1, 10, 250, 499, 750, 998, 999]:
        assert got[i].item() == pytest.approx(clipped_cosine((i + 1) / T, lo, hi), abs=1e-9)
    assert got[-1].item() == pytest.approx(lo, abs=1e-9)  # t = 1 sits at the lower clip
    assert hi - 3 < got[0].item() < hi  # t = 1/T lies just inside the upper clip
    assert bool((got <= hi).all() and (got >= lo - 1e-9).all())


def test_symmetric_clip_puts_alpha_bar_one_half_at_t_one_half():
    # atan(e^-7.5) + atan(e^7.5) = pi/2, so t = 1/2 maps to pi/4, tan = 1, logsnr = 0: alpha_bar = 1/2 exactly
    assert shifted_cosine_schedule(1000).alphas_cumprod[499].item() == pytest.approx(0.5, abs=1e-15)


def test_clip_matches_the_unclipped_cosine_in_the_middle():
    # -2 log tan(pi t / 2) and its clipped form differ by O(t_min) ~ 1e-3 away from the ends
    T = 1000
    got = logsnr(shifted_cosine_schedule(T))
    for i in [199, 399, 599, 799]:
        t = (i + 1) / T
        assert got[i].item() == pytest.approx(-2 * math.log(math.tan(math.pi * t / 2)), abs=1e-2)


def test_interpolated_schedule_is_the_papers_mix():
    # simple diffusion Sec. 3.1: logsnr(t) = t logsnr_shift(t; low) + (1 - t) logsnr_shift(t; high), here at
    # resolution 512 with low = 32 (base_resolution, governs t -> 1) and high = 256 (interpolate_base, t -> 0)
    T, res, low, high = 1000, 512, 32, 256
    mixed = logsnr(shifted_cosine_schedule(T, res, low, interpolate_base=high))
    for i in [0, 99, 499, 899, 999]:
        t = (i + 1) / T
        expected = t * (clipped_cosine(t) + 2 * math.log(low / res)) + (1 - t) * (
            clipped_cosine(t) + 2 * math.log(high / res)
        )
        assert mixed[i].item() == pytest.approx(expected, abs=1e-8)
    by_low, by_high = logsnr(shifted_cosine_schedule(T, res, low)), logsnr(shifted_cosine_schedule(T, res, high))
    assert bool((mixed[:-1] > by_low[:-1]).all() and (mixed[:-1] < by_high[:-1]).all())  # strictly between
    assert mixed[-1].item() == pytest.approx(by_low[-1].item(), abs=1e-9)  # t = 1: all base_resolution
    # near t = 0 the mix is mostly the interpolate_base schedule, near t = 1 mostly the base_resolution one
    assert abs(mixed[0] - by_high[0]) < 0.01 < abs(mixed[0] - by_low[0])
    assert abs(mixed[989] - by_low[989]) < 0.1 < abs(mixed[989] - by_high[989])


@pytest.mark.parametrize("resolution, base, interp", [(64, 64, None), (256, 64, None), (16, 64, None),
                                                      (512, 32, 256), (128, 64, 128)])
def test_last_timestep_sits_at_logsnr_min_plus_shift(resolution, base, interp):
    got = logsnr(shifted_cosine_schedule(1000, resolution, base, interp))[-1].item()
    assert got == pytest.approx(LOGSNR_MIN + 2 * math.log(base / resolution), abs=1e-9)


@pytest.mark.parametrize("T", [1, 2, 3, 10, 1000, 4000])
@pytest.mark.parametrize("resolution, base, interp", [(64, 64, None), (256, 64, None), (8, 64, None),
                                                      (512, 32, 256), (64, 128, 32)])
def test_strictly_decreasing_float64_below_one(T, resolution, base, interp):
    ab = shifted_cosine_schedule(T, resolution, base, interp).alphas_cumprod
    assert ab.dtype == torch.float64 and ab.shape == (T,)
    assert bool((ab[1:] < ab[:-1]).all())
    assert 0 < float(ab[-1]) and float(ab[0]) < 1


@pytest.mark.parametrize("kwargs", [
    dict(timesteps=0), dict(resolution=0), dict(base_resolution=0), dict(interpolate_base=0),
    dict(logsnr_min=5.0, logsnr_max=5.0), dict(logsnr_min=6.0, logsnr_max=5.0),
    dict(timesteps=2, resolution=1, base_resolution=10**9),  # shift +41: alpha_bar[0] rounds to 1, alpha_bar[1] not
])
def test_bad_arguments_raise_one_line_value_errors(kwargs):
    with pytest.raises(ValueError) as err:
        shifted_cosine_schedule(**kwargs)
    assert "\n" not in str(err.value)


def test_config_composes_with_the_data_resolution(tmp_path):
    cfg = compose_train(tmp_path, "diffusion/schedule=shifted_cosine", "data.image_size=128")
    schedule = instantiate(cfg.diffusion.schedule)
    expected = shifted_cosine_schedule(1000, 128, 64)
    assert torch.equal(schedule.alphas_cumprod, expected.alphas_cumprod)


# --- the U-Net options ---------------------------------------------------------------------------------------


def resblock_sites(model: UNet, image_size: int) -> list[tuple[str, int, float]]:
    """(where, input resolution, dropout p) of every ResBlock in forward order, read by hooks on one forward."""
    names = {m: n for n, m in model.named_modules()}
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, args: seen.append((names[m], args[0].shape[-1],
                                                                      m.out_layers[1].p)))
             for m in model.modules() if isinstance(m, ResBlock)]
    with torch.no_grad():
        model.eval()(torch.randn(1, model.in_channels, image_size, image_size), torch.tensor([5]))
    for h in hooks:
        h.remove()
    assert len(seen) == sum(isinstance(m, ResBlock) for m in model.modules())  # every block ran once
    return seen


def small_unet(**kw) -> UNet:
    args = dict(base_channels=16, channel_mult=(1, 2, 2, 2), attention_resolutions=(8,), image_size=32)
    return UNet(**(args | kw))


def test_per_level_block_counts():
    model = small_unet(num_res_blocks=[1, 3, 2, 1])  # levels at 32, 16, 8, 4
    sites = resblock_sites(model, 32)
    down = [r for n, r, _ in sites if n.startswith("down.")]
    up = [r for n, r, _ in sites if n.startswith("up.")]
    assert down == [32] + [16] * 3 + [8] * 2 + [4]
    assert up == [4] * 2 + [8] * 3 + [16] * 4 + [32] * 2  # count + 1 per level in the decoder
    assert [r for n, r, _ in sites if n.startswith("middle")] == [4, 4]


@pytest.mark.parametrize("dropout_resolutions, dropped", [(None, {32, 16, 8, 4}), ([8, 4], {8, 4}), ([16], {16}),
                                                          ([], set()), ([64], set())])
def test_dropout_only_at_the_listed_resolutions(dropout_resolutions, dropped):
    model = small_unet(num_res_blocks=[1, 1, 2, 2], dropout=0.3, dropout_resolutions=dropout_resolutions)
    sites = resblock_sites(model, 32)
    assert {r for _, r, _ in sites} == {32, 16, 8, 4}
    for name, res, p in sites:
        assert p == (0.3 if res in dropped else 0.0), (name, res, p)
    assert (model.middle.res.out_layers[1].p > 0) == (4 in dropped)  # the middle block is at the lowest size


def test_super_res_unet_forwards_the_new_options():
    kw = dict(low_res=16, base_channels=16, channel_mult=(1, 2, 2), num_res_blocks=[1, 2, 1],
              attention_resolutions=(8,), image_size=32, dropout=0.2, dropout_resolutions=[8])
    model = SuperResUNet(**kw)
    levels = [m for m in model.down if isinstance(m, Level)]
    assert [m.res.in_layers[2].out_channels for m in levels] == [16, 32, 32, 32]  # 1 + 2 + 1 encoder blocks
    ps = {m.res.out_layers[1].p for m in levels}
    assert ps == {0.0, 0.2} and levels[-1].res.out_layers[1].p == 0.2 and levels[0].res.out_layers[1].p == 0.0


@pytest.mark.parametrize("bad", [[1, 2, 2], [1, 2, 2, 2, 2], [1, 0, 2, 2], [1, -1, 2, 2], [1, 2.5, 2, 2]])
def test_bad_block_lists_raise(bad):
    with pytest.raises(ValueError, match="num_res_blocks"):
        small_unet(num_res_blocks=bad)


def key_digest(model: torch.nn.Module) -> str:
    return hashlib.sha256(";".join(f"{k}:{tuple(v.shape)}" for k, v in model.state_dict().items()).encode()
                          ).hexdigest()[:16]


# Pins the refactor that added the two options: the state-dict keys and shapes (sha256 of "key:shape;...") and
# parameter counts of U-Nets built with the old arguments, taken from the code before the change.
GOLDEN = [
    (dict(base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attention_resolutions=(8,), image_size=32,
          num_classes=10), "e84e89091ae96e47", 1193795),
    (dict(base_channels=32, channel_mult=(1, 2, 3, 4), num_res_blocks=3, attention_resolutions=(32, 16, 8),
          image_size=64, dropout=0.1, num_classes=10), "4d6fa5fdf7a32486", 7712547),
    (dict(base_channels=32, channel_mult=(1, 2, 2, 2), num_res_blocks=2, attention_resolutions=(16, 8),
          image_size=64, cond="text"), "76b128582b2bb5da", 3192163),
]


@pytest.mark.parametrize("kwargs, digest, params", GOLDEN)
def test_defaults_keep_the_old_state_dict(kwargs, digest, params):
    with torch.device("meta"):
        model = UNet(**kwargs)
    assert key_digest(model) == digest and count(model) == params


def test_super_res_unet_keeps_its_old_state_dict():
    with torch.device("meta"):
        model = SuperResUNet(low_res=32, base_channels=32, channel_mult=(1, 2, 2, 2), num_res_blocks=1,
                             attention_resolutions=(8,), image_size=64, num_classes=10)
    assert key_digest(model) == "e6ef93bf68cef513" and count(model) == 1651619


def seeded_outputs(**kw) -> tuple[dict, torch.Tensor]:
    """State dict and a train-mode (dropout on) output of a perturbed U-Net, everything from fixed seeds."""
    torch.manual_seed(0)
    model = perturb(small_unet(num_classes=10, dropout=0.2, **kw)).train()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    with torch.no_grad():
        return model.state_dict(), model(x, torch.tensor([3, 700]), torch.tensor([1, 2]))


@pytest.mark.parametrize("kw", [dict(num_res_blocks=[2, 2, 2, 2]), dict(dropout_resolutions=[32, 16, 8, 4]),
                                dict(num_res_blocks=(2, 2, 2, 2), dropout_resolutions=(4, 8, 16, 32))])
def test_defaults_are_bit_identical_to_their_explicit_spelling(kw):
    old_state, old_out = seeded_outputs(num_res_blocks=2)
    new_state, new_out = seeded_outputs(**({"num_res_blocks": 2} | kw))
    assert list(old_state) == list(new_state)
    assert all(torch.equal(old_state[k], new_state[k]) for k in old_state)
    assert torch.equal(old_out, new_out) and old_out.abs().max() > 0


def test_low_resolution_dropout_changes_only_what_it_should():
    # dropout at 4x4 only: a different train-mode output from dropout everywhere, the same eval-mode output
    (_, everywhere), (_, low_only) = seeded_outputs(), seeded_outputs(dropout_resolutions=[4])
    assert not torch.equal(everywhere, low_only)
    torch.manual_seed(0)
    a = perturb(small_unet(num_classes=10, dropout=0.2))
    torch.manual_seed(0)
    b = perturb(small_unet(num_classes=10, dropout=0.2, dropout_resolutions=[4]))
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([3, 700])
    with torch.no_grad():
        assert torch.equal(a(x, t), b(x, t))


# --- the unet_simple preset ----------------------------------------------------------------------------------


def test_unet_simple_layout_and_forward_at_64():
    torch.manual_seed(0)
    model = perturb(build("unet_simple", image_size=64))
    sites = resblock_sites(model, 64)
    down = [r for n, r, _ in sites if n.startswith("down.")]
    assert down == [64, 32, 16, 16, 16, 8, 8]  # num_res_blocks [1, 1, 3, 2]: weighted toward 16x16
    assert {r for _, r, p in sites if p > 0} == {16, 8} and {r for _, r, p in sites if p == 0} == {64, 32}
    stated = re.search(r"\(([\d.]+)M at 64x64x3", (CONFIG_DIR / "unet_simple.yaml").read_text().splitlines()[0])
    assert stated and round(count(model) / 1e6, 2) == float(stated.group(1))
    assert 1.5e6 < count(model) < 3e6
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x, torch.tensor([10, 900]), torch.tensor([1, 10]))
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all() and out.abs().max() > 0
