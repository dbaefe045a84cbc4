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
from omegaconf import DictConfig
from safetensors.torch import save

from sampling import cli
from sampling.atomic import OutputError, atomic_write_bytes, atomic_write_text
from sampling.checkpoint import CheckpointError, load_model


def export(ckpt: Path, out: Path) -> tuple[Path, Path]:
    """Write the EMA weights and the config of ``ckpt`` next to ``out``; returns the two paths."""
    model = load_model(ckpt, "ema")  # refuses what sample.py refuses, before anything is written
    ema = {k: v.contiguous() for k, v in model.net.state_dict().items()}
    weights, cfg = out.with_suffix(".safetensors"), out.with_suffix(".yaml")
    atomic_write_text(cfg, yaml.safe_dump(model.config, sort_keys=False))
    atomic_write_bytes(weights, save(ema, metadata={"format": "pt", "source": ckpt.name}))
    return weights, cfg


def run(cfg: DictConfig) -> None:
    """Export cfg.ckpt to cfg.out (default: beside it) and say where."""
    ckpt = Path(cfg.ckpt)
    paths = export(ckpt, Path(cfg.out) if cfg.out else ckpt.with_suffix(""))
    print("wrote " + " and ".join(str(p) for p in paths))


def main(argv: list[str] | None = None) -> int:
    """Compose configs/export.yaml with ``argv`` (key=value) and export; 0, or 2 with one error line."""
    return cli.run_tool(run, "export", argv, errors=(CheckpointError, OutputError))


if __name__ == "__main__":
    sys.exit(main())
