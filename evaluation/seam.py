"""How visible the border of a pasted box is: the seam that zoom leaves where it pastes the previous frame.

A seam is a line across which neighbouring pixels differ more than neighbours do elsewhere. ``seam_ratio``
compares the two. For every pair of 4-neighbours it takes the squared difference summed over channels, in
[-1, 1] units; the pairs *across* the box's boundary (one pixel inside the box, one outside, the difference taken
perpendicular to the boundary, beside the box's sides) are the seam's, all other pairs of the image the
reference. The ratio is median(seam pairs) / median(other pairs), each plus ``eps``. About 1: the boundary is as
smooth as the rest of the picture; a seam drawn as a step in colour all along the box gives many times that.

The median, not the mean, by default: on the frames that zoom makes (a flat background with a few shapes) the
mean of the reference is the shapes' edges, so a faint step that runs all along the box (a line the eye sees at
once) still scored below 1, while a shape that happens to cross the boundary counts as much as a seam. The median
asks what the *typical* pair across the boundary does. ``eps`` defaults to one 8-bit level squared, (2/255)^2:
below that nothing is visible, and a perfectly flat reference does not divide by zero.

Plain tensors in, numbers out; no model, no file.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import torch

Box = tuple[int, int, int, int]  # top, left, bottom, right: rows top..bottom-1, columns left..right-1
ONE_LEVEL = (2 / 255) ** 2  # one 8-bit level of an image in [-1, 1], squared


def _seam_pairs(h: int, w: int, box: Box, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks over the vertical differences (H-1, W) and the horizontal ones (H, W-1): True where the pair
    lies across the box's boundary, within ``width`` pixels of it on both sides, and beside the box's sides."""
    top, left, bottom, right = box
    v = torch.zeros(h - 1, w, dtype=torch.bool)  # v[i, j]: pixel (i + 1, j) minus (i, j), across row line i + 1
    g = torch.zeros(h, w - 1, dtype=torch.bool)  # g[i, j]: pixel (i, j + 1) minus (i, j), across column line j + 1
    for d in range(-(width - 1), width):  # the boundary lines and those up to width - 1 pixels either side
        for line in (top + d, bottom + d):
            if 1 <= line <= h - 1:
                v[line - 1, max(left, 0) : min(right, w)] = True
        for line in (left + d, right + d):
            if 1 <= line <= w - 1:
                g[max(top, 0) : min(bottom, h), line - 1] = True
    return v, g


def seam_ratio(frame: torch.Tensor, box: Box, width: int = 1, statistic: str = "median",
               eps: float = ONE_LEVEL) -> float:
    """Seam ratio of ``box`` (top, left, bottom, right) in ``frame`` (C, H, W), values in [-1, 1]:
    statistic(squared differences across the box's boundary) / statistic(those of all other 4-neighbour pairs).

    ``width`` = 1 takes only the pairs that straddle the boundary (one pixel each side); ``width`` = w also those
    across the lines up to w - 1 pixels inside and outside it (a band 2w pixels wide, for a blurred seam).
    ``statistic``: "median" (see the module docstring) or "mean". ~1: no seam.
    """
    if frame.dim() != 3:
        raise ValueError(f"frame must be (C, H, W), got shape {tuple(frame.shape)}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if statistic not in ("median", "mean"):
        raise ValueError(f"statistic must be median or mean, got {statistic!r}")
    x = frame.double()
    dv = (x[:, 1:, :] - x[:, :-1, :]).pow(2).sum(0)  # (H-1, W)
    dg = (x[:, :, 1:] - x[:, :, :-1]).pow(2).sum(0)  # (H, W-1)
    on_v, on_g = _seam_pairs(x.shape[1], x.shape[2], box, width)
    on, off = torch.cat([dv[on_v], dg[on_g]]), torch.cat([dv[~on_v], dg[~on_g]])
    if on.numel() == 0 or off.numel() == 0:
        raise ValueError(f"box {box} has no boundary inside the {x.shape[1]}x{x.shape[2]} frame, or nothing else")
    reduce = torch.median if statistic == "median" else torch.mean
    return float((reduce(on) + eps) / (reduce(off) + eps))


def zoom_boxes(size: int, border: int, overlap: int = 0) -> list[Box]:
    """The boxes where a zoom frame of ``size`` can hold a seam: the pasted previous frame (``border`` pixels in on
    every side) and, with ``overlap``, each box 1..overlap pixels further in, down to the boundary of the region
    that was kept exactly."""
    return [(border + k, border + k, size - border - k, size - border - k) for k in range(overlap + 1)]


def zoom_seam_ratios(chain: Sequence[torch.Tensor], border: int, overlap: int = 0, width: int = 1,
                     statistic: str = "median") -> list[float]:
    """Per-frame seam ratio of a zoom-out chain of (C, H, W) frames (frame i + 1 holds frame i shrunk ``border``
    pixels in on every side; chain[0], generated whole, is skipped): the largest ``seam_ratio`` over ``zoom_boxes``
    (the pasted box and, with ``overlap``, the boxes inside it down to the exactly kept region), so a seam that
    the overlap only moved inwards is still found. A zoom-in chain is the same list reversed."""
    return [max(seam_ratio(f, b, width, statistic) for b in zoom_boxes(f.shape[-1], border, overlap))
            for f in chain[1:]]


def median_seam_ratio(chains: Sequence[Sequence[torch.Tensor]], border: int, overlap: int = 0, width: int = 1,
                      statistic: str = "median") -> float:
    """The median of ``zoom_seam_ratios`` over all frames of several chains (seeds)."""
    return statistics.median(r for c in chains for r in zoom_seam_ratios(c, border, overlap, width, statistic))
