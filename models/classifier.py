"""A small CNN image classifier: its logits score class accuracy of samples, its features give FD-classifier."""

from __future__ import annotations

import torch
from torch import nn


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv + GroupNorm + SiLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(8, c_out), nn.SiLU())


class Classifier(nn.Module):
    """Five 3x3 convs (width at S, 2 width at S/2, 4 width at S/4; strided convs downsample), global max pool,
    linear head. ``features`` is the pooled (N, 4 width) vector before the head (128-d at width 32).

    Strided downsampling keeps full-resolution work to one conv (~3x faster to train on a CPU than two convs per
    stage). Max rather than average pooling: an object covering a small part of the image is drowned in background
    by the average (procedural shapes, 200 steps: 31% val accuracy with average, 92% with max).
    """

    def __init__(self, in_channels: int, num_classes: int, image_size: int, width: int = 32):
        super().__init__()
        if image_size < 8 or image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4 and >= 8, got {image_size}")
        self.in_channels, self.num_classes, self.image_size, self.width = in_channels, num_classes, image_size, width
        self.stages = nn.Sequential(
            _conv(in_channels, width),  # (N, w, S, S)
            _conv(width, 2 * width, stride=2),  # (N, 2w, S/2, S/2)
            _conv(2 * width, 2 * width),
            _conv(2 * width, 4 * width, stride=2),  # (N, 4w, S/4, S/4)
            _conv(4 * width, 4 * width),
        )
        self.head = nn.Linear(4 * width, num_classes)

    @property
    def feature_dim(self) -> int:
        """D, the size of ``features(x)``."""
        return self.head.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) in [-1, 1] -> (N, D) penultimate features."""
        if tuple(x.shape[1:]) != (self.in_channels, self.image_size, self.image_size):
            expected = (self.in_channels, self.image_size, self.image_size)
            raise ValueError(f"classifier expects (N, {', '.join(map(str, expected))}), got {tuple(x.shape)}")
        h = self.stages(x)  # (N, 4w, S/4, S/4)
        return h.amax(dim=(2, 3))  # (N, 4w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) in [-1, 1] -> (N, num_classes) logits."""
        return self.head(self.features(x))
