"""Sampling speed of our DDIM loop against diffusers' DDIMScheduler, both driving the same network.

What is timed and checked: evaluation/sampling_speed.py. Settings: configs/benchmark_sample.yaml.

    .venv/bin/python scripts/benchmark_sample.py                          # unet_small, batch 16, CPU
    .venv/bin/python scripts/benchmark_sample.py preset=dit_cpu rounds=3 json=out.json
    .venv/bin/python scripts/benchmark_sample.py device=cuda preset=unet_ddpm_cifar batch=64

Exit status: 0; 1 when the timestep lists differ or the results disagree beyond tol; 2 for a bad setting or
without diffusers; with strict=true also 1 when a speed goal is missed.
"""

from __future__ import annotations

import json
import sys
from importlib.util import find_spec
from pathlib import Path

import torch

from evaluation.sampling_speed import NUM_TRAIN_TIMESTEPS, benchmark, failures, print_table
from evaluation.timing import num_threads
from sampling.checks import InputError, check_number
from sampling.cli import compose_config, to_dict


def run(cfg: dict) -> int:
    """Check the settings, run the benchmark, print and write its figures; the exit status."""
    for key in ("batch", "rounds"):
        check_number(key, cfg[key], 1, integer=True)
    check_number("steps", cfg["steps"], 1, NUM_TRAIN_TIMESTEPS, integer=True)
    check_number("threads", cfg["threads"], 1, integer=True, allow_none=True)
    check_number("tol", cfg["tol"], 0)
    if str(cfg["device"]).startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device=cuda but torch.cuda.is_available() is False")
    if find_spec("diffusers") is None:
        raise InputError("diffusers is not installed: pip install -e '.[bench]'")
    with num_threads(cfg["threads"]):
        report = benchmark(**{k: cfg[k] for k in ("preset", "batch", "rounds", "steps", "device", "tol")})
    print_table(report)
    if cfg["json"] is not None:
        path = Path(cfg["json"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}")
    errors = failures(report, cfg["strict"])
    for line in errors:
        print(f"error: {line}", file=sys.stderr)
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    """Compose configs/benchmark_sample.yaml with ``argv`` (key=value) and run; a bad setting exits 2."""
    try:
        return run(to_dict(compose_config("benchmark_sample", list(sys.argv[1:] if argv is None else argv))))
    except (InputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
