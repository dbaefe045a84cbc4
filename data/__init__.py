"""Datasets: each item is an image tensor (C, H, W) float32 in [-1, 1] and an integer label (-1 when there is none).

Captioned datasets (every set here) also give ``caption(i) -> str`` and ``captions() -> list[str]``, the finite
set of every caption ``caption`` can return: a text model's encodings of that set are computed once and cached
(models/text.py), so training never runs the text encoder per step.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Where difflab caches what it computes once (rendered datasets, caption encodings, classifiers, reference
    features): $DIFFLAB_CACHE, else ~/.cache/difflab."""
    return Path(os.environ.get("DIFFLAB_CACHE") or "~/.cache/difflab").expanduser()


class DatasetError(Exception):
    """A dataset that cannot be built (missing or unreadable files, bad argument); says what to do."""


CLASS_TEMPLATE = "a photo of {}"


def with_article(name: str) -> str:
    """'sneaker' -> 'a sneaker', 'ankle boot' -> 'an ankle boot'."""
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


class ClassCaptions:
    """Captions of a labelled set from its class names: 'a photo of a sneaker' (``CLASS_TEMPLATE``), so text and
    label models can be compared on the same data. Needs ``classes`` and a ``labels`` array; ``caption_names``
    (default: the class names in lower case) is how the classes read in a caption."""

    classes: tuple[str, ...]
    caption_names: tuple[str, ...] | None = None
    labels: object

    @classmethod
    def label_captions(cls) -> list[str]:
        """The caption of each class, in label order."""
        names = cls.caption_names or tuple(c.lower() for c in cls.classes)
        return [CLASS_TEMPLATE.format(with_article(name)) for name in names]

    def caption(self, i: int) -> str:
        return self.label_captions()[int(self.labels[i])]

    def captions(self) -> list[str]:
        return sorted(self.label_captions())
