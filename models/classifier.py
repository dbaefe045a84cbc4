"""Small CNN image classifiers: ``Classifier``'s logits score class accuracy of samples and its features give
FD-classifier; ``FactorClassifier`` (the same trunk, one head per factor) scores prompt adherence."""

from __future__ import annotations

import torch
from torch import nn


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv + GroupNorm + SiLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


def trunk(in_channels: int, width: int) -> nn.Sequential:
    """Five 3x3 convs: (N, C, S, S) -> (N, 4 width, S/4, S/4); width at S, 2 width at S/2, 4 width at S/4."""
    return nn.Sequential(
        _conv(in_channels, width),  # (N, w, S, S)
        _conv(width, 2 * width, stride=2),  # (N, 2w, S/2, S/2)
        _conv(2 * width, 2 * width),
        _conv(2 * width, 4 * width, stride=2),  # (N, 4w, S/4, S/4)
        _conv(4 * width, 4 * width),
    )


def _check_size(image_size: int) -> None:
    if image_size < 8 or image_size % 4:
        raise ValueError(f"image_size must be a multiple of 4 and >= 8, got {image_size}")


def _check_input(x: torch.Tensor, in_channels: int, image_size: int) -> None:
    if tuple(x.shape[1:]) != (in_channels, image_size, image_size):
        expected = (in_channels, image_size, image_size)
        raise ValueError(f"classifier expects (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}")


class Classifier(nn.Module):
    """Five 3x3 convs (width at S, 2 width at S/2, 4 width at S/4; strided convs downsample), global max pool,
    linear head. ``features`` is the pooled (N, 4 width) vector before the head (128-d at width 32).

    Strided downsampling keeps full-resolution work to one conv (~3x faster to train on a CPU than two convs per
    stage). Max rather than average pooling: an object covering a small part of the image is drowned in background
    by the average (procedural shapes, 200 steps: 31% val accuracy with average, 92% with max).
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int, width: int = 32):
        super().__init__()
        _check_size(image_size)
        self.in_channels, self.num_classes, self.image_size, self.width = in_channels, num_classes, image_size, width
        self.stages = trunk(in_channels, width)
        self.head = nn.Linear(4 * width, num_classes)

    @property
    def feature_dim(self) -> int:
        """D, the size of ``features(x)``."""
        return self.head.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) in [-1, 1] -> (N, D) penultimate features."""
        _check_input(x, self.in_channels, self.image_size)
        h = self.stages(x)  # (N, 4w, S/4, S/4)
        return h.amax(dim=(2, 3))  # (N, 4w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) in [-1, 1] -> (N, num_classes) logits."""
        return self.head(self.features(x))


class FactorClassifier(nn.Module):
    """``Classifier``'s trunk and global max pool with one linear head per factor: ``heads`` maps a factor's name
    to its number of values (procedural shapes: shape 4, colour 6, background 4, size 3, position 9).

    Position reads the same pooled vector as the other heads: zero padding lets the trunk's features (receptive
    field 21 px) see how far the border is, so the pooled vector still says where the object lies. Measured on
    procedural shapes at 32 px after 600 steps, position accuracy was 0.956 from the pooled vector, 0.957 with a
    flattened 8x8 map beside it and 0.954 with coordinate channels on the input; at 1500 steps a centre-regression
    auxiliary loss gave 0.964 against 0.9635 without. What remains is sub-pixel: the best possible is about 0.98
    (evaluation/factors.py, ``position_ceiling``).
    """

    def __init__(self, in_channels: int, heads: dict[str, int], image_size: int, width: int = 32):
        super().__init__()
        _check_size(image_size)
        if not heads or any(int(n) < 2 for n in heads.values()):
            raise ValueError(f"heads must name at least one factor, each with >= 2 values, got {heads}")
        self.in_channels, self.image_size, self.width = in_channels, image_size, width
        self.stages = trunk(in_channels, width)
        self.heads = nn.ModuleDict({name: nn.Linear(4 * width, int(n)) for name, n in heads.items()})

    @property
    def feature_dim(self) -> int:
        """D, the size of ``features(x)``."""
        return 4 * self.width

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) in [-1, 1] -> (N, D) pooled features, which every head reads."""
        _check_input(x, self.in_channels, self.image_size)
        return self.stages(x).amax(dim=(2, 3))  # (N, 4w, S/4, S/4) -> (N, 4w)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, C, S, S) in [-1, 1] -> {factor: (N, values) logits}."""
        f = self.features(x)  # (N, D)
        return {name: head(f) for name, head in self.heads.items()}
