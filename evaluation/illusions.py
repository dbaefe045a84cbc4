"""How well illusions work, by classifier: each view of an anagram against its own condition, and each band of
a hybrid image against its own condition (issue 11).

A label model is scored by the project's classifier of its data (the FD classifier); a text model on procedural
captions by the factor classifier, on the factors each prompt names (data.procedural.parse_caption).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from data.procedural import parse_caption
from diffusion.illusions import make_components, make_view
from evaluation.factors import factor_accuracy
from sampling.illusions import illusion_conditions, sample_anagrams, sample_hybrids
from sampling.job import Job

Scorer = Callable[[torch.Tensor, Any], float]  # (images, condition) -> accuracy of the images against it


def label_scorer(classifier: torch.nn.Module) -> Scorer:
    """Accuracy of the classifier's class for the images against a label."""
    def score(images: torch.Tensor, label) -> float:
        with torch.no_grad():
            return (classifier(images.float()).argmax(1) == int(label)).float().mean().item()
    return score


def factor_scorer(classifier: torch.nn.Module) -> Scorer:
    """The fraction of images right on every factor the prompt names (shape and colour for "a red triangle")."""
    def score(images: torch.Tensor, prompt) -> float:
        wanted = parse_caption(str(prompt))
        return factor_accuracy(classifier, images, [wanted] * len(images))[0]["all"]
    return score


def anagram_accuracy(job: Job, score: Scorer, views: list[str], conditions: list, n: int, batch_size: int = 16,
                     jigsaw: int = 4) -> dict[str, Any]:
    """n anagrams of ``conditions`` under ``views``: per view, the accuracy of view(image) against its own
    condition, and "all": the fraction of images right under every view."""
    view_list = [make_view(v, job.model.image_shape, jigsaw) for v in views]
    values = _values(job, conditions, len(view_list), "view")
    images, _ = sample_anagrams(job, view_list, values, n, batch_size)
    per_view = [torch.tensor([score(v.apply(x[None]), c) for x in images]) for v, c in zip(view_list, values)]
    return {"views": [v.name for v in view_list], "conditions": values, "n": n,
            "accuracy": [float(a.mean()) for a in per_view],
            "all": float(torch.stack(per_view).min(0).values.mean()), "images": images}


def hybrid_accuracy(job: Job, score: Scorer, conditions: list, n: int, sigma: float = 2.0,
                    batch_size: int = 16) -> dict[str, Any]:
    """n low/high hybrids: the accuracy of the low-passed image against condition 1 and of the image with its low
    band removed (the high band) against condition 2; and, as the baseline, of the whole image against each."""
    low, high = make_components("low_high", sigma, job.model.image_shape[0])
    values = _values(job, conditions, 2, "component")
    images, _ = sample_hybrids(job, [low, high], values, n, batch_size)
    return {"conditions": values, "sigma": sigma, "n": n,
            "low_vs_1": score(low.apply(images), values[0]), "high_vs_2": score(high.apply(images), values[1]),
            "full_vs_1": score(images, values[0]), "full_vs_2": score(images, values[1]), "images": images}


def _values(job: Job, conditions: list, count: int, what: str) -> list:
    text = job.model.encoder is not None
    return illusion_conditions(job, None if text else conditions, conditions if text else None, count, what)
