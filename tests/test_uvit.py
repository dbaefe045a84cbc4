"""U-ViT (Bao et al. 2023): shapes, conditioning, long-skip pairing, text masking, sizes and Hydra presets."""

import pathlib

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from models.text import TextCond
from models.uvit import UViT

CONFIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "configs" / "model"
UVIT_PRESETS = ["uvit_cpu", "uvit_l2", "uvit_l4", "uvit_m2", "uvit_m4", "uvit_s2", "uvit_s4"]
TEXT_DIM = 384


def build(preset: str, channels: int = 3, image_size: int = 32, num_classes: int | None = 10, cond: str = "label",
          **kw):
    """Instantiate configs/model/<preset>.yaml as train.py does, with the data keys it interpolates."""
    data = {"channels": channels, "image_size": image_size, "num_classes": num_classes, "cond": cond}
    cfg = OmegaConf.merge({"data": data}, {"model": OmegaConf.load(CONFIG_DIR / f"{preset}.yaml")}, {"model": kw})
    return instantiate(cfg.model)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tiny(**kw) -> UViT:
    """A U-ViT small enough for many forwards on one CPU core: 16x16 input, width 32, 5 blocks."""
    args = dict(input_size=16, patch_size=2, in_channels=3, hidden_size=32, depth=5, num_heads=4)
    return UViT(**{**args, **kw}).eval()


