"""Text-driven edits of real procedural images, scored by the factor classifier (scripts/text_edit_eval.py).

Each edit changes one factor of a test image's caption (its colour, its shape or its background) and asks a method
for the edited caption: Imagic over eta, SDEdit at a few strengths, DiffEdit with the query = the edited caption and
the reference = the original one. Every output is scored on:

- success: the factor classifier reads the target value of the changed factor;
- kept: it reads the original value of every other factor among shape, colour, background and size;
- outside MSE: the mean squared pixel change where the edit should change nothing (colour: the background;
  background: the shape; shape: outside the shape's bounding square, grown by 2 px).
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch

from data.procedural import (
    BACKGROUNDS,
    COLOURS,
    HELD_OUT,
    KINDS,
    ProceduralShapes,
    contrasting_backgrounds,
    make_caption,
)
from evaluation.factors import predict_factors
from models.classifier import FactorClassifier

EDITS = ("colour", "shape", "background")
KEPT = ("shape", "colour", "background", "size")
VALUES = {"shape": KINDS, "colour": tuple(COLOURS), "background": tuple(BACKGROUNDS)}


def pick_edits(n: int, seed: int, image_size: int, data_seed: int = 7) -> list[dict[str, Any]]:
    """n edits of each kind on test images (procedural seed ``data_seed``, none a training image): the image's
    index and factors, the changed factor, its new value (a seen colour x shape pair whose colour contrasts with
    the background), the source and target captions, and the region where nothing should change (H, W) bool."""
    # combos="all": the images sample.py's image=procedural:<i>:<seed> loads; held-out pairs are skipped below
    shapes = ProceduralShapes(size=10_000, image_size=image_size, seed=data_seed)
    rng = np.random.default_rng(seed)
    edits, i = [], 0
    for factor in EDITS:
        made = 0
        while made < n:
            item = shapes.sample(i)
            i += 1
            if item["size"] == "small" or (item["colour"], item["kind"]) in HELD_OUT:  # small: a few pixels at 32 px
                continue
            p = {k: item[k] for k in ("kind", "colour", "background", "size", "position")}
            key = {"shape": "kind"}.get(factor, factor)
            options = [v for v in VALUES[factor] if v != p[key]]
            rng.shuffle(options)
            for value in options:
                q = dict(p, **{key: value})
                if (q["colour"], q["kind"]) not in HELD_OUT and q["background"] in contrasting_backgrounds(q["colour"]):
                    break
            else:
                continue
            mask = item["mask"][0].numpy()
            if factor == "colour":
                keep = ~mask
            elif factor == "background":
                keep = mask
            else:
                cx, cy = item["centre"]
                half = item["half"] + 2
                ys, xs = np.mgrid[0:image_size, 0:image_size] + 0.5
                keep = (np.abs(xs - cx) > half) | (np.abs(ys - cy) > half)
            edits.append({"index": i - 1, "data_seed": data_seed, "factor": factor, "source": p, "target": q,
                          "source_caption": make_caption(*(p[k] for k in ("kind", "colour", "background", "size",
                                                                             "position"))),
                          "target_caption": make_caption(*(q[k] for k in ("kind", "colour", "background", "size",
                                                                             "position"))),
                          "image": item["image"], "keep": torch.from_numpy(keep)})
            made += 1
    return edits


@torch.no_grad()
def score_edit(classifier: FactorClassifier, edit: dict[str, Any], out: torch.Tensor) -> dict[str, float]:
    """success, kept and outside MSE (module docstring) of one edited image ``out`` (C, H, W) in [-1, 1]."""
    predicted = {k: v.item() for k, v in predict_factors(classifier, out[None]).items()}
    names = {"shape": KINDS, "colour": tuple(COLOURS), "background": tuple(BACKGROUNDS),
             "size": ("small", "medium", "large")}
    read = {f: names[f][predicted[f]] for f in KEPT}
    factor = edit["factor"]
    key = {"shape": "kind"}
    success = read[factor] == edit["target"][key.get(factor, factor)]
    kept = all(read[f] == edit["source"][key.get(f, f)] for f in KEPT if f != factor)
    keep = edit["keep"]
    outside = (out - edit["image"]).pow(2).mean(0)[keep].mean().item() if keep.any() else float("nan")
    return {"success": float(success), "kept": float(kept), "outside_mse": outside}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean success, kept, both and outside MSE per (method, setting), over all edits and per changed factor."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        for factor in (r["factor"], "all"):
            groups.setdefault((r["method"], r["setting"], factor), []).append(r)
    out = []
    for (method, setting, factor), rs in groups.items():
        out.append({"method": method, "setting": setting, "factor": factor, "edits": len(rs),
                    "success": float(np.mean([r["success"] for r in rs])),
                    "kept": float(np.mean([r["kept"] for r in rs])),
                    "both": float(np.mean([r["success"] * r["kept"] for r in rs])),
                    "outside_mse": float(np.nanmean([r["outside_mse"] for r in rs])),
                    "seconds": float(np.mean([r["seconds"] for r in rs]))})
    return out


def run_methods(edits: list[dict[str, Any]], methods: dict[str, Callable], classifier: FactorClassifier,
                log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Every method on every edit: ``methods[name](edit) -> [(setting, image (C, H, W), seconds), ...]``."""
    rows = []
    for k, edit in enumerate(edits):
        for name, method in methods.items():
            start = time.perf_counter()
            results = method(edit)
            for setting, image, seconds in results:
                rows.append({"edit": k, "factor": edit["factor"], "method": name, "setting": setting,
                             "seconds": seconds, **score_edit(classifier, edit, image)})
            log(f"edit {k} ({edit['factor']}: {edit['target_caption']}) {name}: {len(results)} outputs in "
                f"{time.perf_counter() - start:.1f} s")
    return rows
