"""Prompt adherence on procedural shapes: per-factor accuracy of a conditional model's samples against guidance scale,
for captions of seen and of held-out colour x shape pairs (scripts/prompt_adherence.py).

For each split of ``combos``, ``select_prompts`` draws captions from ``ProceduralShapes(combos=split).captions()``
with a seeded RNG; every guidance scale samples ``n_per_prompt`` images of each (the same seeds at every scale, so
the scales differ only by guidance), and the factor classifier (evaluation/factors.py) scores each factor the
caption names. A label model is the baseline: its label is the caption's shape, so only shape is scored.
Samples come from sample.py's own path: sample.py's config composed with overrides, ``sampling.cli.build_job``
and the generate task.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from data.procedural import COMBOS, FACTORS, KINDS, ProceduralShapes, parse_caption
from evaluation.factors import factor_accuracy
from models.classifier import FactorClassifier
from sampling.checkpoint import LoadedModel
from sampling.checks import InputError
from sampling.cli import build_job, compose_config
from sampling.tasks import generate

# (prompt, guidance, n, seed) -> (n, C, H, W) samples in [-1, 1]
Sampler = Callable[[str, float, int, int], torch.Tensor]


def select_prompts(combos: str, n: int, seed: int) -> list[str]:
    """``n`` distinct captions of ``ProceduralShapes(combos=combos)``, drawn by a ``seed``ed RNG (all of them when
    there are fewer)."""
    if combos not in COMBOS:
        raise InputError(f"combos must be among {', '.join(COMBOS)}, got {combos!r}")
    captions = ProceduralShapes(size=1, combos=combos).captions()
    picks = np.random.default_rng(seed).choice(len(captions), size=min(n, len(captions)), replace=False)
    return [captions[i] for i in picks]


def scored_factors(prompt: str, cond_kind: str) -> dict[str, str]:
    """The factors a sample of ``prompt`` is scored on: all the caption names for a text model, its shape alone
    for a label model (whose label is that shape)."""
    named = parse_caption(prompt)
    return named if cond_kind == "text" else {"shape": named["shape"]}


def measure_adherence(
    sample: Sampler, classifier: FactorClassifier, *, cond_kind: str, guidances: Sequence[float],
    combos: Sequence[str], prompts: int, n_per_prompt: int, seed: int, log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Per-factor accuracy of ``sample``'s images for every (split, guidance): {"rows": [{combos, guidance, prompts,
    images, seconds, accuracy {factor: float, "all": ...}, counts {factor: int}}], "prompts": {split: [...]}}.
    Prompt k of a split is sampled with seed ``seed + k``."""
    if cond_kind not in ("text", "label"):
        raise InputError(f"prompt adherence needs a text or label model, got a {cond_kind or 'unconditional'} one")
    chosen = {split: select_prompts(split, prompts, seed) for split in combos}
    rows = []
    for split in combos:
        wanted = [scored_factors(p, cond_kind) for p in chosen[split] for _ in range(n_per_prompt)]
        for guidance in guidances:
            start = time.perf_counter()
            images = torch.cat([sample(p, float(guidance), n_per_prompt, seed + k)
                                for k, p in enumerate(chosen[split])])
            accuracy, counts = factor_accuracy(classifier, images, wanted)
            rows.append({"combos": split, "guidance": float(guidance), "prompts": len(chosen[split]),
                         "images": len(images), "seconds": round(time.perf_counter() - start, 1),
                         "accuracy": accuracy, "counts": counts})
            log(f"{split} guidance {guidance:g}: " + "  ".join(f"{k} {v:.3f}" for k, v in accuracy.items()))
    return {"rows": rows, "prompts": chosen}


def format_table(report: dict[str, Any]) -> str:
    """The rows of ``measure_adherence`` as a markdown table: one row per (combos, guidance), one column per
    factor scored (and "all": every named factor right)."""
    columns = [f for f in (*FACTORS, "all") if any(f in row["accuracy"] for row in report["rows"])]
    lines = ["| combos | guidance | " + " | ".join(columns) + " |", "|---|---:|" + "---:|" * len(columns)]
    for row in report["rows"]:
        cells = [f"{row['accuracy'][c]:.3f}" if c in row["accuracy"] else "" for c in columns]
        lines.append(f"| {row['combos']} | {row['guidance']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def checkpoint_sampler(ckpt: str, model: LoadedModel, *, steps: int, batch_size: int, weights: str = "ema",
                       device: str = "cpu") -> Sampler:
    """A ``Sampler`` over a loaded checkpoint (``model``, a sampling.checkpoint.LoadedModel of ``ckpt``) that
    draws through sample.py's config and generate task (DDIM, ``steps`` steps); a label model gets the prompt's
    shape as its label."""
    def sample(prompt: str, guidance: float, n: int, seed: int) -> torch.Tensor:
        overrides = [f"ckpt={ckpt}", f"weights={weights}", f"guidance={guidance}", f"sampler.steps={steps}",
                     f"seed={seed}", f"device={device}"]
        job, _ = build_job(compose_config("sample", overrides), model)
        if model.cond_kind == "text":
            images = generate(job, n=n, batch_size=batch_size, prompt=prompt)["grid.png"]
        else:
            images = generate(job, n=n, batch_size=batch_size, label=KINDS.index(parse_caption(prompt)["shape"]))
            images = images["grid.png"]
        return images.cpu()

    return sample
