"""DDIB class transfer over many real images: how often it lands in the target class, and its cycle error.

    python scripts/ddib_transfer.py ckpt=runs/fashion_unet/checkpoints/last.ckpt data=fashion_mnist \\
        source=7 target=9 k=16 [sampler.steps=50 guidance=1.0 out=ddib_7_9]

The first ``k`` validation images of class ``source`` go through the same round trip as `sample.py task=ddib`
(DDIM-invert under the source label, decode under the target, and back), batched. Reported: the cycle error
a -> b -> a (per-pixel MSE to the input, per image and mean), the per-pixel MSE between input and translation,
and the fraction of translations (and of cycles) that the project's classifier for the dataset
(scripts/train_classifier.py, cached) puts in the target (and source) class. Writes ddib_transfer.png (rows:
input, translation, cycle) and ddib_transfer.json to ``out``. Other keys are sample.py's (sampler, guidance, ...).
Bad input gets a one-line error and exit status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from data import DatasetError  # noqa: E402
from sample import compose_config, make_run  # noqa: E402
from sampling.checkpoint import CheckpointError  # noqa: E402
from sampling.editing import ddib_round_trip  # noqa: E402
from sampling.io import InputError, parse_label, to_pil  # noqa: E402
from scripts.train_classifier import InputError as DataInputError  # noqa: E402
from scripts.train_classifier import build_dataset, compose_data, load_or_train_classifier  # noqa: E402

OWN_KEYS = ("data", "k", "out")  # everything else goes to sample.py's config


def split_args(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    own, rest = {"data": None, "k": "16", "out": "ddib_transfer"}, []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key in OWN_KEYS:
            own[key] = value
        else:
            rest.append(arg)
    if own["data"] is None:
        raise InputError("data=<dataset config> is required (the real images and the classifier come from it)")
    if not own["k"].isdigit() or int(own["k"]) < 1:
        raise InputError(f"k must be a positive integer, got {own['k']!r}")
    return own, rest


def first_of_class(dataset, label: int, k: int) -> torch.Tensor:
    """The first k items of class ``label`` (B, C, H, W)."""
    images = []
    for i in range(len(dataset)):
        x, y = dataset[i]
        if int(y) == label:
            images.append(x)
            if len(images) == k:
                return torch.stack(images)
    raise InputError(f"the validation split has {len(images)} images of class {label}, fewer than k={k}")


def transfer(argv: list[str]) -> dict:
    own, rest = split_args(argv)
    run = make_run(compose_config(["task=ddib", *rest]))
    model, cfg = run.model, run.cfg
    source, target = parse_label(cfg.source, model, "source"), parse_label(cfg.target, model, "target")
    data_cfg = compose_data(own["data"], [f"data.image_size={model.image_shape[-1]}",
                                          f"data.channels={model.image_shape[0]}"])
    x0 = first_of_class(build_dataset(data_cfg["val"]), source, int(own["k"]))
    classifier, meta = load_or_train_classifier(own["data"], data_cfg)
    with torch.inference_mode():
        moved, back = ddib_round_trip(run, x0, (model, source), (model, target))
        moved, back = moved.clamp(-1, 1), back.clamp(-1, 1)
        predicted = {name: classifier(x).argmax(1) for name, x in (("input", x0), ("moved", moved), ("back", back))}
    cycle = (back - x0).pow(2).mean(dim=(1, 2, 3))
    change = (moved - x0).pow(2).mean(dim=(1, 2, 3))
    report = {
        "ckpt": str(cfg.ckpt), "data": own["data"], "source": source, "target": target, "k": len(x0),
        "steps": run.steps, "guidance": cfg.guidance,
        "cycle_mse_mean": cycle.mean().item(), "cycle_mse": [round(v, 5) for v in cycle.tolist()],
        "translation_mse_mean": change.mean().item(),
        "input_in_source": (predicted["input"] == source).float().mean().item(),
        "translated_in_target": (predicted["moved"] == target).float().mean().item(),
        "cycle_in_source": (predicted["back"] == source).float().mean().item(),
        "classifier_val_accuracy": meta["val_accuracy"],
    }
    out = Path(own["out"])
    out.mkdir(parents=True, exist_ok=True)
    grid = to_pil(make_grid(torch.cat([x0, moved, back]), nrow=len(x0), padding=1, pad_value=1.0))
    grid.resize((grid.width * 3, grid.height * 3), Image.NEAREST).save(out / "ddib_transfer.png")
    (out / "ddib_transfer.json").write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> int:
    try:
        report = transfer(list(sys.argv[1:] if argv is None else argv))
    except (InputError, CheckpointError, DataInputError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for key, value in report.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
