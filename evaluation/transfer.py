"""Scores of a DDIB class transfer over real images: cycle error, change, and where a classifier puts each image.

scripts/ddib_transfer.py runs the round trip (sampling.editing.ddib_round_trip); this module picks its inputs
and scores and draws its outputs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset
from torchvision.utils import make_grid

from sampling.checks import InputError
from sampling.io import to_pil


def first_of_class(dataset: Dataset, label: int, k: int) -> torch.Tensor:
    """The first k items of class ``label`` (B, C, H, W)."""
    images = []
    for i in range(len(dataset)):
        x, y = dataset[i]
        if int(y) == label:
            images.append(x)
            if len(images) == k:
                return torch.stack(images)
    raise InputError(f"the validation split has {len(images)} images of class {label}, fewer than k={k}")


@torch.inference_mode()
def transfer_scores(
    x0: torch.Tensor, moved: torch.Tensor, back: torch.Tensor, classifier: nn.Module, source: int, target: int
) -> dict[str, Any]:
    """Per-pixel MSE of the cycle a -> b -> a (per image and mean) and of the translation, all (B, C, H, W) in
    [-1, 1]; and the fractions of inputs and cycles the classifier puts in ``source``, of translations in ``target``."""
    predicted = {name: classifier(x).argmax(1) for name, x in (("input", x0), ("moved", moved), ("back", back))}
    cycle = (back - x0).pow(2).mean(dim=(1, 2, 3))
    change = (moved - x0).pow(2).mean(dim=(1, 2, 3))
    return {
        "cycle_mse_mean": cycle.mean().item(),
        "cycle_mse": [round(v, 5) for v in cycle.tolist()],
        "translation_mse_mean": change.mean().item(),
        "input_in_source": (predicted["input"] == source).float().mean().item(),
        "translated_in_target": (predicted["moved"] == target).float().mean().item(),
        "cycle_in_source": (predicted["back"] == source).float().mean().item(),
    }


def save_transfer_grid(x0: torch.Tensor, moved: torch.Tensor, back: torch.Tensor, path: Path, zoom: int = 3) -> None:
    """A PNG with rows input, translation, cycle (one column per image), enlarged ``zoom`` times."""
    grid = to_pil(make_grid(torch.cat([x0, moved, back]), nrow=len(x0), padding=1, pad_value=1.0))
    grid.resize((grid.width * zoom, grid.height * zoom), Image.NEAREST).save(path)
