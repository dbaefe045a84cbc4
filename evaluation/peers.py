"""Our U-Net and DiT beside diffusers' UNet2DModel and DiTTransformer2DModel at the same size (the benchmarks' peers).

A pair is built from a preset: a configs/model YAML with benchmark overrides. The diffusers twin gets the keywords
that give it the same widths, levels, blocks, heads and groups, so that parameter counts agree within
PARAM_TOLERANCE; the diffusers package is imported only when a pair is built.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from models.dit import DiT
from models.unet import UNet

MODEL_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"
PARAM_TOLERANCE = 0.05  # parameter counts of a pair must agree within this fraction

# Preset name -> (configs/model YAML it starts from, overrides for the benchmark). Any YAML stem in
# configs/model/ is accepted too (e.g. unet_preset=unet_small).
UNET_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    # DDPM's layout at a quarter of the width and one level fewer, 1.74M parameters: about 1 s a step at
    # batch 32 on 2 idle CPU cores (base 64 takes about 4x as long).
    "cpu": ("unet_small", {"num_res_blocks": 2, "attention_resolutions": [16]}),
    # DDPM's CIFAR-10 U-Net (Ho et al. 2020, App. B), 35.7M parameters: for a GPU.
    "ddpm_cifar": ("unet_ddpm_cifar", {}),
    # 16 groups so every GroupNorm has the group count that diffusers' single norm_num_groups gives.
    "tiny": ("unet_tiny", {"num_groups": 16}),
}
DIT_PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "cpu": ("dit_cpu", {}),  # hidden 128, depth 6, 4 heads, patch 2
    "s2": ("dit_s2", {}),  # DiT-S/2: hidden 384, depth 12, 6 heads, patch 2 (for a GPU)
    "b2": ("dit_b2", {}),
    "tiny": ("dit_tiny", {}),
}


def model_config(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """configs/model/<name>.yaml as a dict, its ``${data.<key>}`` values filled from ``data``; ValueError if missing."""
    path = MODEL_CONFIGS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in MODEL_CONFIGS.glob("*.yaml")))
        raise ValueError(f"unknown model {name!r}: no configs/model/{name}.yaml (one of {known})")
    node = yaml.safe_load(path.read_text())
    for key, value in node.items():
        if isinstance(value, str) and "${" in value:
            # ${data.<key>}, or ${oc.select:data.<key>,<default>} (the default used when data has no such key)
            match = re.fullmatch(r"\$\{(oc\.select:)?data\.(\w+)(?:,(\w+))?\}", value)
            if match is None or (match.group(2) not in data and match.group(3) is None):
                raise ValueError(f"configs/model/{name}.yaml: {key}: {value} is not one of ${{data.<key>}}")
            node[key] = data.get(match.group(2), match.group(3))
    return node


def load_preset(
    name: str, presets: dict[str, tuple[str, dict[str, Any]]], image_size: int, channels: int, num_classes: int | None
) -> dict[str, Any]:
    """Constructor keywords of a model preset: its configs/model YAML with data.* filled in, then overrides."""
    yaml_name, overrides = presets.get(name, (name, {}))
    if not (MODEL_CONFIGS / f"{yaml_name}.yaml").is_file():
        known = ", ".join(sorted(presets))
        raise ValueError(f"unknown preset {name!r}: not one of {known} and no configs/model/{yaml_name}.yaml")
    data = {"image_size": image_size, "channels": channels, "num_classes": num_classes}
    kwargs = model_config(yaml_name, data)
    kwargs.pop("_target_")
    kwargs.update(overrides)
    return kwargs


def unet_preset(name: str, image_size: int = 32, channels: int = 3) -> dict[str, Any]:
    """Keywords of models.unet.UNet for a preset; unconditional (num_classes None)."""
    return load_preset(name, UNET_PRESETS, image_size, channels, None)


def dit_preset(name: str, image_size: int = 32, channels: int = 4, num_classes: int = 1000) -> dict[str, Any]:
    """Keywords of models.dit.DiT for a preset; class-conditional with num_classes labels."""
    return load_preset(name, DIT_PRESETS, image_size, channels, num_classes)


def diffusers_unet_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """UNet2DModel keywords for the same network as UNet(**cfg): widths, levels, blocks, attention placement.

    diffusers' up blocks hold layers_per_block + 1 resnets, as ADM's output_blocks; attention follows every
    resnet of a level whose resolution is in attention_resolutions, and the middle block is res-attn-res.
    """
    base, mult = cfg["base_channels"], list(cfg["channel_mult"])
    widths = [base * m for m in mult]
    resolutions = [cfg["image_size"] // 2**i for i in range(len(mult))]
    attends = [r in cfg["attention_resolutions"] for r in resolutions]
    # diffusers fixes the head width, we fix the head count: equal where every attention layer has one width.
    attention_widths = {w for w, a in zip(widths, attends) if a} | {widths[-1]}
    head_dim = min(attention_widths) // cfg["num_heads"]
    # diffusers has one group count; ours takes the largest <= num_groups dividing each layer's width.
    groups = math.gcd(*widths)
    groups = max(g for g in range(1, min(cfg["num_groups"], groups) + 1) if groups % g == 0)
    num_classes = cfg.get("num_classes")
    return {
        "sample_size": cfg["image_size"],
        "in_channels": cfg["in_channels"],
        "out_channels": cfg["in_channels"] * (2 if cfg["learn_sigma"] else 1),
        "block_out_channels": tuple(widths),
        "layers_per_block": cfg["num_res_blocks"],
        "down_block_types": tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attends),
        "up_block_types": tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attends)),
        "mid_block_type": "UNetMidBlock2D",
        "add_attention": True,  # ADM's middle block always attends
        "attention_head_dim": head_dim,
        "norm_num_groups": groups,
        "attn_norm_num_groups": groups,  # our middle attention has a GroupNorm whatever the embedding mode
        "resnet_time_scale_shift": "scale_shift" if cfg["use_scale_shift_norm"] else "default",
        "dropout": cfg["dropout"],
        "time_embedding_type": "positional",
        "flip_sin_to_cos": True,  # [cos, sin], as models.layers.timestep_embedding
        "freq_shift": 0,
        # Our LabelEmbedder has a row for the null label too.
        "num_class_embeds": None if num_classes is None else num_classes + 1,
    }


def unet_mapping_notes(ours: nn.Module, theirs: nn.Module) -> list[str]:
    """Where the built diffusers U-Net differs from ours in ways that change no parameter count."""
    notes = []
    groups_ours = sorted({m.num_groups for m in ours.modules() if isinstance(m, nn.GroupNorm)})
    groups_theirs = sorted({m.num_groups for m in theirs.modules() if isinstance(m, nn.GroupNorm)})
    if groups_ours != groups_theirs:
        notes.append(f"GroupNorm groups: ours {groups_ours}, diffusers {groups_theirs}")
    heads_ours = sorted({m.num_heads for m in ours.modules() if type(m).__name__ == "AttentionBlock"})
    heads_theirs = sorted({m.heads for m in theirs.modules() if type(m).__name__ == "Attention"})
    if heads_ours != heads_theirs:
        notes.append(f"attention heads: ours {heads_ours}, diffusers {heads_theirs}")
    return notes


def diffusers_dit_kwargs(cfg: dict[str, Any]) -> dict[str, Any]:
    """DiTTransformer2DModel keywords for the same network as DiT(**cfg)."""
    if cfg["num_classes"] is None:
        raise ValueError("DiTTransformer2DModel with ada_norm_zero needs class labels (num_embeds_ada_norm)")
    if cfg["mlp_ratio"] != 4.0:
        raise ValueError("DiTTransformer2DModel's FeedForward has mlp_ratio 4")
    return {
        "num_attention_heads": cfg["num_heads"],
        "attention_head_dim": cfg["hidden_size"] // cfg["num_heads"],
        "in_channels": cfg["in_channels"],
        "out_channels": cfg["in_channels"] * (2 if cfg["learn_sigma"] else 1),
        "num_layers": cfg["depth"],
        "sample_size": cfg["input_size"],
        "patch_size": cfg["patch_size"],
        "num_embeds_ada_norm": cfg["num_classes"],  # its LabelEmbedding adds the null row itself
        "norm_type": "ada_norm_zero",
        "norm_eps": 1e-6,
        "activation_fn": "gelu-approximate",
    }


def count_params(model: nn.Module) -> int:
    """Number of distinct parameters (shared ones once)."""
    return sum(p.numel() for p in model.parameters())


def build_unet_pair(cfg: dict[str, Any], device: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module]:
    """Our UNet(**cfg) and diffusers' UNet2DModel of the same layout, on device ("meta" builds no storage)."""
    from diffusers import UNet2DModel

    with torch.device(device):
        torch.manual_seed(0)
        ours = UNet(**cfg)
        torch.manual_seed(0)
        theirs = UNet2DModel(**diffusers_unet_kwargs(cfg))
    return ours, theirs


