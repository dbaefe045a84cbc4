"""How much of each dataset's pixel variance its condition explains (evaluation/variety.py): Fashion-MNIST given the
label, procedural shapes given the label and given the caption.

    .venv/bin/python scripts/data_variety.py n=20000

Settings: n (items per dataset). Prints one table row per (dataset, condition).
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from data import DatasetError
from data.fashion_mnist import FashionMNIST
from data.procedural import ProceduralShapes
from evaluation.variety import conditional_variance
from sampling.checks import check_number
from sampling.cli import run_tool


def run(cfg: DictConfig) -> None:
    check_number("n", cfg.n, 2, integer=True)
    shapes = ProceduralShapes(size=cfg.n, combos="seen")
    rows = [("procedural", "label (shape)", shapes, lambda i, y: y),
            ("procedural", "caption", shapes, lambda i, y: shapes.caption(i))]
    try:
        rows.insert(0, ("fashion_mnist", "label", FashionMNIST(split="train"), lambda i, y: y))
    except DatasetError as e:
        print(f"note: {e}")
    print("| data | condition | groups | per-pixel variance | within a condition | explained |")
    print("|---|---|---:|---:|---:|---:|")
    for data, cond, ds, key in rows:
        r = conditional_variance(ds, key, cfg.n)
        print(f"| {data} | {cond} | {r['groups']} | {r['total']:.3f} | {r['within']:.3f} | {r['explained']:.1%} |")


def main(argv: list[str] | None = None) -> int:
    return run_tool(run, "data_variety", argv)


if __name__ == "__main__":
    sys.exit(main())
