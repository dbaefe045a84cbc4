"""Training throughput of our U-Net and DiT against diffusers' UNet2DModel and DiTTransformer2DModel.

Each pair is built at the same size from a preset in configs/model/ (parameter counts must agree within 5%),
fed the same tensors, and trained with the same step: forward, MSE to a random target, backward, AdamW.
After warm-up, R rounds alternate the two models (the order flips each round so drift hits both), each
timing N steps; we report the median images/s of each and the median of the per-round ratios ours/theirs.

    .venv/bin/python scripts/benchmark_train.py                       # CPU, fp32, both pairs
    .venv/bin/python scripts/benchmark_train.py --profile --json out.json
    .venv/bin/python scripts/benchmark_train.py --device cuda --dtype bf16 --unet-preset ddpm_cifar --dit-preset s2

The U-Net pair is unconditional (as DDPM's CIFAR-10 model); the DiT pair is class-conditional with
--dit-classes labels (1000 by default, as ImageNet DiTs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.dit import DiT  # noqa: E402
from models.unet import UNet  # noqa: E402

try:
    import diffusers
    from diffusers import DiTTransformer2DModel, UNet2DModel
except ImportError:  # the benchmark needs it; the message in main() says how to get it
    diffusers = None

PARAM_TOLERANCE = 0.05  # parameter counts of a pair must agree within this fraction

# Preset name -> (configs/model YAML it starts from, overrides for the benchmark). Any YAML stem in
# configs/model/ is accepted too (e.g. --unet-preset unet_small).
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


# ----------------------------------------------------------------------------------------------- configs


def load_preset(
    name: str, presets: dict[str, tuple[str, dict[str, Any]]], image_size: int, channels: int, num_classes: int | None
) -> dict[str, Any]:
    """Constructor keywords of a model preset: its configs/model YAML with data.* filled in, then overrides."""
    yaml_name, overrides = presets.get(name, (name, {}))
    path = ROOT / "configs" / "model" / f"{yaml_name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(presets))
        raise ValueError(f"unknown preset {name!r}: not one of {known} and no {path.relative_to(ROOT)}")
    data = {"image_size": image_size, "channels": channels, "num_classes": num_classes}
    cfg = OmegaConf.create({"data": data, "model": OmegaConf.load(path)})
    kwargs = OmegaConf.to_container(cfg.model, resolve=True)
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


# ----------------------------------------------------------------------------------------------- models


def count_params(model: nn.Module) -> int:
    """Number of distinct parameters (shared ones once)."""
    return sum(p.numel() for p in model.parameters())


def build_unet_pair(cfg: dict[str, Any], device: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module]:
    """Our UNet(**cfg) and diffusers' UNet2DModel of the same layout, on device ("meta" builds no storage)."""
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
    with torch.device(device):
        torch.manual_seed(0)
        ours = DiT(**cfg)
        torch.manual_seed(0)
        theirs = DiTTransformer2DModel(**diffusers_dit_kwargs(cfg))
    return ours, theirs, tie_dit_embedders(theirs)


