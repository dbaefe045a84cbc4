"""scripts/evaluate.py's configuration turned into an evaluation: the evaluators' config -> objects boundary, shared
by scripts/evaluate.py and scripts/nfe_sweep.py."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from diffusion.guidance import Guidance
from diffusion.samplers import schedule_timesteps
from evaluation.data_config import class_captions, data_node, reference_captions
from evaluation.report import check_options, evaluate
from sampling.cascade import check_stage2, upscale_samples
from sampling.checkpoint import load_model
from sampling.checks import check_number
from sampling.cli import to_dict
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
    sigma_max = check_number("sampler.sigma_max", sampler.pop("sigma_max", None), 0, lo_open=True, allow_none=True)
    check_sampler(sampler, steps, spacing, model.parametrization.name, model.schedule)
    device = str(check_device(cfg.device))
    shape, upscale, upscale_settings = model.image_shape, None, None
    if cfg.stage2 is not None:  # the cascade: its upscaler runs on the samples, scored at the upscaler's size
        sr = load_model(cfg.stage2, weights=opts["weights"])
        check_stage2(model, sr, cfg.stage2)
        check_number("stage2_aug", cfg.stage2_aug, 0, sr.schedule.num_timesteps - 1, integer=True)
        check_sampler(sampler, steps, spacing, sr.parametrization.name, sr.schedule)
        sr.net.to(device)
        job = Job(model, instantiate(sampler), steps, spacing, Guidance(float(opts["guidance"])), opts["seed"],
                  device, opts["weights"], stage2=sr, stage2_aug=int(cfg.stage2_aug), sigma_max=sigma_max)
        shape, upscale = sr.image_shape, partial(upscale_samples, job, batch_size=opts["batch_size"])
        upscale_settings = {"checkpoint": str(Path(cfg.stage2).resolve()), "aug": int(cfg.stage2_aug)}
    name, data_cfg = data_node(data_name, cfg.get("data"), data_overrides, model.config["data"], shape)
    return evaluate(
        model, name, data_cfg, checkpoint=opts["ckpt"], weights=opts["weights"], sampler=instantiate(sampler),
        sampler_name=sampler["_target_"].rsplit(".", 1)[-1].removeprefix("sample_"),
        sampler_settings={**{k: v for k, v in sampler.items() if not k.startswith("_")},
                          **({"sigma_max": sigma_max} if sigma_max is not None else {})},
        timesteps=schedule_timesteps(model.schedule, steps, spacing, sigma_max=sigma_max), spacing=spacing,
        guidance=Guidance(float(opts["guidance"])), device=device, started=started, upscale=upscale,
        upscale_settings=upscale_settings,
        class_prompts=class_captions(data_cfg) if model.encoder is not None else None,
        sample_prompts=reference_captions(data_cfg) if model.encoder is not None else None,
        **{k: opts[k] for k in ("metrics", "n", "real_n", "batch_size", "seed", "k", "kid_subsets",
                                "kid_subset_size", "classifier")},
    )
