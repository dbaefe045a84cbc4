"""Train the factor classifier of prompt adherence (one head per factor of procedural shapes), cache it and print
its per-factor test accuracy on all combos and on the held-out combos.

    .venv/bin/python scripts/train_factor_classifier.py
    .venv/bin/python scripts/train_factor_classifier.py steps=3000 force=true ceiling=500

The checkpoint goes to ${DIFFLAB_CACHE:-~/.cache/difflab}/classifiers/factors_<channels>x<size>_<digest>.pt;
scripts/prompt_adherence.py trains it on first use anyway. Settings: configs/train_factor_classifier.yaml. Bad
input gets a one-line error and exit status 2.
"""

from __future__ import annotations

import sys

from omegaconf import DictConfig

from data import DatasetError
from data.procedural import FACTORS, ProceduralShapes
from evaluation.factors import cached_factor_classifier, position_ceiling
from sampling.checks import InputError, check_number
from sampling.cli import run_tool, to_dict


def run(cfg: DictConfig) -> None:
    """Check the settings, train or load the classifier, print its accuracy table."""
    opts = to_dict(cfg)
    for key in ("image_size", "steps", "batch_size", "width", "test_size"):
        check_number(key, opts[key], 1, integer=True)
    check_number("lr", opts["lr"], 0, lo_open=True)
    check_number("ceiling", opts["ceiling"], 0, integer=True)
    if opts["image_size"] < 16 or opts["image_size"] % 4:
        raise InputError(f"image_size must be a multiple of 4 and >= 16, got {opts['image_size']}")
    ceiling = opts.pop("ceiling")
    _, meta = cached_factor_classifier(**opts)
    print(f"\n| test images ({meta['test_size']}, seed {meta['test_seed']}) | " + " | ".join(FACTORS) + " |")
    print("|---|" + "---:|" * len(FACTORS))
    for name, key in (("all combos", "test_accuracy"), ("held-out combos", "held_out_accuracy")):
        print(f"| {name} | " + " | ".join(f"{meta[key][f]:.4f}" for f in FACTORS) + " |")
    print(f"\ntrained {meta['steps']} steps x {meta['batch_size']} images in {meta['train_seconds']:.0f} s")
    if ceiling:
        shapes = ProceduralShapes(size=ceiling, image_size=opts["image_size"], seed=opts["test_seed"],
                                  channels=opts["channels"])
        print(f"best possible position accuracy on {ceiling} test images: {position_ceiling(shapes, ceiling):.4f}")


def main(argv: list[str] | None = None) -> int:
    """Compose configs/train_factor_classifier.yaml with ``argv`` (key=value) and run; 0, or 2 with one error line."""
    return run_tool(run, "train_factor_classifier", argv, errors=(DatasetError,))


if __name__ == "__main__":
    sys.exit(main())