def forward_ours(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return model(x, t, y)


def forward_diffusers_unet(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return model(x, t, class_labels=y).sample


def forward_diffusers_dit(model: nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return model(hidden_states=x, timestep=t, class_labels=y).sample


# ----------------------------------------------------------------------------------------------- timing

Forward = Callable[[nn.Module, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


class Trainer:
    """One model, its AdamW and a closure doing one training step on fixed tensors."""

    def __init__(self, model: nn.Module, forward: Forward, batch: dict[str, Any], amp_dtype: torch.dtype | None):
        self.model = model.train()
        self.forward = forward
        self.batch = batch
        self.amp_dtype = amp_dtype
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)

    def step(self) -> None:
        x, t, y, target = self.batch["x"], self.batch["t"], self.batch["y"], self.batch["target"]
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            out = self.forward(self.model, x, t, y)
        loss = F.mse_loss(out.float(), target)
        loss.backward()
        self.opt.step()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(trainer: Trainer, steps: int, device: torch.device) -> float:
    """Seconds for `steps` training steps."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.step()
    synchronize(device)
    return time.perf_counter() - start


def profile_step(trainer: Trainer, device: torch.device, row_limit: int = 15) -> tuple[str, list[dict[str, Any]]]:
    """A torch.profiler table of one step (top ops by self time) and the same rows as dicts."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        trainer.step()
        synchronize(device)
    # On a GPU the host time mostly measures kernel launches: rank by device time there.
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    averages = prof.key_averages()
    table = averages.table(sort_by=key, row_limit=row_limit)
    rows = sorted(averages, key=lambda e: getattr(e, key), reverse=True)[:row_limit]
    top = [{"op": e.key, "self_us": float(getattr(e, key)), "calls": e.count} for e in rows]
    return table, top


def run_pair(
    name: str,
    ours: nn.Module,
    theirs: nn.Module,
    forward_theirs: Forward,
    batch: dict[str, Any],
    args: argparse.Namespace,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> dict[str, Any]:
    """Warm up each model, then time alternating rounds; images/s per round, peak memory, optional profile."""
    trainers = {}
    peak_mib: dict[str, float | None] = {"ours": None, "theirs": None}
    for side, model, fwd in (("ours", ours, forward_ours), ("theirs", theirs, forward_theirs)):
        # Built one after the other so each peak counts the model's own params, grads, state and activations.
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            baseline = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
        trainers[side] = Trainer(model.to(device), fwd, batch, amp_dtype)
        for _ in range(args.warmup):
            trainers[side].step()
        if device.type == "cuda" and args.warmup > 0:  # the peak of the warm-up steps
            torch.cuda.synchronize(device)
            peak_mib[side] = (torch.cuda.max_memory_allocated(device) - baseline) / 2**20

    images = args.steps * args.batch_size
    per_round: dict[str, list[float]] = {"ours": [], "theirs": []}
    for r in range(args.rounds):
        order = ("ours", "theirs") if r % 2 == 0 else ("theirs", "ours")
        for side in order:
            per_round[side].append(images / time_steps(trainers[side], args.steps, device))
        print(
            f"  {name} round {r + 1}/{args.rounds}: ours {per_round['ours'][-1]:8.1f} img/s, "
            f"diffusers {per_round['theirs'][-1]:8.1f} img/s",
            flush=True,
        )
    ratios = [o / t for o, t in zip(per_round["ours"], per_round["theirs"])]
    result = {
        "img_per_s_ours": statistics.median(per_round["ours"]),
        "img_per_s_theirs": statistics.median(per_round["theirs"]),
        "ratio": statistics.median(ratios),
        "img_per_s_ours_rounds": per_round["ours"],
        "img_per_s_theirs_rounds": per_round["theirs"],
        "ratio_rounds": ratios,
        "peak_mib_ours": peak_mib["ours"],
        "peak_mib_theirs": peak_mib["theirs"],
    }
    if args.profile:
        for side, label in (("ours", "ours"), ("theirs", "diffusers")):
            table, top = profile_step(trainers[side], device)
            print(f"\n=== {name} {label}: one training step, top 15 ops by self time ===\n{table}")
            result[f"profile_{side}"] = top
    return result


# ----------------------------------------------------------------------------------------------- main


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def make_batch(
    batch_size: int, channels: int, out_channels: int, image_size: int, num_classes: int | None, device: torch.device
) -> dict[str, Any]:
    """Inputs x_t, t, labels and a random regression target, from a fixed seed."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch_size, channels, image_size, image_size, generator=g)
    target = torch.randn(batch_size, out_channels, image_size, image_size, generator=g)
    t = torch.randint(0, 1000, (batch_size,), generator=g)
    y = None if num_classes is None else torch.randint(0, num_classes, (batch_size,), generator=g)
    return {
        "x": x.to(device),
        "t": t.to(device),
        "y": None if y is None else y.to(device),
        "target": target.to(device),
    }


def check_params(name: str, n_ours: int, n_theirs: int) -> bool:
    ratio = n_ours / n_theirs
    ok = abs(ratio - 1) <= PARAM_TOLERANCE
    verdict = "ok" if ok else f"MISMATCH (more than {PARAM_TOLERANCE:.0%} apart)"
    print(f"  {name} params: ours {n_ours:,}, diffusers {n_theirs:,}, ratio {ratio:.4f}: {verdict}")
    return ok


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", choices=["unet", "dit"], help="benchmark one pair only")
    p.add_argument("--unet-preset", default="cpu", help=f"{', '.join(UNET_PRESETS)} or a configs/model YAML stem")
    p.add_argument("--dit-preset", default="cpu", help=f"{', '.join(DIT_PRESETS)} or a configs/model YAML stem")
    p.add_argument("--dit-classes", type=int, default=1000, help="class labels of the DiT pair")
    p.add_argument("--dit-channels", type=int, default=4, help="input channels of the DiT pair (4: SD latents)")
    p.add_argument("--unet-channels", type=int, default=3, help="input channels of the U-Net pair")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--rounds", type=int, default=7, help="timed rounds, alternating ours/diffusers")
    p.add_argument("--steps", type=int, default=5, help="training steps per model per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16: torch.autocast")
    p.add_argument("--threads", type=int, default=available_cores(), help="torch.set_num_threads (default all)")
    p.add_argument("--profile", action="store_true", help="torch.profiler table of one step of each model")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    if min(args.rounds, args.steps, args.batch_size, args.threads) < 1 or args.warmup < 0:
        p.error("--rounds, --steps, --batch-size and --threads must be >= 1, --warmup >= 0")
    return args


def benchmark(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """All requested pairs: a results dict and whether every pair's parameter counts agree."""
    device = torch.device(args.device)
    amp_dtype = torch.bfloat16 if args.dtype == "bf16" else None
    report: dict[str, Any] = {
        "device": device_name(device),
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "dtype": args.dtype,
        "rounds": args.rounds,
        "steps": args.steps,
        "warmup": args.warmup,
        "pairs": {},
    }
    print(
        f"device: {report['device']} ({device.type}, {report['threads']} threads); torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}; batch {args.batch_size}, {args.image_size}x{args.image_size}, "
        f"{args.dtype}; {args.warmup} warm-up + {args.rounds} rounds x {args.steps} steps",
        flush=True,
    )
    params_ok = True
    if args.only in (None, "unet"):
        cfg = unet_preset(args.unet_preset, args.image_size, args.unet_channels)
        kw = diffusers_unet_kwargs(cfg)
        print(f"\nU-Net preset {args.unet_preset!r} (unconditional): {cfg}")
        print(f"  diffusers UNet2DModel: {kw}")
        ours, theirs = build_unet_pair(cfg)
        for note in unet_mapping_notes(ours, theirs):
            print(f"  note: {note}")
        n_ours, n_theirs = count_params(ours), count_params(theirs)
        ok = check_params("U-Net", n_ours, n_theirs)
        params_ok &= ok
        entry = {"preset": args.unet_preset, "config": cfg, "diffusers_config": kw, "conditional": False}
        entry |= {"params_ours": n_ours, "params_theirs": n_theirs, "param_ratio": n_ours / n_theirs}
        if ok:
            out_ch = kw["out_channels"]
            batch = make_batch(args.batch_size, cfg["in_channels"], out_ch, args.image_size, None, device)
            entry |= run_pair("U-Net", ours, theirs, forward_diffusers_unet, batch, args, device, amp_dtype)
        report["pairs"]["unet"] = entry
        del ours, theirs
    if args.only in (None, "dit"):
        cfg = dit_preset(args.dit_preset, args.image_size, args.dit_channels, args.dit_classes)
        kw = diffusers_dit_kwargs(cfg)
        print(f"\nDiT preset {args.dit_preset!r} ({args.dit_classes} classes): {cfg}")
        print(f"  diffusers DiTTransformer2DModel: {kw}")
        ours, theirs, tied = build_dit_pair(cfg)
        n_ours, n_theirs = count_params(ours), count_params(theirs)
        print(
            f"  note: diffusers as shipped has {n_theirs + tied:,} params: a timestep/label embedder per block; "
            f"tied to block 0's (as DiT's single embedder) it has {n_theirs:,}"
        )
        ok = check_params("DiT", n_ours, n_theirs)
        params_ok &= ok
        entry = {"preset": args.dit_preset, "config": cfg, "diffusers_config": kw, "conditional": True}
        entry |= {"params_ours": n_ours, "params_theirs": n_theirs, "param_ratio": n_ours / n_theirs}
        entry["params_theirs_untied"] = n_theirs + tied
        if ok:
            out_ch = kw["out_channels"]
            batch = make_batch(args.batch_size, cfg["in_channels"], out_ch, args.image_size, args.dit_classes, device)
            entry |= run_pair("DiT", ours, theirs, forward_diffusers_dit, batch, args, device, amp_dtype)
        report["pairs"]["dit"] = entry
    return report, params_ok


def print_table(report: dict[str, Any]) -> None:
    names = {"unet": "U-Net / UNet2DModel", "dit": "DiT / DiTTransformer2DModel"}
    gpu = report["device_type"] == "cuda"
    header = f"{'network pair':28} {'preset':11} {'params ours':>12} {'params diff.':>12} {'p-ratio':>7}"
    header += f" {'img/s ours':>10} {'img/s diff.':>11} {'ours/diff.':>10}"
    header += f" {'MiB ours':>9} {'MiB diff.':>9}" if gpu else ""
    print(f"\n{report['device']}, {report['threads']} threads, batch {report['batch_size']}, {report['dtype']}")
    print(header)
    print("-" * len(header))
    for key, e in report["pairs"].items():
        line = f"{names[key]:28} {e['preset']:11} {e['params_ours']:>12,} {e['params_theirs']:>12,}"
        line += f" {e['param_ratio']:>7.3f}"
        if "img_per_s_ours" in e:
            line += f" {e['img_per_s_ours']:>10.1f} {e['img_per_s_theirs']:>11.1f} {e['ratio']:>10.3f}"
            if gpu and e["peak_mib_ours"] is not None:
                line += f" {e['peak_mib_ours']:>9.0f} {e['peak_mib_theirs']:>9.0f}"
        else:
            line += "  not timed: parameter counts disagree"
        print(line)
    print("img/s: median over rounds; ours/diff.: median of the per-round ratios (> 1: ours is faster)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 on success, 1 when a pair's parameter counts are more than 5% apart."""
    args = parse_args(argv)
    if diffusers is None:
        print("diffusers is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 2
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        report, params_ok = benchmark(args)
    finally:
        torch.set_num_threads(previous_threads)
    print_table(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    if not params_ok:
        print(f"error: parameter counts more than {PARAM_TOLERANCE:.0%} apart", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
