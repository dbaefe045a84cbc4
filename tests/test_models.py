"""Contract tests for the backbones in models/, built through their Hydra presets in configs/model/."""

import inspect
import math
import pathlib
import re

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from models import DiT, UNet
from models.dit import sincos_pos_embed_2d
from models.layers import timestep_embedding
from models.unet import AttentionBlock, group_norm

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs" / "model"
PRESETS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
SMALL = ["dit_cpu", "dit_cpu_small", "dit_tiny", "unet_simple", "unet_small", "unet_tiny", "uvit_cpu"]
# Large presets that still run one batch-1 forward in about a second; the rest are only built on "meta".
MEDIUM = ["dit_b2", "dit_s2", "unet_ddpm_cifar"]
NUM_CLASSES = 10


def build(preset: str, channels: int = 3, image_size: int = 32, num_classes: int | None = NUM_CLASSES, **kw):
    """Instantiate configs/model/<preset>.yaml the way train.py does, with the data keys it interpolates."""
    data = {"channels": channels, "image_size": image_size, "num_classes": num_classes}
    cfg = OmegaConf.merge(
        {"data": data}, {"model": OmegaConf.load(CONFIG_DIR / f"{preset}.yaml")}, {"model": kw}
    )
    return instantiate(cfg.model)


def count(model: torch.nn.Module) -> int:
    """Number of parameters; buffers such as DiT's fixed pos_embed are not counted."""
    return sum(p.numel() for p in model.parameters())


