"""How much of a dataset's pixel variance its condition explains: the measurement behind the default demo's fix.

``conditional_variance`` groups n items by a condition (the label, or the caption) and returns the mean per-pixel
variance over all items and within the groups. A model that sees the condition must still produce everything the
within-group variance holds from noise alone; where the condition explains little (procedural shapes given only the
shape's label: colour, background, size and position are all left open), an under-trained model averages those
modes into blobs.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import torch
from torch.utils.data import Dataset


def conditional_variance(dataset: Dataset, condition: Callable[[int, int], object], n: int) -> dict[str, float]:
    """Mean per-pixel variance of the first n items: ``total``, and ``within`` the groups that ``condition(i, label)``
    makes (pooled over groups of at least two), with ``explained`` = 1 - within / total and the group count."""
    groups: dict[object, list[torch.Tensor]] = defaultdict(list)
    for i in range(min(n, len(dataset))):
        x, y = dataset[i]
        groups[condition(i, y)].append(x)
    everything = torch.stack([x for g in groups.values() for x in g])
    total = everything.var(0, unbiased=False).mean().item()
    sized = [torch.stack(g) for g in groups.values() if len(g) > 1]
    within = sum(g.var(0, unbiased=False).mean().item() * len(g) for g in sized) / sum(len(g) for g in sized)
    return {"total": total, "within": within, "explained": 1 - within / total, "groups": len(groups)}
