"""How well a learned pseudo-token shows its concept (textual inversion, scripts/textual_inversion_eval.py).

Every word evaluated (the learned token at some optimisation step, its initial word, the existing word nearest to
the learned vector) fills the same in-distribution prompts with the same seeds: for a shape concept (star, letter)
"a large <colour> <word> in the centre on a <bg> background", for an emoji "a <word>". Its samples are scored in a
feature space, the factor classifier's pooled features (evaluation/factors.py) for shapes, FID Inception's for emoji:

- concept rate: the fraction of samples whose nearest neighbour, within a reference pool of fresh concept renders
  and of what the model already knows (procedural shapes of the same colours, backgrounds and size; emoji of the
  training split), is a concept render; with the mean feature distance to the nearest concept render;
- colour accuracy (shapes): the colour head's agreement with the prompt's colour (is the attribute kept when
  composing).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from data.concept import render_concept
from data.procedural import COLOURS, KINDS, ProceduralShapes, contrasting_backgrounds
from evaluation.factors import predict_factors
from models.classifier import FactorClassifier

# (prompts, n per prompt, seed) -> (len(prompts) * n, C, H, W) samples in [-1, 1], prompt k's samples together
Sampler = Callable[[list[str], int, int], torch.Tensor]


def reference_pool(kind: str, image_size: int, per_class: int, seed: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(images (M, 3, S, S), is_concept (M,) bool): ``per_class`` fresh renders of the concept, and of each
    procedural shape, all large (as the concept folders are), drawn with seeds no training image used; for an
    emoji concept, 4 x ``per_class`` emoji of the training split."""
    concept, _ = render_concept(kind, per_class, image_size, seed)
    if kind.startswith("emoji:"):
        from data.emoji import Emoji

        train = Emoji(image_size, split="train")
        picks = np.random.default_rng(seed).choice(len(train), size=min(4 * per_class, len(train)), replace=False)
        others = torch.stack([train[int(i)][0] for i in picks])
        is_concept = torch.cat([torch.ones(len(concept), dtype=torch.bool), torch.zeros(len(others), dtype=torch.bool)])
        return torch.cat([concept, others]), is_concept
    shapes = ProceduralShapes(size=per_class * 40, image_size=image_size, seed=seed)
    found: dict[str, list[torch.Tensor]] = {k: [] for k in KINDS}
    for i in range(len(shapes)):
        p = shapes.params(i)
        if p["size"] == "large" and len(found[p["kind"]]) < per_class:
            found[p["kind"]].append(shapes[i][0])
        if all(len(v) == per_class for v in found.values()):
            break
    others = torch.stack([x for k in KINDS for x in found[k]])
    is_concept = torch.cat([torch.ones(len(concept), dtype=torch.bool), torch.zeros(len(others), dtype=torch.bool)])
    return torch.cat([concept, others]), is_concept


def composition_prompts(word: str, n: int, seed: int = 0, emoji: bool = False) -> tuple[list[str], list[str] | None]:
    """n prompts placing ``word`` in the procedural caption frame, with seeded colours and contrasting backgrounds,
    and the colour each asks for; for an emoji, "a <word>" n times (the seeds differ) and no colours."""
    if emoji:
        return [f"a {word}"] * n, None
    rng = np.random.default_rng(seed)
    colours = [tuple(COLOURS)[rng.integers(len(COLOURS))] for _ in range(n)]
    backgrounds = [contrasting_backgrounds(c)[rng.integers(len(contrasting_backgrounds(c)))] for c in colours]
    prompts = [f"a large {c} {word} in the centre on a {b} background" for c, b in zip(colours, backgrounds)]
    return prompts, colours


@torch.no_grad()
def concept_scores(features: Callable[[torch.Tensor], torch.Tensor], samples: torch.Tensor, pool: torch.Tensor,
                   is_concept: torch.Tensor) -> dict[str, float]:
    """concept_rate (nearest pool neighbour is a concept render) and concept_distance (mean feature distance to
    the nearest concept render) of ``samples``; ``features``: images -> (N, D)."""
    f_samples, f_pool = features(samples).double(), features(pool).double()
    d = torch.cdist(f_samples, f_pool)  # (N, M)
    nearest = d.argmin(1)
    return {"concept_rate": is_concept[nearest].float().mean().item(),
            "concept_distance": d[:, is_concept].min(1).values.mean().item()}


@torch.no_grad()
def colour_accuracy(classifier: FactorClassifier, samples: torch.Tensor, colours: list[str]) -> float:
    predicted = predict_factors(classifier, samples)["colour"]
    wanted = torch.tensor([tuple(COLOURS).index(c) for c in colours])
    return (predicted == wanted).float().mean().item()


def score_word(sample: Sampler, features: Callable[[torch.Tensor], torch.Tensor], classifier: FactorClassifier | None,
               word: str, pool: torch.Tensor, is_concept: torch.Tensor, prompts: int, n_per_prompt: int, seed: int,
               emoji: bool = False) -> tuple[dict[str, Any], torch.Tensor]:
    """The samples of ``word`` in ``prompts`` prompts (module docstring), scored, and the samples; colour accuracy
    only with a factor ``classifier`` (shapes)."""
    texts, colours = composition_prompts(word, prompts, seed, emoji)
    images = sample(texts, n_per_prompt, seed)
    row = {"word": word, "samples": len(images), **concept_scores(features, images, pool, is_concept)}
    if classifier is not None and colours is not None:
        row["colour_accuracy"] = colour_accuracy(classifier, images, [c for c in colours for _ in range(n_per_prompt)])
    return row, images


def nearest_word(encoder, vector: torch.Tensor, exclude: tuple[str, ...] = ()) -> str:
    """The whole word of the encoder's vocabulary whose input embedding is nearest to ``vector`` by cosine
    (no [special] or [unusedN] entries, no ## word pieces, none of ``exclude``)."""
    table = encoder.word_embeddings().weight.detach()
    sims = torch.nn.functional.cosine_similarity(table, vector[None].to(table), dim=1)
    vocab = encoder.tokenizer.convert_ids_to_tokens(list(range(len(table))))
    for i in sims.argsort(descending=True).tolist():
        word = vocab[i]
        if word.isalpha() and word not in exclude and not word.startswith("["):
            return word
    raise ValueError("no whole word in the vocabulary")
