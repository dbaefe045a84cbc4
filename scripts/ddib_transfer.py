"""DDIB class transfer over many real images: how often it lands in the target class, and its cycle error.

    .venv/bin/python scripts/ddib_transfer.py ckpt=runs/fashion_unet/checkpoints/last.ckpt data=fashion_mnist \\
        source=7 target=9 k=16 [sampler.steps=50 guidance=1.0 out=ddib_7_9]

The first ``k`` validation images of class ``source`` go through the same round trip as `sample.py task=ddib`
(DDIM-invert under the source label, decode under the target, and back), batched. Reported: the cycle error
a -> b -> a (per-pixel MSE to the input, per image and mean), the per-pixel MSE between input and translation,
and the fraction of translations (and of cycles) that the project's classifier for the dataset
(evaluation/classifier.py, cached) puts in the target (and source) class. Writes ddib_transfer.png (rows:
input, translation, cycle) and ddib_transfer.json to ``out``. Settings: configs/ddib_transfer.yaml (other keys
are sample.py's). Bad input gets a one-line error and exit status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from omegaconf import DictConfig

from data import DatasetError
from evaluation.data_config import build_dataset, data_choice, load_or_train_classifier
from evaluation.transfer import first_of_class, save_transfer_grid, transfer_scores
from sampling.checkpoint import CheckpointError
from sampling.checks import InputError, check_number
from sampling.cli import build_job, compose_config, to_dict
from sampling.editing import ddib_round_trip
from sampling.io import parse_label


def transfer(cfg: DictConfig, data_name: str) -> dict:
    """Run the round trip over the first k images of class source; write the picture and the JSON report."""
    check_number("k", cfg.k, 1, integer=True)
    job, _ = build_job(cfg)  # as sample.py: loads the checkpoint, checks its settings
    model = job.model
    source, target = parse_label(cfg.source, model, "source"), parse_label(cfg.target, model, "target")
    cfg.data.image_size, cfg.data.channels = model.image_shape[-1], model.image_shape[0]
    data_cfg = to_dict(cfg.data)
    x0 = first_of_class(build_dataset(data_cfg["val"]), source, cfg.k)
    classifier, meta = load_or_train_classifier(data_name, data_cfg)
    with torch.inference_mode():
        moved, back = ddib_round_trip(job, x0, (model, source), (model, target), cfg.task.fixed_point_iters)
        moved, back = moved.clamp(-1, 1), back.clamp(-1, 1)
    report = {
        "ckpt": str(cfg.ckpt), "data": data_name, "source": source, "target": target, "k": len(x0),
        "steps": job.steps, "guidance": cfg.guidance, **transfer_scores(x0, moved, back, classifier, source, target),
        "classifier_val_accuracy": meta["val_accuracy"],
    }
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_transfer_grid(x0, moved, back, out / "ddib_transfer.png")
    (out / "ddib_transfer.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    """Compose configs/ddib_transfer.yaml with ``argv`` (key=value), run and print the report; 0, or 2 on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        report = transfer(compose_config("ddib_transfer", argv), data_choice(argv))
    except (InputError, CheckpointError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for key, value in report.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
