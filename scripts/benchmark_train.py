"""Training throughput of our U-Net and DiT against diffusers' UNet2DModel and DiTTransformer2DModel.

Each pair is built at the same size from a preset in configs/model/ (parameter counts must agree within 5%),
fed the same tensors, and trained with the same step: forward, MSE to a random target, backward, AdamW.
After warm-up, R rounds alternate the two models (the order flips each round so drift hits both), each
timing N steps; we report the median images/s of each and the median of the per-round ratios ours/theirs.

    .venv/bin/python scripts/benchmark_train.py                       # CPU, fp32, both pairs
    .venv/bin/python scripts/benchmark_train.py profile=true json=out.json
    .venv/bin/python scripts/benchmark_train.py device=cuda dtype=bf16 unet_preset=ddpm_cifar dit_preset=s2

Settings: configs/benchmark_train.yaml. Exit status 0; 1 when a pair's parameter counts are more than 5% apart;
2 for a bad setting or without diffusers.
"""

from __future__ import annotations

import json
import sys
from importlib.util import find_spec
from pathlib import Path

from evaluation.peers import PARAM_TOLERANCE
from evaluation.timing import num_threads
from evaluation.train_throughput import benchmark, print_table
from sampling.checks import InputError, check_choice, check_number
from sampling.cli import compose_config, to_dict


def run(cfg: dict) -> int:
    """Check the settings, run the benchmark, print and write its figures; the exit status."""
    for key in ("rounds", "steps", "batch_size", "image_size", "dit_classes", "dit_channels", "unet_channels"):
        check_number(key, cfg[key], 1, integer=True)
    check_number("warmup", cfg["warmup"], 0, integer=True)
    check_number("threads", cfg["threads"], 1, integer=True, allow_none=True)
    check_choice("only", cfg["only"], (None, "unet", "dit"))
    check_choice("dtype", cfg["dtype"], ("fp32", "bf16"))
    if find_spec("diffusers") is None:
        raise InputError("diffusers is not installed: pip install -e '.[bench]'")
    with num_threads(cfg.pop("threads")):
        report, params_ok = benchmark(**{k: v for k, v in cfg.items() if k != "json"})
    print_table(report)
    if cfg["json"] is not None:
        path = Path(cfg["json"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {path}")
    if not params_ok:
        print(f"error: parameter counts more than {PARAM_TOLERANCE:.0%} apart", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Compose configs/benchmark_train.yaml with ``argv`` (key=value) and run; a bad setting exits 2."""
    try:
        return run(to_dict(compose_config("benchmark_train", list(sys.argv[1:] if argv is None else argv))))
    except (InputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
