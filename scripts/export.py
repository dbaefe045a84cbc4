"""Export a checkpoint's EMA weights as <out>.safetensors and its resolved config as <out>.yaml.

    python scripts/export.py ckpt=runs/<date>/<time>/checkpoints/last.ckpt out=exports/shapes_unet
    python sample.py ckpt=exports/shapes_unet.safetensors

The checkpoint goes through the same checks as sample.py's loader first (allowed constructors only,
weights that fit, finite values): a file that sample.py would refuse is never exported. Both files are
written atomically.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from safetensors.torch import save

from sampling.atomic import OutputError, atomic_write_bytes, atomic_write_text
from sampling.checkpoint import CheckpointError, load_model

USAGE = "usage: python scripts/export.py ckpt=<file.ckpt> [out=<path without suffix>]"
KEYS = ("ckpt", "out")


def export(ckpt: Path, out: Path) -> tuple[Path, Path]:
    """Write the EMA weights and the config of ``ckpt`` next to ``out``; returns the two paths."""
    model = load_model(ckpt, "ema")  # refuses what sample.py refuses, before anything is written
    ema = {k: v.contiguous() for k, v in model.net.state_dict().items()}
    weights, cfg = out.with_suffix(".safetensors"), out.with_suffix(".yaml")
    atomic_write_text(cfg, yaml.safe_dump(model.config, sort_keys=False))
    atomic_write_bytes(weights, save(ema, metadata={"format": "pt", "source": ckpt.name}))
    return weights, cfg


def parse_args(argv: list[str]) -> dict[str, str]:
    """key=value arguments; an argument without '=', an unknown key or a repeated one is an error."""
    args: dict[str, str] = {}
    for a in argv:
        key, sep, value = a.partition("=")
        if not sep or key not in KEYS:
            raise ValueError(f"unknown argument {a!r} (expected {', '.join(k + '=' for k in KEYS)})")
        if key in args:
            raise ValueError(f"{key}= given twice")
        args[key] = value
    if not args.get("ckpt"):
        raise ValueError("ckpt=<file.ckpt> is required")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(list(sys.argv[1:] if argv is None else argv))
    except ValueError as e:
        print(f"error: {e}; {USAGE}", file=sys.stderr)
        return 2
    ckpt = Path(args["ckpt"])
    try:
        paths = export(ckpt, Path(args.get("out") or ckpt.with_suffix("")))
    except (CheckpointError, OutputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("wrote " + " and ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
