"""Prompt adherence on procedural shapes: per-factor accuracy of a checkpoint's samples against guidance scale, for
captions of seen and of held-out colour x shape pairs; a label model is the baseline, scored on shape only.

    .venv/bin/python scripts/prompt_adherence.py ckpt=runs/<date>/<time>/checkpoints/last.ckpt
    .venv/bin/python scripts/prompt_adherence.py ckpt=<file> guidances=[1,3] prompts=8 n_per_prompt=4 out=a.json

Settings: configs/prompt_adherence.yaml; evaluation/adherence.py does the work. Prints a markdown table and writes
the report as JSON to out= (default <ckpt stem>.adherence.json beside the checkpoint). Bad input gets a one-line
error and exit status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import DictConfig

from data import DatasetError
from evaluation.adherence import checkpoint_sampler, format_table, measure_adherence
from evaluation.factors import cached_factor_classifier
from sampling.atomic import OutputError, atomic_write_text
from sampling.checkpoint import CheckpointError, load_model
from sampling.checks import InputError, check_number
from sampling.cli import run_tool, to_dict


def run(cfg: DictConfig) -> None:
    """Check the settings, load the checkpoint and the factor classifier, measure, print and write the report."""
    opts = to_dict(cfg)
    for key in ("prompts", "n_per_prompt", "steps", "batch_size"):
        check_number(key, opts[key], 1, integer=True)
    for g in opts["guidances"]:
        check_number("guidances", g, 0, 50)
    if not opts["guidances"] or not opts["combos"]:
        raise InputError("guidances and combos must each name at least one value")
    out = Path(opts["out"]) if opts["out"] else Path(opts["ckpt"]).with_name(f"{Path(opts['ckpt']).stem}"
                                                                           ".adherence.json")
    model = load_model(opts["ckpt"], opts["weights"])
    channels, size, _ = model.image_shape
    classifier, meta = cached_factor_classifier(image_size=size, channels=channels)
    sample = checkpoint_sampler(opts["ckpt"], model, steps=opts["steps"], batch_size=opts["batch_size"],
                                weights=opts["weights"], device=opts["device"])
    report = measure_adherence(sample, classifier, cond_kind=model.cond_kind, guidances=opts["guidances"],
                               combos=opts["combos"], prompts=opts["prompts"], n_per_prompt=opts["n_per_prompt"],
                               seed=opts["seed"])
    report = {"settings": opts, "cond_kind": model.cond_kind,
              "classifier": {k: meta[k] for k in ("test_accuracy", "held_out_accuracy", "steps", "seed")}} | report
    print(format_table(report))
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"report: {out}")


def main(argv: list[str] | None = None) -> int:
    """Compose configs/prompt_adherence.yaml with ``argv`` (key=value) and run; 0, or 2 with one error line."""
    return run_tool(run, "prompt_adherence", argv, errors=(CheckpointError, DatasetError, OutputError))


if __name__ == "__main__":
    sys.exit(main())
