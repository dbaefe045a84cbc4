"""What the editing tasks of sample.py cost, against plain sampling with the same checkpoint, sampler and steps.

Each variant is the whole task function (the same code `python sample.py task=...` runs, minus writing files),
on one input image and the checkpoint's own network; variants, goals and ratios: evaluation/edit_cost.py.
Settings: configs/benchmark_edit.yaml.

    .venv/bin/python scripts/benchmark_edit.py ckpt=runs/fashion_unet/checkpoints/last.ckpt
    .venv/bin/python scripts/benchmark_edit.py ckpt=<file> n=8 steps=50 rounds=5 json=edit.json

Exit status 0; 2 for a bad setting, checkpoint or input (one line, as sample.py).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from evaluation.edit_cost import print_table, summarise
from evaluation.timing import device_name, num_threads, time_rounds
from sampling import cli
from sampling.checkpoint import CheckpointError, LoadedModel, load_model
from sampling.checks import InputError, check_number
from sampling.editing import diffedit_mask
from sampling.io import load_input_image


def make_variants(model: LoadedModel, ckpt: str, image: str, n: int, steps: int, strengths: Sequence[float],
                  labels: Sequence[int], diffedit_overrides: Sequence[str] = ()) -> dict[str, Callable[[], Any]]:
    """One zero-argument callable per variant, each running a sample.py task over the same loaded model (built
    by sampling.cli.build_job from sample.py's config, as sample.py does)."""
    common = [f"ckpt={ckpt}", f"sampler.steps={steps}", "seed=0"]

    def task(*overrides: str) -> Callable[[], Any]:
        job, fn = cli.build_job(cli.compose_config("sample", [*common, *overrides]), model)
        return lambda: fn(job)

    variants = {
        "generate": task("task=generate", f"n={n}", f"batch_size={n}"),
        "inpaint": task("task=inpaint", f"image={image}", f"mask={image}", f"n={n}"),
        **{f"sdedit s={s:g}": task("task=sdedit", f"image={image}", f"task.strength={s}", f"n={n}")
           for s in strengths},
    }
    if model.num_classes is not None:
        source, target = labels
        variants["generate n=1"] = task("task=generate", "n=1", f"label={source}")
        overrides = [*common, "task=diffedit", f"image={image}", f"task.source={source}", f"task.target={target}",
                     *diffedit_overrides]
        job, diffedit = cli.build_job(cli.compose_config("sample", overrides), model)
        x0, _, _ = load_input_image(image, model)
        variants["diffedit"] = lambda: diffedit(job)
        mask_args = {k: diffedit.keywords[k] for k in ("mask_draws", "mask_strength", "mask_clamp_ratio",
                                                       "mask_threshold")}
        variants["diffedit mask"] = lambda: diffedit_mask(job, x0, source, target, **mask_args)
    return variants


def run(cfg: dict) -> None:
    """Check the settings, time every variant, print and write the figures."""
    for key in ("n", "steps", "rounds"):
        check_number(key, cfg[key], 1, integer=True)
    check_number("threads", cfg["threads"], 1, integer=True, allow_none=True)
    if len(cfg["labels"]) != 2:
        raise InputError(f"labels must be [source, target], got {cfg['labels']}")
    extra = [] if cfg["encode_ratio"] is None else [f"task.encode_ratio={cfg['encode_ratio']}"]
    with num_threads(cfg["threads"]):
        threads = torch.get_num_threads()
        model = load_model(cfg["ckpt"], "ema")
        variants = make_variants(model, cfg["ckpt"], cfg["image"], cfg["n"], cfg["steps"], cfg["strengths"],
                                 cfg["labels"], extra)
        with torch.inference_mode():
            for fn in variants.values():  # warm-up, and bad input surfaces here
                fn()
            times = time_rounds(variants, cfg["rounds"], decimals=2)
    report = {k: cfg[k] for k in ("ckpt", "image", "n", "steps", "rounds", "strengths", "labels", "encode_ratio")}
    report |= {"threads": threads, "device": device_name(torch.device("cpu")), "times": times,
               "summary": summarise(times, cfg["strengths"])}
    print_table(report)
    if cfg["json"] is not None:
        Path(cfg["json"]).write_text(json.dumps(report, indent=2))


def main(argv: list[str] | None = None) -> int:
    """Compose configs/benchmark_edit.yaml with ``argv`` (key=value) and run; 0, or 2 with one error line."""
    return cli.run_tool(lambda cfg: run(cli.to_dict(cfg)), "benchmark_edit", argv, errors=(CheckpointError,))


if __name__ == "__main__":
    sys.exit(main())