def tie_dit_embedders(model: nn.Module) -> int:
    """Share block 0's timestep/label embedder with every block; returns the parameters that removes.

    diffusers gives each block its own CombinedTimestepLabelEmbeddings (and uses block 0's for the final
    layer), where DiT has one; the converted DiT checkpoints hold identical copies. Sharing the module keeps
    the per-block compute diffusers does but gives the parameter set (and optimizer work) of DiT.
    """
    before = count_params(model)
    first = model.transformer_blocks[0].norm1.emb
    for block in model.transformer_blocks[1:]:
        block.norm1.emb = first
    return before - count_params(model)


def build_dit_pair(cfg: dict[str, Any], device: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module, int]:
    """Our DiT(**cfg), diffusers' DiTTransformer2DModel with tied embedders, and the count tying removed."""
    from diffusers import DiTTransformer2DModel

    with torch.device(device):
        torch.manual_seed(0)
        ours = DiT(**cfg)
        torch.manual_seed(0)
        theirs = DiTTransformer2DModel(**diffusers_dit_kwargs(cfg))
    return ours, theirs, tie_dit_embedders(theirs)


def forward_ours(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """Our networks' call: (x_t, t, labels) -> output shaped like x_t."""
    return model(x, t, y)


def forward_diffusers_unet(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """UNet2DModel's call, as forward_ours."""
    return model(x, t, class_labels=y).sample


def forward_diffusers_dit(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """DiTTransformer2DModel's call, as forward_ours."""
    return model(hidden_states=x, timestep=t, class_labels=y).sample