def perturb(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give zero-initialised layers random weights, as training would, so every path reaches the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model.eval()


def test_presets_exist():
    assert set(SMALL) <= set(PRESETS)
    assert {"unet_ddpm_cifar", "dit_s2", "dit_b4", "dit_l8", "dit_xl2"} <= set(PRESETS)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_keys_are_constructor_kwargs(preset):
    cfg = OmegaConf.load(CONFIG_DIR / f"{preset}.yaml")
    params = inspect.signature(get_class(cfg._target_).__init__).parameters
    assert set(cfg.keys()) - {"_target_"} == set(params) - {"self"}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_comment_states_its_parameter_count(preset):
    first_line = (CONFIG_DIR / f"{preset}.yaml").read_text().splitlines()[0]
    size = 64 if "low_res" in OmegaConf.load(CONFIG_DIR / f"{preset}.yaml") else 32  # an upscaler from 32
    stated = re.search(rf"([\d.]+)M params at {size}x{size}x3, 10 classes", first_line)
    assert stated, f"{preset}.yaml must start with a comment giving its parameter count"
    with torch.device("meta"):
        model = build(preset, image_size=size)
    decimals = len(stated.group(1).split(".")[1])
    assert round(count(model) / 1e6, decimals) == float(stated.group(1))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("num_classes", [NUM_CLASSES, None])
@pytest.mark.parametrize("preset", SMALL)
def test_small_preset_forward_contract(preset, num_classes, channels):
    torch.manual_seed(0)
    model = perturb(build(preset, channels=channels, num_classes=num_classes))
    x = torch.randn(2, channels, 32, 32)
    with torch.no_grad():
        for t in (torch.tensor([0, 999]), torch.tensor([0.5, 500.25])):
            for cond in (torch.tensor([3, NUM_CLASSES]), None):
                out = model(x, t, cond)
                assert out.shape == x.shape
                assert out.dtype == torch.float32
                assert torch.isfinite(out).all()
                assert out.abs().max() > 0


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("num_classes", [NUM_CLASSES, None])
@pytest.mark.parametrize("preset", sorted(set(PRESETS) - set(SMALL) - {"unet_sr"}))  # unet_sr: test_cascade.py
def test_large_preset_builds(preset, num_classes, channels):
    with torch.device("meta"):  # L and XL hold up to 2.7 GB of fp32 weights; meta allocates none
        model = build(preset, channels=channels, num_classes=num_classes)
    assert model.in_channels == channels and model.out_channels == channels
    assert model.num_classes == num_classes
    assert count(model) > 30e6


@pytest.mark.parametrize("preset", MEDIUM)
def test_medium_preset_forward(preset):
    torch.manual_seed(0)
    model = perturb(build(preset))
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        out = model(x, torch.tensor([10]), torch.tensor([1]))
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().max() > 0


@pytest.mark.parametrize("preset", ["dit_tiny", "dit_cpu", "unet_tiny"])
@pytest.mark.parametrize("num_classes", [NUM_CLASSES, None])
def test_output_is_exactly_zero_at_init(preset, num_classes):
    # adaLN-Zero (DiT Sec. 3.2) and ADM's zeroed output convolution both start from a zero prediction.
    torch.manual_seed(0)
    model = build(preset, num_classes=num_classes, learn_sigma=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x, torch.tensor([1, 700]), torch.tensor([2, 5]) if num_classes else None)
    assert out.shape == (2, 6, 32, 32)
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize(
    "preset, millions", [("dit_s2", 33.0), ("dit_b2", 130.3), ("dit_l2", 458.0), ("dit_xl2", 675.1)]
)
def test_dit_matches_paper_parameter_count(preset, millions):
    # The published DiT counts are for the ImageNet-256 latent model: 32x32x4 input, 1000 classes, learned sigma.
    with torch.device("meta"):
        model = build(preset, channels=4, num_classes=1000, learn_sigma=True)
    assert count(model) == pytest.approx(millions * 1e6, rel=0.02)


def test_unet_ddpm_cifar_matches_paper_parameter_count():
    # DDPM (Ho et al. 2020, App. B) reports 35.7M parameters for its unconditional CIFAR-10 model.
    with torch.device("meta"):
        model = build("unet_ddpm_cifar", channels=3, num_classes=None)
    assert count(model) == pytest.approx(35.7e6, rel=0.03)


@pytest.mark.parametrize("preset", ["unet_tiny", "dit_tiny"])
def test_labels_condition_the_output(preset):
    torch.manual_seed(0)
    model = perturb(build(preset))
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([100, 100])
    with torch.no_grad():
        out_a = model(x, t, torch.tensor([0, 0]))
        out_b = model(x, t, torch.tensor([7, 7]))
        out_null = model(x, t, torch.full((2,), NUM_CLASSES))
        out_none = model(x, t, None)
    assert (out_a - out_b).abs().max() > 1e-3
    assert (out_a - out_null).abs().max() > 1e-3
    assert torch.equal(out_none, out_null)


@pytest.mark.parametrize("preset", ["unet_tiny", "dit_tiny"])
def test_unconditional_model_ignores_labels(preset):
    torch.manual_seed(0)
    model = perturb(build(preset, num_classes=None))
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([5, 900])
    with torch.no_grad():
        assert torch.equal(model(x, t, torch.tensor([0, 3])), model(x, t, None))


@pytest.mark.parametrize("preset", ["unet_tiny", "dit_tiny"])
def test_timestep_conditions_the_output(preset):
    torch.manual_seed(0)
    model = perturb(build(preset))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert (model(x, torch.tensor([1, 1])) - model(x, torch.tensor([900, 900]))).abs().max() > 1e-3


def test_unet_works_at_28_and_rejects_30():
    model = perturb(
        UNet(
            in_channels=1,
            base_channels=16,
            channel_mult=(1, 2, 2),
            num_res_blocks=1,
            attention_resolutions=(14,),
            image_size=28,
        )
    )
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        out = model(x, torch.tensor([3, 4]))
    assert out.shape == x.shape and out.abs().max() > 0
    with pytest.raises(ValueError, match="not divisible"):
        UNet(in_channels=1, base_channels=16, channel_mult=(1, 2, 2), image_size=30)
    with pytest.raises(ValueError, match="not divisible"):
        model(torch.randn(2, 1, 30, 30), torch.tensor([3, 4]))


@pytest.mark.parametrize("image_size, expected", [(32, 4), (28, 1)])
def test_unet_attends_at_requested_resolutions(image_size, expected):
    # unet_small attends at 8x8: one down block, two up blocks and the middle; at 28x28 no level is 8x8.
    with torch.device("meta"):
        model = build("unet_small", image_size=image_size)
    assert sum(isinstance(m, AttentionBlock) for m in model.modules()) == expected


def test_group_norm_fits_narrow_layers():
    assert [group_norm(c, 32).num_groups for c in (16, 32, 48, 96, 3)] == [16, 32, 24, 32, 3]


def test_non_divisible_sizes_raise_value_error():
    for preset, size in [("dit_s8", 28), ("unet_ddpm_cifar", 36)]:
        with pytest.raises(InstantiationException, match="not divisible") as err:
            build(preset, image_size=size)
        assert isinstance(err.value.__cause__, ValueError)
    with pytest.raises(ValueError, match="not divisible"):
        DiT(input_size=30, patch_size=4, hidden_size=64, depth=1, num_heads=4)
    with pytest.raises(ValueError, match="built for input_size 32"):
        build("dit_tiny")(torch.randn(1, 3, 16, 16), torch.tensor([1]))


def test_timestep_embedding_accepts_int_and_float():
    t_int, t_float = torch.tensor([0, 3, 999]), torch.tensor([0.0, 3.0, 999.0])
    emb = timestep_embedding(t_int, 7)
    assert emb.shape == (3, 7) and emb.dtype == torch.float32
    assert torch.equal(emb, timestep_embedding(t_float, 7))
    assert torch.equal(emb[0], torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]))  # cos(0), sin(0), pad
    assert emb[1, 3].item() == pytest.approx(math.sin(3.0))  # the first sine frequency is 1
    fractional = timestep_embedding(torch.tensor([2.5]), 8)
    assert not torch.equal(fractional, timestep_embedding(torch.tensor([2]), 8))


def test_pos_embed_matches_dit_reference_layout():
    # Re-derivation of DiT's numpy get_2d_sincos_pos_embed: first half encodes the column, second the row.
    dim, grid = 16, 3
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4))
    rows, cols = np.divmod(np.arange(grid * grid), grid)

    def one_d(pos):
        return np.concatenate([np.sin(pos[:, None] * omega), np.cos(pos[:, None] * omega)], axis=1)

    expected = np.concatenate([one_d(cols), one_d(rows)], axis=1)
    np.testing.assert_allclose(sincos_pos_embed_2d(dim, grid).numpy(), expected, rtol=1e-6, atol=1e-6)