def text_cond(B: int = 2, L: int = 6, real: int = 3, seed: int = 0) -> TextCond:
    """Random encodings of B prompts, the first ``real`` of L tokens real and the rest padding."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[:, :real] = True
    return TextCond(torch.randn(B, L, TEXT_DIM, generator=gen), mask, torch.randn(B, TEXT_DIM, generator=gen))


def cond_for(kind: str, B: int = 2):
    return {"label": torch.tensor([1, 4])[:B], "uncond": None, "text": text_cond(B)}[kind]


def model_for(kind: str, **kw) -> UViT:
    if kind == "text":
        return tiny(cond="text", num_classes=10, **kw)  # a text model ignores num_classes
    return tiny(num_classes=10 if kind == "label" else None, **kw)


@pytest.mark.parametrize("learn_sigma", [False, True])
@pytest.mark.parametrize("patch_size", [2, 4])
@pytest.mark.parametrize("kind", ["label", "uncond", "text"])
def test_output_shape(kind, patch_size, learn_sigma):
    torch.manual_seed(0)
    model = model_for(kind, patch_size=patch_size, learn_sigma=learn_sigma)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = model(x, torch.tensor([0.5, 999]), cond_for(kind))
    assert out.shape == (2, 6 if learn_sigma else 3, 16, 16)
    assert out.dtype == torch.float32 and torch.isfinite(out).all() and out.abs().max() > 0
    assert model.out_channels == out.shape[1] and model.in_channels == 3
    assert model.num_classes == (10 if kind == "label" else None)
    # extra tokens: label + time, time, time (+ text tokens, which carry no learned position)
    assert model.pos_embed.shape[1] == {"label": 2, "uncond": 1, "text": 1}[kind] + (16 // patch_size) ** 2


def test_null_label_equals_none_and_labels_matter():
    torch.manual_seed(0)
    model = model_for("label")
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([100, 100])
    with torch.no_grad():
        out_none, out_null = model(x, t, None), model(x, t, torch.full((2,), 10))
        out_a, out_b = model(x, t, torch.tensor([0, 0])), model(x, t, torch.tensor([7, 7]))
    assert torch.equal(out_none, out_null)
    assert (out_a - out_b).abs().max() > 1e-4 and (out_a - out_null).abs().max() > 1e-4


def test_unconditional_model_ignores_labels_and_time_matters():
    torch.manual_seed(0)
    model = model_for("uncond")
    assert model.label_embed is None
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([5, 900])
    with torch.no_grad():
        assert torch.equal(model(x, t, torch.tensor([0, 3])), model(x, t, None))
        assert (model(x, t) - model(x, torch.tensor([900, 5]))).abs().max() > 1e-4


def test_long_skip_pairs_in_block_i_with_out_block_depth_minus_i():
    """Out block j (0-based) fuses the output of in block depth // 2 - 1 - j: U-ViT's long skip from block i to
    block depth - i (1-based, Sec. 3), taken last in, first out as in a U-Net."""
    torch.manual_seed(0)
    model = tiny(depth=7, num_classes=10)
    half = 3
    assert len(model.in_blocks) == len(model.out_blocks) == half
    assert all(b.skip_linear is None for b in [*model.in_blocks, model.mid_block])
    in_outs, skip_ins = {}, {}
    handles = [b.register_forward_hook(lambda m, a, out, i=i: in_outs.__setitem__(i, out))
               for i, b in enumerate(model.in_blocks)]
    handles += [b.skip_linear.register_forward_pre_hook(lambda m, a, j=j: skip_ins.__setitem__(j, a[0]))
                for j, b in enumerate(model.out_blocks)]
    with torch.no_grad():
        model(torch.randn(2, 3, 16, 16), torch.tensor([3, 400]), torch.tensor([2, 9]))
    for h in handles:
        h.remove()
    D = model.hidden_size
    for j in range(half):
        skip = skip_ins[j][..., D:]  # cat([x, skip]): the second half is the skip
        assert torch.equal(skip, in_outs[half - 1 - j])
        assert all(not torch.equal(skip, in_outs[i]) for i in range(half) if i != half - 1 - j)
    # the first out block's main input is the mid block's output, not a skip
    assert not any(torch.equal(skip_ins[0][..., :D], v) for v in in_outs.values())


def test_padded_text_tokens_change_nothing():
    torch.manual_seed(0)
    model = model_for("text")
    cond = text_cond(real=3)
    x, t = torch.randn(2, 3, 16, 16), torch.tensor([10, 900])
    with torch.no_grad():
        out = model(x, t, cond)
        padded = cond.tokens.clone()
        padded[:, 3:] = 100 * torch.randn(2, 3, TEXT_DIM)
        assert torch.equal(model(x, t, TextCond(padded, cond.mask, cond.pooled)), out)
        # a longer padding (another max_length) changes nothing either: text tokens carry no learned position
        longer = TextCond(torch.cat([cond.tokens, torch.randn(2, 4, TEXT_DIM)], 1),
                          torch.cat([cond.mask, torch.zeros(2, 4, dtype=torch.bool)], 1), cond.pooled)
        assert torch.allclose(model(x, t, longer), out, atol=1e-6)
        real = cond.tokens.clone()
        real[:, :3] = torch.randn(2, 3, TEXT_DIM)
        assert (model(x, t, TextCond(real, cond.mask, cond.pooled)) - out).abs().max() > 1e-4
        pooled = TextCond(cond.tokens, cond.mask, torch.randn(2, TEXT_DIM))
        assert (model(x, t, pooled) - out).abs().max() > 1e-4  # the pooled vector reaches the time token


def test_bad_arguments_raise_value_error():
    args = dict(input_size=16, hidden_size=32, depth=3, num_heads=4)
    bad = [(dict(input_size=30, patch_size=4), "not divisible by patch_size"),
           (dict(hidden_size=30), "not divisible by num_heads")] + [(dict(depth=d), "must be odd") for d in (4, 0, -1)]
    for kw, match in bad:
        with pytest.raises(ValueError, match=match) as err:
            UViT(**{**args, **kw})
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="cond must be one of"):
        UViT(input_size=16, hidden_size=32, depth=3, num_heads=4, cond="image")
    with pytest.raises(ValueError, match="built for input_size 16"):
        tiny()(torch.randn(1, 3, 32, 32), torch.tensor([1]))
    with pytest.raises(ValueError, match="TextCond"):
        model_for("text")(torch.randn(2, 3, 16, 16), torch.tensor([1, 2]), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="batch 3"):
        model_for("text")(torch.randn(2, 3, 16, 16), torch.tensor([1, 2]), text_cond(B=3))


@pytest.mark.parametrize(
    "preset, channels, image_size, num_classes, millions",
    [
        ("uvit_s2", 3, 32, None, 44), ("uvit_s4", 3, 32, None, 44),
        ("uvit_m2", 3, 64, 1000, 131), ("uvit_m4", 3, 64, 1000, 131),
        ("uvit_l2", 3, 64, 1000, 287), ("uvit_l4", 3, 64, 1000, 287),
    ],
)
def test_presets_match_paper_parameter_counts(preset, channels, image_size, num_classes, millions):
    """Table 1 of the paper (U-ViT-S 44M, M 131M, L 287M), counted in the setting each size was trained in, with
    the official configs' qkv_bias=False, mlp_time_embed=False (the bare sinusoid as time token) and the 3x3
    output conv: S on CIFAR-10 (32x32x3, unconditional; U-ViT-S/2), M and L on ImageNet 64x64 (64x64x3, 1000
    classes; U-ViT-M/4, U-ViT-L/4). Each preset keeps its own patch size; the blocks hold over 99% of the count,
    so the patch size and setting move it by under 1%."""
    with torch.device("meta"):  # L holds 1.1 GB of fp32 weights; meta allocates none
        model = build(preset, channels=channels, image_size=image_size, num_classes=num_classes)
    assert count(model) == pytest.approx(millions * 1e6, rel=0.03)
    assert model.num_classes == num_classes and model.out_channels == channels


def test_uvit_cpu_matches_unet_small_size():
    """uvit_cpu is the U-ViT of the CPU ablation: within 5% of unet_small's parameters on Fashion-MNIST
    (32x32x1, 10 classes)."""
    with torch.device("meta"):
        uvit = build("uvit_cpu", channels=1, num_classes=10)
        unet = build("unet_small", channels=1, num_classes=10)
    assert type(unet).__name__ == "UNet"
    assert count(uvit) / count(unet) == pytest.approx(1.0, abs=0.05)
    assert uvit.patch_size == 2 and len(uvit.in_blocks) * 2 + 1 == 7


@pytest.mark.parametrize("kind", ["label", "text"])
def test_every_parameter_gets_a_gradient(kind):
    torch.manual_seed(0)
    model = model_for(kind).train()
    out = model(torch.randn(2, 3, 16, 16), torch.tensor([3, 700]), cond_for(kind))
    out.square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_initialisation_follows_the_official_code():
    torch.manual_seed(0)
    model = tiny(hidden_size=128, num_heads=4, num_classes=10, qkv_bias=True)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert all(not m.bias.any() for m in linears)
    assert model.mid_block.mlp[0].weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.pos_embed.std().item() == pytest.approx(0.02, rel=0.05)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any() for m in norms)
    assert tiny().in_blocks[0].attn.qkv.bias is None  # the paper's qkv_bias=False


def test_conv_out_is_a_3x3_conv_or_nothing():
    with_conv, without = tiny(), tiny(conv_out=False)
    assert isinstance(with_conv.conv_out, torch.nn.Conv2d) and with_conv.conv_out.kernel_size == (3, 3)
    assert isinstance(without.conv_out, torch.nn.Identity)
    assert count(with_conv) - count(without) == 3 * 3 * 3 * 3 + 3


@pytest.mark.parametrize("cond", ["label", "text"])
@pytest.mark.parametrize("preset", UVIT_PRESETS)
def test_presets_instantiate_through_hydra(preset, cond):
    with torch.device("meta"):
        model = build(preset, channels=1, num_classes=10, cond=cond)
    assert isinstance(model, UViT) and model.cond == cond and model.input_size == 32
    assert model.in_channels == model.out_channels == 1
    assert model.num_classes == (10 if cond == "label" else None)
    depth = OmegaConf.load(CONFIG_DIR / f"{preset}.yaml").depth
    assert len(model.in_blocks) == len(model.out_blocks) == depth // 2


@pytest.mark.parametrize("cond", ["label", "text"])
def test_uvit_cpu_runs_through_hydra(cond):
    torch.manual_seed(0)
    model = build("uvit_cpu", channels=1, num_classes=10, cond=cond).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        out = model(x, torch.tensor([1, 500]), cond_for(cond))
    assert out.shape == x.shape and torch.isfinite(out).all() and out.abs().max() > 0
