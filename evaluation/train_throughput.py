"""Training throughput of our U-Net and DiT against their diffusers peers (scripts/benchmark_train.py).

Each pair (evaluation/peers.py) is fed the same tensors and trained with the same step: forward, MSE to a random
target, backward, AdamW. After warm-up, rounds alternate the two models (evaluation/timing.py), each timing
``steps`` steps; reported are the median images/s of each and the median of the per-round ratios ours/theirs.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from evaluation import peers
from evaluation.peers import PARAM_TOLERANCE, count_params, forward_ours
from evaluation.timing import device_name, paired_ratio, synchronize, time_rounds

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
        """One forward, MSE to the target, backward and AdamW step."""
        x, t, y, target = self.batch["x"], self.batch["t"], self.batch["y"], self.batch["target"]
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            out = self.forward(self.model, x, t, y)
        loss = F.mse_loss(out.float(), target)
        loss.backward()
        self.opt.step()

    def steps(self, n: int) -> None:
        """``n`` training steps."""
        for _ in range(n):
            self.step()


def make_batch(
    batch_size: int, channels: int, out_channels: int, image_size: int, num_classes: int | None, device: torch.device
) -> dict[str, Any]:
    """Inputs x_t, t, labels and a random regression target, from a fixed seed."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch_size, channels, image_size, image_size, generator=g)
    target = torch.randn(batch_size, out_channels, image_size, image_size, generator=g)
    t = torch.randint(0, 1000, (batch_size,), generator=g)
    y = None if num_classes is None else torch.randint(0, num_classes, (batch_size,), generator=g)
    return {"x": x.to(device), "t": t.to(device), "y": None if y is None else y.to(device), "target": target.to(device)}


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
    *,
    rounds: int,
    steps: int,
    warmup: int,
    profile: bool,
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
        trainers[side].steps(warmup)
        if device.type == "cuda" and warmup > 0:  # the peak of the warm-up steps
            torch.cuda.synchronize(device)
            peak_mib[side] = (torch.cuda.max_memory_allocated(device) - baseline) / 2**20

    images = steps * len(batch["x"])

    def progress(r: int, times: dict[str, list[float]]) -> None:
        ours_s, theirs_s = images / times["ours"][-1], images / times["theirs"][-1]
        print(f"  {name} round {r + 1}/{rounds}: ours {ours_s:8.1f} img/s, diffusers {theirs_s:8.1f} img/s", flush=True)

    runners = {side: partial(trainers[side].steps, steps) for side in ("ours", "theirs")}
    seconds = time_rounds(runners, rounds, device, progress=progress)
    per_round = {side: [images / s for s in seconds[side]] for side in seconds}
    ratios = [o / t for o, t in zip(per_round["ours"], per_round["theirs"])]
    result = {
        "img_per_s_ours": statistics.median(per_round["ours"]),
        "img_per_s_theirs": statistics.median(per_round["theirs"]),
        "ratio": paired_ratio(per_round["ours"], per_round["theirs"]),
        "img_per_s_ours_rounds": per_round["ours"],
        "img_per_s_theirs_rounds": per_round["theirs"],
        "ratio_rounds": ratios,
        "peak_mib_ours": peak_mib["ours"],
        "peak_mib_theirs": peak_mib["theirs"],
    }
    if profile:
        for side, label in (("ours", "ours"), ("theirs", "diffusers")):
            table, top = profile_step(trainers[side], device)
            print(f"\n=== {name} {label}: one training step, top 15 ops by self time ===\n{table}")
            result[f"profile_{side}"] = top
    return result


def check_params(name: str, n_ours: int, n_theirs: int) -> bool:
    """Print both parameter counts; whether they agree within PARAM_TOLERANCE."""
    ratio = n_ours / n_theirs
    ok = abs(ratio - 1) <= PARAM_TOLERANCE
    verdict = "ok" if ok else f"MISMATCH (more than {PARAM_TOLERANCE:.0%} apart)"
    print(f"  {name} params: ours {n_ours:,}, diffusers {n_theirs:,}, ratio {ratio:.4f}: {verdict}")
    return ok


