"""Export a checkpoint's EMA weights as <out>.safetensors and its resolved config as <out>.yaml.

    python scripts/export.py ckpt=runs/<date>/<time>/checkpoints/last.ckpt out=exports/shapes_unet
    python sample.py ckpt=exports/shapes_unet.safetensors
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sampling.checkpoint import CheckpointError, read_checkpoint  # noqa: E402


def export(ckpt: Path, out: Path) -> tuple[Path, Path]:
    """Write the EMA weights and the config of ``ckpt`` next to ``out``; returns the two paths."""
    if not ckpt.is_file():
        raise CheckpointError(f"{ckpt}: no such checkpoint file")
    state, config = read_checkpoint(ckpt)
    ema = {k[len("ema."):]: v.contiguous() for k, v in state.items() if k.startswith("ema.")}
    out.parent.mkdir(parents=True, exist_ok=True)
    weights, cfg = out.with_suffix(".safetensors"), out.with_suffix(".yaml")
    save_file(ema, str(weights), metadata={"format": "pt", "source": ckpt.name})
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    return weights, cfg


def main(argv: list[str] | None = None) -> int:
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv) if "=" in a)
    if "ckpt" not in args:
        print("usage: python scripts/export.py ckpt=<file.ckpt> [out=<path without suffix>]", file=sys.stderr)
        return 2
    ckpt = Path(args["ckpt"])
    try:
        paths = export(ckpt, Path(args.get("out", ckpt.with_suffix(""))))
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("wrote " + " and ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
