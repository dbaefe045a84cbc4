"""The factor classifier behind prompt adherence: one head per factor of procedural shapes (shape, colour, background,
size, position), trained on real images and cached; per-factor accuracy of images against what their prompts name.

Training images come from ``ProceduralShapes(combos="all", seed=7)``, fresh ones every step (rendering costs ~60 us
an image), so no image is seen twice and none is one of the diffusion models' training images (seed 0). Test
images: seed 8, once over all combos and once over the held-out colour x shape pairs. The checkpoint goes to
<cache>/classifiers/factors_<channels>x<size>_<digest>.pt (state_dict and meta), the digest naming every setting;
``cached_factor_classifier`` trains on first use and reuses the file afterwards.

Position cannot be read perfectly even from exact renders: the centre is jittered continuously inside its third of
the image and a shape's mask moves in whole pixels, so a mask near the border between two positions is drawn from
centres on both sides. ``position_ceiling`` measures the best possible accuracy (about 0.98 at 32 px; squares,
whose edges are straight, lowest).
"""

from __future__ import annotations

import os
import pickle
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from data.procedural import FACTORS, ProceduralShapes, shape_mask
from evaluation.classifier import cache_root, fit_classifier, node_digest
from models.classifier import FactorClassifier

# Settings of the cached classifier (configs/train_factor_classifier.yaml holds the same values).
DEFAULTS = {"steps": 1500, "batch_size": 64, "lr": 3e-3, "width": 32, "seed": 7, "test_seed": 8,
            "test_size": 2000}
PARAM_KEYS = {"shape": "kind"}  # ProceduralShapes.params(i) key of a factor, where it differs from the factor's name
HEADS = {name: len(values) for name, values in FACTORS.items()}


def factor_indices(params: dict[str, Any]) -> list[int]:
    """ProceduralShapes.params(i) -> the index of each factor's value, in FACTORS order."""
    return [values.index(params[PARAM_KEYS.get(name, name)]) for name, values in FACTORS.items()]


class FactorLabels(Dataset):
    """Procedural shapes with every factor as a label: item i is (image (C, S, S), LongTensor (len(FACTORS),))."""

    def __init__(self, shapes: ProceduralShapes):
        self.shapes = shapes

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.shapes[i][0], torch.tensor(factor_indices(self.shapes.params(i)))


def factor_set(size: int, image_size: int, channels: int, seed: int, combos: str = "all") -> FactorLabels:
    """``size`` procedural images of ``combos`` from ``seed``, labelled with every factor."""
    return FactorLabels(ProceduralShapes(size=size, image_size=image_size, seed=seed, channels=channels,
                                         combos=combos))