def benchmark(
    *,
    only: str | None,
    unet_preset: str,
    dit_preset: str,
    dit_classes: int,
    dit_channels: int,
    unet_channels: int,
    image_size: int,
    batch_size: int,
    rounds: int,
    steps: int,
    warmup: int,
    device: str,
    dtype: str,
    profile: bool,
) -> tuple[dict[str, Any], bool]:
    """All requested pairs: a results dict and whether every pair's parameter counts agree."""
    import diffusers

    dev = torch.device(device)
    amp_dtype = torch.bfloat16 if dtype == "bf16" else None
    timing = {"rounds": rounds, "steps": steps, "warmup": warmup, "profile": profile, "device": dev,
              "amp_dtype": amp_dtype}
    report: dict[str, Any] = {
        "device": device_name(dev), "device_type": dev.type, "threads": torch.get_num_threads(),
        "torch": torch.__version__, "diffusers": diffusers.__version__, "batch_size": batch_size,
        "image_size": image_size, "dtype": dtype, "rounds": rounds, "steps": steps, "warmup": warmup, "pairs": {},
    }
    print(
        f"device: {report['device']} ({dev.type}, {report['threads']} threads); torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}; batch {batch_size}, {image_size}x{image_size}, "
        f"{dtype}; {warmup} warm-up + {rounds} rounds x {steps} steps",
        flush=True,
    )
    params_ok = True
    if only in (None, "unet"):
        cfg = peers.unet_preset(unet_preset, image_size, unet_channels)
        kw = peers.diffusers_unet_kwargs(cfg)
        print(f"\nU-Net preset {unet_preset!r} (unconditional): {cfg}")
        print(f"  diffusers UNet2DModel: {kw}")
        ours, theirs = peers.build_unet_pair(cfg)
        for note in peers.unet_mapping_notes(ours, theirs):
            print(f"  note: {note}")
        n_ours, n_theirs = count_params(ours), count_params(theirs)
        ok = check_params("U-Net", n_ours, n_theirs)
        params_ok &= ok
        entry = {"preset": unet_preset, "config": cfg, "diffusers_config": kw, "conditional": False}
        entry |= {"params_ours": n_ours, "params_theirs": n_theirs, "param_ratio": n_ours / n_theirs}
        if ok:
            batch = make_batch(batch_size, cfg["in_channels"], kw["out_channels"], image_size, None, dev)
            entry |= run_pair("U-Net", ours, theirs, peers.forward_diffusers_unet, batch, **timing)
        report["pairs"]["unet"] = entry
        del ours, theirs
    if only in (None, "dit"):
        cfg = peers.dit_preset(dit_preset, image_size, dit_channels, dit_classes)
        kw = peers.diffusers_dit_kwargs(cfg)
        print(f"\nDiT preset {dit_preset!r} ({dit_classes} classes): {cfg}")
        print(f"  diffusers DiTTransformer2DModel: {kw}")
        ours, theirs, tied = peers.build_dit_pair(cfg)
        n_ours, n_theirs = count_params(ours), count_params(theirs)
        print(
            f"  note: diffusers as shipped has {n_theirs + tied:,} params: a timestep/label embedder per block; "
            f"tied to block 0's (as DiT's single embedder) it has {n_theirs:,}"
        )
        ok = check_params("DiT", n_ours, n_theirs)
        params_ok &= ok
        entry = {"preset": dit_preset, "config": cfg, "diffusers_config": kw, "conditional": True}
        entry |= {"params_ours": n_ours, "params_theirs": n_theirs, "param_ratio": n_ours / n_theirs}
        entry["params_theirs_untied"] = n_theirs + tied
        if ok:
            batch = make_batch(batch_size, cfg["in_channels"], kw["out_channels"], image_size, dit_classes, dev)
            entry |= run_pair("DiT", ours, theirs, peers.forward_diffusers_dit, batch, **timing)
        report["pairs"]["dit"] = entry
    return report, params_ok


def print_table(report: dict[str, Any]) -> None:
    """The pairs' parameter counts, images/s, their ratio and (on a GPU) peak memory, one line each."""
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
