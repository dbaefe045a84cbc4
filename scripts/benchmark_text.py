"""What text conditioning costs: training and sampling images/s of a text model against the label model on the same
backbone preset, and the one-time encoding of the data's caption set (evaluation/text_cost.py).

    .venv/bin/python scripts/benchmark_text.py                        # unet_small on procedural captions
    .venv/bin/python scripts/benchmark_text.py model=dit_cpu json=benchmarks/text_cost_dit.json

Settings: configs/benchmark_text.yaml. Exit status 0, or 2 with one error line for a bad setting.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from evaluation.text_cost import benchmark, caption_cache_cost
from evaluation.timing import device_name, num_threads
from models.text import CaptionCache, make_encoder
from sampling.checks import check_number
from sampling.cli import run_tool


def run(cfg: DictConfig) -> None:
    for key in ("batch_size", "rounds", "steps", "sample_steps", "sample_batch"):
        check_number(key, cfg[key], 1, integer=True)
    check_number("threads", cfg.threads, 1, integer=True, allow_none=True)
    encoder = make_encoder(cfg.text.encoder, cfg.text.max_length)
    dataset = instantiate(cfg.data.train)
    captions = dataset.captions()
    cost = caption_cache_cost(encoder, captions)
    cache = CaptionCache.build(encoder, captions, log=print)
    nets = {}
    for cond in ("label", "text"):
        with open_dict(cfg.model):
            cfg.model.cond = cond
        torch.manual_seed(cfg.seed)
        nets[cond] = instantiate(cfg.model)
    with num_threads(cfg.threads):
        report = benchmark(nets["label"], nets["text"], cache, captions, int(cfg.data.num_classes),
                           (cfg.data.channels, cfg.data.image_size, cfg.data.image_size),
                           batch_size=cfg.batch_size, rounds=cfg.rounds, steps=cfg.steps,
                           sample_steps=cfg.sample_steps, sample_batch=cfg.sample_batch, seed=cfg.seed)
        report["threads"] = torch.get_num_threads()
    report.update({f"caption_cache_{k}": v for k, v in cost.items()})
    report["device"] = device_name(torch.device("cpu"))
    report["model"] = cfg.model._target_
    for key, value in report.items():
        print(f"{key:40s} {value:.4g}" if isinstance(value, float) else f"{key:40s} {value}")
    if cfg.json:
        path = Path(cfg.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    """Compose configs/benchmark_text.yaml with ``argv`` (key=value) and run; a bad setting exits 2."""
    return run_tool(run, "benchmark_text", argv)


if __name__ == "__main__":
    sys.exit(main())
