"""Score a checkpoint's samples against a dataset's real images: FID, KID, precision/recall, FD-classifier, accuracy.

    python scripts/evaluate.py ckpt=runs/<date>/<time>/checkpoints/last.ckpt data=fashion_mnist n=10000 \\
        sampler=ddim sampler.steps=50 [metrics=fid,kid,pr,fd,acc] [batch_size=64 seed=0 guidance=1.0 weights=ema]
    python scripts/evaluate.py ckpt=<base> stage2=<upscaler> [stage2_aug=250] ...   # a cascade, scored at 64 px
    python scripts/evaluate.py ckpt=<file> data=procedural n=1000 metrics=fd,acc     # fast on a CPU

Settings: configs/eval.yaml (Hydra overrides; without data=, the data node stored in the checkpoint). Writes
<ckpt stem>.eval.json beside the checkpoint, or out= (flat, scalar values: scripts/sweep_report.py merges it), and
prints the same report (evaluation/report.py). Bad input gets a one-line error and exit status 2.
"""

from __future__ import annotations

import json
import math
import sys
import time
from functools import partial
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from data import DatasetError
from diffusion.guidance import Guidance
from diffusion.samplers import schedule_timesteps
from evaluation.data_config import class_captions, data_node, reference_captions, split_data_overrides
from evaluation.features import FeatureError
from evaluation.report import check_options, evaluate, format_report
from sampling.atomic import OutputError, atomic_write_text
from sampling.cascade import check_stage2, upscale_samples
from sampling.checkpoint import CheckpointError, load_model
from sampling.cli import run_tool, to_dict
from sampling.job import Job
from sampling.settings import check_device, check_sampler, check_settings


def score(cfg: DictConfig, data_name: str | None, data_overrides: list[str]) -> dict:
    """configs/eval.yaml -> checked settings and built objects -> evaluation.report.evaluate's report."""
    started = time.perf_counter()
    cfg.device = "cuda" if cfg.device is None and torch.cuda.is_available() else cfg.device or "cpu"
    opts = check_options({k: v for k, v in to_dict(cfg).items() if k not in ("sampler", "data")})
    model = load_model(opts["ckpt"], weights=opts["weights"])
    check_settings(cfg, model.schedule.num_timesteps)  # seed, guidance, sampler.* (steps 1..T), device
    sampler = to_dict(cfg.sampler)
    steps, spacing = sampler.pop("steps"), sampler.pop("spacing")
    check_sampler(sampler, steps, spacing, model.parametrization.name, model.schedule)
    device = str(check_device(cfg.device))
    shape, upscale, upscale_settings = model.image_shape, None, None
    if cfg.stage2 is not None:  # the cascade: its upscaler runs on the samples, scored at the upscaler's size
        sr = load_model(cfg.stage2, weights=opts["weights"])
        check_stage2(model, sr, cfg.stage2)
        check_sampler(sampler, steps, spacing, sr.parametrization.name, sr.schedule)
        sr.net.to(device)
        job = Job(model, instantiate(sampler), steps, spacing, Guidance(float(opts["guidance"])), opts["seed"],
                  device, opts["weights"], stage2=sr, stage2_aug=int(cfg.stage2_aug))
        shape, upscale = sr.image_shape, partial(upscale_samples, job, batch_size=opts["batch_size"])
        upscale_settings = {"checkpoint": str(Path(cfg.stage2).resolve()), "aug": int(cfg.stage2_aug)}
    name, data_cfg = data_node(data_name, cfg.get("data"), data_overrides, model.config["data"], shape)
    return evaluate(
        model, name, data_cfg, checkpoint=opts["ckpt"], weights=opts["weights"], sampler=instantiate(sampler),
        sampler_name=sampler["_target_"].rsplit(".", 1)[-1].removeprefix("sample_"),
        sampler_settings={k: v for k, v in sampler.items() if not k.startswith("_")},
        timesteps=schedule_timesteps(model.schedule, steps, spacing), spacing=spacing,
        guidance=Guidance(float(opts["guidance"])), device=device, started=started, upscale=upscale,
        upscale_settings=upscale_settings,
        class_prompts=class_captions(data_cfg) if model.encoder is not None else None,
        sample_prompts=reference_captions(data_cfg) if model.encoder is not None else None,
        **{k: opts[k] for k in ("metrics", "n", "real_n", "batch_size", "seed", "k", "kid_subsets",
                                "kid_subset_size", "classifier")},
    )


def publish(report: dict, out: Path) -> None:
    """Print the report and write it as JSON to ``out`` (atomically: never half a file)."""
    bad = [k for k, v in report.items() if isinstance(v, float) and not math.isfinite(v)]
    print(format_report(report))
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"report: {out}")
    if bad:
        print(f"warning: non-finite values for {', '.join(bad)}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Evaluate as configs/eval.yaml and the overrides ``argv`` say; 0, or 2 with one error line."""
    argv = [f"metrics=[{a[8:]}]" if a.startswith("metrics=") and "," in a and a[8] not in "[\"'" else a  # fd,acc
            for a in (sys.argv[1:] if argv is None else argv)]
    data_name, data_overrides, argv = split_data_overrides(argv)

    def run(cfg: DictConfig) -> None:
        out = Path(cfg.out) if cfg.out else Path(cfg.ckpt).with_name(f"{Path(cfg.ckpt).stem}.eval.json")
        publish(score(cfg, data_name, data_overrides), out)

    return run_tool(run, "eval", argv, (CheckpointError, DatasetError, FeatureError, OutputError))


if __name__ == "__main__":
    sys.exit(main())
