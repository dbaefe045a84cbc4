"""PSNR and SSIM of a super-resolution checkpoint on held-out images against bicubic upsampling (issue 11).

    .venv/bin/python scripts/sr_quality.py ckpt=runs/<unet_sr run>/checkpoints/last.ckpt [aug=[0,100,250] n=64]

Each held-out image (the validation set of the upscaler's training data; for emoji, its test split) is downsampled
to the upscaler's low resolution the way training does it (antialiased bicubic), then brought back up by bicubic
interpolation and by the upscaler at each augmentation level; both are scored against the original.
Settings: configs/sr_quality.yaml. Prints a markdown table; writes the report as JSON and a PNG of the first 8
images (original, low-res, bicubic, each level) to out=. Bad input gets a one-line error and exit status 2.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from data import DatasetError
from diffusion.cascade import downsample, upsample
from diffusion.denoiser import cond_slice
from evaluation.data_config import held_out
from evaluation.image_quality import psnr, ssim
from sampling.atomic import OutputError, atomic_write_text
from sampling.cascade import sr_denoiser, stack_conditions, upscale_batches
from sampling.checkpoint import CheckpointError, load_model
from sampling.checks import InputError, check_number
from sampling.cli import build_job, compose_config, run_tool, to_dict
from sampling.io import captioned_rows


def scores(name: str, sr: torch.Tensor, truth: torch.Tensor) -> dict:
    """Mean and standard error of PSNR and SSIM of ``sr`` against ``truth``."""
    p, s = psnr(sr, truth), ssim(sr, truth)
    sem = lambda v: float(v.std() / len(v) ** 0.5) if len(v) > 1 else 0.0  # noqa: E731
    return {"method": name, "psnr": float(p.mean()), "psnr_sem": sem(p), "ssim": float(s.mean()), "ssim_sem": sem(s)}


def run(cfg: DictConfig) -> None:
    opts = to_dict(cfg)
    ckpt = Path(opts["ckpt"])
    out = Path(opts["out"]) if opts["out"] else ckpt.with_name(ckpt.stem + ".sr_quality.json")
    model = load_model(opts["ckpt"], opts["weights"])
    if model.low_res is None:
        raise InputError(f"ckpt={opts['ckpt']}: not an upscaler (a super-resolution checkpoint, model=unet_sr)")
    job, _ = build_job(compose_config("sample", [
        f"ckpt={opts['ckpt']}", f"weights={opts['weights']}", f"sampler={opts['sampler']}",
        f"sampler.steps={opts['steps']}", f"guidance={opts['guidance']}", f"seed={opts['seed']}",
        f"device={opts['device']}", "task=upscale"]), model)
    levels = list(opts["aug"]) if isinstance(opts["aug"], list) else [opts["aug"]]
    for a in levels:
        check_number("aug", a, 0, model.schedule.num_timesteps - 1, integer=True)
    check_number("batch_size", opts["batch_size"], 1, integer=True)
    truth, values = held_out(model, opts["n"])
    low = downsample(truth, model.low_res)
    bicubic = upsample(low, truth.shape[-1]).clamp(-1, 1)
    rows = [scores("bicubic", bicubic, truth)]
    pictures = [truth[:8], F.interpolate(low[:8], size=truth.shape[-2:], mode="nearest"), bicubic[:8]]
    captions = ["original", f"low-res {model.low_res} px (nearest)", "bicubic"]
    cond = stack_conditions([job.cond(v, 1, model) for v in values]) if model.cond_kind is not None else None
    null = job.cond(None, len(truth), model)

    def make_denoiser(lc, s, b):
        c = None if cond is None else cond_slice(cond, s, s + b)
        return sr_denoiser(job, model, lc, c, cond_slice(null, s, s + b) if null is not None else None)

    for a in levels:
        print(f"upscaling {len(truth)} images at aug {a}", flush=True)
        high = upscale_batches(replace(job, stage2_aug=int(a)), low, make_denoiser, opts["batch_size"], model)
        rows.append(scores(f"unet_sr, aug {a}", high, truth))
        pictures.append(high[:8])
        captions.append(f"unet_sr, aug {a}")
    print(f"| method (validation set, n={len(truth)}, {model.low_res}->{truth.shape[-1]}) | PSNR (dB) | SSIM |")
    print("|---|---:|---:|")
    for r in rows:
        print(f"| {r['method']} | {r['psnr']:.2f} ± {r['psnr_sem']:.2f} | {r['ssim']:.4f} ± {r['ssim_sem']:.4f} |")
    atomic_write_text(out, json.dumps({"settings": opts, "results": rows}, indent=2) + "\n")
    picture = out.with_suffix(".png")
    captioned_rows(pictures, captions).save(picture)
    print(f"report: {out}\npicture: {picture}")


def main(argv: list[str] | None = None) -> int:
    return run_tool(run, "sr_quality", argv, (CheckpointError, DatasetError, OutputError))


if __name__ == "__main__":
    sys.exit(main())
