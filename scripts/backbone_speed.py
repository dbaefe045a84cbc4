"""Training and DDIM-50 sampling images/s of backbones at one size (evaluation/backbone_speed.py).

    .venv/bin/python scripts/backbone_speed.py presets=[unet_small,dit_cpu_small,uvit_cpu] [channels=1 image_size=32
        batch=32 rounds=5 threads=2 json=out.json]

Prints a markdown table: parameters, training GFLOPs per image per step, training and sampling images/s (medians
over rounds, backbones interleaved). Exit 2 with one line for a bad setting.
"""

from __future__ import annotations

import json
import sys

from evaluation.backbone_speed import benchmark
from evaluation.timing import num_threads
from sampling.atomic import atomic_write_text
from sampling.checks import InputError, check_number
from sampling.cli import dotlist_options

DEFAULTS = {"presets": ["unet_small", "dit_cpu_small", "uvit_cpu"], "channels": 1, "image_size": 32,
            "num_classes": 10, "batch": 32, "rounds": 5, "threads": None, "json": None}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        opts = dotlist_options(argv, DEFAULTS)
        for key in ("channels", "image_size", "batch", "rounds"):
            check_number(key, opts[key], 1, integer=True)
        check_number("threads", opts["threads"], 1, integer=True, allow_none=True)
        with num_threads(opts["threads"]):
            report = benchmark(list(opts["presets"]), opts["channels"], opts["image_size"], opts["num_classes"],
                               opts["batch"], opts["rounds"])
    except (InputError, ValueError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"\n{report['shape']} batch {report['batch']}, {report['threads']} thread(s), medians of "
          f"{report['rounds']} rounds")
    print("| backbone | params | train GFLOPs/img | train img/s | DDIM-50 sample img/s |")
    print("|---|---:|---:|---:|---:|")
    for r in report["rows"]:
        print(f"| {r['preset']} | {r['params'] / 1e6:.2f}M | {r['gflops_per_image']:.3f} | "
              f"{r['train_images_per_s']:.1f} | {r['sample_images_per_s']:.2f} |")
    if opts["json"]:
        atomic_write_text(opts["json"], json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