def train_factor_classifier(
    train_set: Dataset, *, channels: int, image_size: int, steps: int, batch_size: int, lr: float, width: int,
    seed: int, device: str = "cpu", log: Callable[[str], None] = print,
) -> FactorClassifier:
    """Train ``FactorClassifier`` on ``train_set`` (items (image, factor indices)) with the sum of the heads' cross
    entropies, AdamW and warmup + cosine decay (as evaluation.classifier.train_classifier); eval mode on return."""
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without moving the caller's global RNG
        torch.manual_seed(seed)
        net = FactorClassifier(channels, HEADS, image_size, width)
    # in order: the items are independent draws already
    loader = DataLoader(train_set, batch_size=batch_size, drop_last=len(train_set) >= batch_size)

    def loss_fn(logits: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        return sum(F.cross_entropy(logits[name], y[:, k]) for k, name in enumerate(FACTORS))

    fit_classifier(net, loader, loss_fn, steps=steps, batch_size=batch_size, lr=lr, device=device, log=log,
                   name="factor classifier")
    return net.eval()


@torch.no_grad()
def predict_factors(net: FactorClassifier, images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """(N, C, S, S) in [-1, 1] -> {factor: (N,) predicted value index}."""
    device = next(net.parameters()).device
    out: dict[str, list[torch.Tensor]] = {name: [] for name in net.heads}
    for chunk in images.split(batch_size):
        for name, logits in net(chunk.to(device, torch.float32)).items():
            out[name].append(logits.argmax(1).cpu())
    return {name: torch.cat(v) if v else torch.zeros(0, dtype=torch.long) for name, v in out.items()}


def score_factors(predicted: list[dict[str, str]], wanted: list[dict[str, str]]) -> tuple[dict[str, float],
                                                                                          dict[str, int]]:
    """Per-factor accuracy of predicted factor values against the wanted ones, image by image; a factor absent from
    an image's ``wanted`` dict is not scored for it. Returns (accuracy, count) per factor scored at least once, in
    FACTORS order, plus "all": the fraction of images (with at least one factor wanted) right on every one."""
    if len(predicted) != len(wanted):
        raise ValueError(f"{len(predicted)} predictions for {len(wanted)} images")
    right = {name: 0 for name in FACTORS} | {"all": 0}
    count = {name: 0 for name in FACTORS} | {"all": 0}
    for got, want in zip(predicted, wanted):
        unknown = set(want) - set(FACTORS)
        if unknown:
            raise ValueError(f"unknown factors {sorted(unknown)}; the factors are {', '.join(FACTORS)}")
        for name, value in want.items():
            count[name] += 1
            right[name] += got[name] == value
        if want:
            count["all"] += 1
            right["all"] += all(got[name] == value for name, value in want.items())
    counts = {name: n for name, n in count.items() if n}
    return {name: right[name] / n for name, n in counts.items()}, counts


def factor_accuracy(net: FactorClassifier, images: torch.Tensor, factors: list[dict[str, str]],
                    batch_size: int = 256) -> tuple[dict[str, float], dict[str, int]]:
    """Per-factor accuracy of ``images`` (N, C, S, S) in [-1, 1] against ``factors``, one dict per image of the
    factor values its prompt names (data.procedural.parse_caption); returns (accuracy, count) as ``score_factors``."""
    if len(images) != len(factors):
        raise ValueError(f"{len(images)} images for {len(factors)} factor dicts")
    pred = predict_factors(net, images, batch_size)
    names = {name: FACTORS[name] for name in pred}
    predicted = [{name: names[name][int(pred[name][i])] for name in pred} for i in range(len(images))]
    return score_factors(predicted, factors)


@torch.no_grad()
def dataset_accuracy(net: FactorClassifier, dataset: Dataset, batch_size: int = 256) -> dict[str, float]:
    """Per-factor accuracy on a labelled set (items (image, factor indices in FACTORS order))."""
    right, n = torch.zeros(len(FACTORS)), 0
    device = next(net.parameters()).device
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        logits = net(x.to(device))
        right += torch.stack([(logits[name].argmax(1).cpu() == y[:, k]).sum() for k, name in enumerate(FACTORS)])
        n += len(y)
    return {name: right[k].item() / n for k, name in enumerate(FACTORS)}


def position_certainty(params: dict[str, Any], image_size: int, step: float = 0.05) -> float:
    """The best chance of naming the position of the image ``params`` draws (ProceduralShapes.params(i)): the share,
    under the uniform prior on the centre, of the centres drawing the same mask that lie in the commonest position.
    Centres are scanned on a ``step`` px grid within 1.25 px of the true one."""
    s, (cx, cy), half = image_size, params["centre"], params["half"]
    centres = np.arange(s) + 0.5
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    offsets = np.arange(-1.25, 1.25 + 1e-9, step)
    dy, dx = (a.ravel() for a in np.meshgrid(offsets, offsets, indexing="ij"))
    x, y = cx + dx, cy + dy
    inside = (x >= half) & (x <= s - half) & (y >= half) & (y <= s - half)
    x, y = x[inside], y[inside]
    masks = shape_mask(params["kind"], xs[None], ys[None], x[:, None, None], y[:, None, None], half)  # (K, S, S)
    same = (masks == shape_mask(params["kind"], xs, ys, cx, cy, half)).all(axis=(1, 2))
    third = (s - 2 * half) / 3
    cell = np.minimum((y[same] - half) // third, 2) * 3 + np.minimum((x[same] - half) // third, 2)
    return float(np.bincount(cell.astype(int), minlength=9).max() / same.sum())


def position_ceiling(shapes: ProceduralShapes, n: int = 500) -> float:
    """The best accuracy any classifier can reach on position over the first ``n`` images of ``shapes``: the mean
    ``position_certainty``."""
    n = min(n, len(shapes))
    return sum(position_certainty(shapes.params(i), shapes.image_size) for i in range(n)) / n


def factor_classifier_path(settings: dict[str, Any], cache_dir: Path | None = None) -> Path:
    """<cache>/classifiers/factors_<channels>x<size>_<digest of settings>.pt"""
    name = f"factors_{int(settings['channels'])}x{int(settings['image_size'])}_{node_digest(settings)}.pt"
    return (cache_dir or cache_root()) / "classifiers" / name


def _load_cached(path: Path) -> tuple[FactorClassifier, dict[str, Any]] | None:
    """The cached factor classifier if its file is readable and holds the current factors."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        meta = ckpt["meta"]
        if meta["heads"] != HEADS:
            return None
        net = FactorClassifier(meta["in_channels"], meta["heads"], meta["image_size"], meta["width"])
        net.load_state_dict(ckpt["state_dict"])
    # a broken cache entry is retrained, not fatal
    except (OSError, RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError):
        return None
    return net.eval().requires_grad_(False), meta


def cached_factor_classifier(
    image_size: int = 32, channels: int = 3, *, steps: int = DEFAULTS["steps"],
    batch_size: int = DEFAULTS["batch_size"], lr: float = DEFAULTS["lr"], width: int = DEFAULTS["width"],
    seed: int = DEFAULTS["seed"], test_seed: int = DEFAULTS["test_seed"],
    test_size: int = DEFAULTS["test_size"], device: str = "cpu", cache_dir: Path | None = None, force: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[FactorClassifier, dict[str, Any]]:
    """The factor classifier for these settings, trained (on ``steps`` x ``batch_size`` fresh images of seed
    ``seed``) and cached first when missing (or ``force``). Returns the network (eval mode, CPU) and its meta:
    the settings, heads, test_accuracy and held_out_accuracy (per factor, on ``test_size`` images of
    ``test_seed``, all combos and held-out combos) and train_seconds."""
    settings = {"image_size": image_size, "channels": channels, "steps": steps, "batch_size": batch_size, "lr": lr,
                "width": width, "seed": seed, "test_seed": test_seed, "test_size": test_size}
    path = factor_classifier_path(settings, cache_dir)
    cached = None if force or not path.is_file() else _load_cached(path)
    if cached is not None:
        log(f"factor classifier: {path}")
        return cached
    log(f"factor classifier: training ({steps} steps, batch {batch_size}) -> {path}")
    start = time.perf_counter()
    net = train_factor_classifier(
        factor_set(steps * batch_size, image_size, channels, seed), channels=channels, image_size=image_size,
        steps=steps, batch_size=batch_size, lr=lr, width=width, seed=seed, device=device, log=log)
    seconds = time.perf_counter() - start
    net = net.cpu().requires_grad_(False)
    meta = settings | {
        "in_channels": channels, "heads": HEADS, "train_seconds": seconds,
        "test_accuracy": dataset_accuracy(net, factor_set(test_size, image_size, channels, test_seed)),
        "held_out_accuracy": dataset_accuracy(net, factor_set(test_size, image_size, channels, test_seed,
                                                              "held_out")),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state_dict": net.state_dict(), "meta": meta}, tmp)
    os.replace(tmp, path)  # readers never see half a file
    return net, meta
