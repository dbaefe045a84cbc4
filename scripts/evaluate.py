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
from pathlib import Path

from omegaconf import DictConfig

from data import DatasetError
from evaluation.data_config import split_data_overrides
from evaluation.eval_config import score
from evaluation.features import FeatureError
from evaluation.report import format_report
from sampling.atomic import OutputError, atomic_write_text
from sampling.checkpoint import CheckpointError
from sampling.cli import run_tool


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
