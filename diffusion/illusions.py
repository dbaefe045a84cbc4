"""Illusions as denoiser wrappers: visual anagrams (Geng et al., CVPR 2024) and factorized diffusion for hybrid
images (Geng et al., ECCV 2024).

Both combine several denoisers of the same x_t into one:

    anagram:     eps(x_t) = 1/N sum_v  view_v^-1( eps_v(view_v(x_t)) )      views: orthogonal pixel transforms
    factorized:  eps(x_t) = sum_i f_i( eps_i(x_t) )                          components: sum_i f_i = identity

with eps_v / eps_i each a (guided) denoiser of its own condition. Both maps are linear, and each keeps x_t
fixed (1/N sum view^-1 view = identity; sum f_i = identity), so the x0 estimates combine the same way and the
result is again a consistent ``Prediction``: every sampler runs it unchanged.

A view must be orthogonal: then view(x_t) of a noisy image is again x_t-distributed (white noise stays white),
which is what lets each denoiser see an in-distribution input. ``check_view`` probes that on random tensors
and refuses any other transform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torchvision.transforms.functional as TF

from diffusion.denoiser import Denoiser
from diffusion.parametrization import Prediction

Transform = Callable[[torch.Tensor], torch.Tensor]  # (B, C, H, W) -> (B, C, H, W)


class IllusionError(ValueError):
    """A view or component that cannot be built or is not allowed (one line, for the command line)."""


@dataclass(frozen=True)
class View:
    """A named invertible pixel transform of (B, C, H, W) images, and its inverse."""

    name: str
    apply: Transform
    inverse: Transform


def _jigsaw_permutation(pieces: int, seed: int = 0) -> torch.Tensor:
    """A fixed permutation of pieces*pieces square pieces that moves every piece (a derangement)."""
    g = torch.Generator().manual_seed(seed)
    n = pieces * pieces
    while True:
        perm = torch.randperm(n, generator=g)
        if n == 1 or bool((perm != torch.arange(n)).all()):
            return perm


def _jigsaw(size: int, pieces: int) -> View:
    """Square pieces of side size/pieces moved by a fixed permutation: piece k goes to place perm[k]."""
    if pieces < 2 or size % pieces:
        raise IllusionError(f"jigsaw: {pieces} pieces per side must be >= 2 and divide the image size {size}")
    p = size // pieces
    perm = _jigsaw_permutation(pieces)
    inv = torch.argsort(perm)

    def move(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        # (B, C, pieces, p, pieces, p) -> pieces in raster order (B, C, pieces*pieces, p, p)
        tiles = x.reshape(b, c, pieces, p, pieces, p).permute(0, 1, 2, 4, 3, 5).reshape(b, c, -1, p, p)
        placed = tiles[:, :, order]  # the tile that lands at place j is tile order[j]
        return placed.reshape(b, c, pieces, pieces, p, p).permute(0, 1, 2, 4, 3, 5).reshape(x.shape)

    return View(f"jigsaw{pieces}", lambda x: move(x, inv), lambda x: move(x, perm))


# name -> (apply, inverse) of the fixed views; "jigsaw" is built per image size (``make_view``).
_FIXED: dict[str, tuple[Transform, Transform]] = {
    "identity": (lambda x: x, lambda x: x),
    "rot90": (lambda x: torch.rot90(x, 1, (-2, -1)), lambda x: torch.rot90(x, -1, (-2, -1))),  # counter-clockwise
    "rot180": (lambda x: torch.rot90(x, 2, (-2, -1)), lambda x: torch.rot90(x, 2, (-2, -1))),
    "rot270": (lambda x: torch.rot90(x, -1, (-2, -1)), lambda x: torch.rot90(x, 1, (-2, -1))),
    "flip_v": (lambda x: x.flip(-2), lambda x: x.flip(-2)),  # upside down
    "flip_h": (lambda x: x.flip(-1), lambda x: x.flip(-1)),  # mirrored left-right
    "transpose": (lambda x: x.transpose(-2, -1), lambda x: x.transpose(-2, -1)),
    "negate": (lambda x: -x, lambda x: -x),  # colour inversion of images in [-1, 1]
}
VIEWS = (*_FIXED, "jigsaw")


def check_view(view: View, shape: tuple[int, int, int], trials: int = 4, tol: float = 1e-5) -> View:
    """``view`` if it is orthogonal on images of ``shape`` (C, H, W): the inverse gives back the input and the norm
    is kept, on random tensors. Otherwise IllusionError: averaging a non-orthogonal view's estimate would feed
    the network inputs that are not x_t-distributed."""
    g = torch.Generator().manual_seed(0)
    for _ in range(trials):
        x = torch.randn((2, *shape), generator=g, dtype=torch.float64)
        y = view.apply(x)
        if y.shape != x.shape:
            raise IllusionError(f"view {view.name!r} changes the image shape {tuple(x.shape[1:])} -> "
                                f"{tuple(y.shape[1:])}")
        if not torch.allclose(view.inverse(y), x, atol=tol, rtol=0):
            raise IllusionError(f"view {view.name!r}: its inverse does not give back the input")
        if not torch.allclose(y.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), atol=tol, rtol=tol):
            raise IllusionError(f"view {view.name!r} is not orthogonal (it changes the norm): anagrams need "
                                "orthogonal views, which keep noise white")
    return view


def make_view(name: str, shape: tuple[int, int, int], jigsaw: int = 4) -> View:
    """The view called ``name`` (one of ``VIEWS``) for images of ``shape`` (C, H, W), checked orthogonal.
    ``jigsaw``: pieces per side of the jigsaw view; it must divide the image size."""
    _, h, w = shape
    if name not in VIEWS:
        raise IllusionError(f"unknown view {name!r}; choose from {', '.join(VIEWS)}")
    if name in ("rot90", "rot270", "transpose", "jigsaw") and h != w:
        raise IllusionError(f"view {name!r} needs square images, got {h}x{w}")
    view = _jigsaw(h, jigsaw) if name == "jigsaw" else View(name, *_FIXED[name])
    return check_view(view, shape)


def anagram_denoiser(denoisers: list[Denoiser], views: list[View]) -> Denoiser:
    """The visual-anagram denoiser (Geng et al. 2024, eq. 3): the mean over views of view^-1 of the estimate of
    denoiser v (its own, guided, condition) on view(x_t). Applied to both eps and x0, which stay consistent."""
    if len(denoisers) != len(views) or not views:
        raise IllusionError(f"{len(views)} view(s) for {len(denoisers)} condition(s): give one condition per view")

    def denoiser(x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        eps = x0 = 0
        for den, view in zip(denoisers, views):
            p = den(view.apply(x_t), t)
            eps, x0 = eps + view.inverse(p.eps), x0 + view.inverse(p.x0)
        return Prediction(eps / len(views), x0 / len(views))

    return denoiser


@dataclass(frozen=True)
class Component:
    """One linear component f_i of a decomposition x = sum_i f_i(x)."""

    name: str
    apply: Transform


def gaussian_lowpass(sigma: float) -> Transform:
    """Gaussian blur of standard deviation ``sigma`` pixels (kernel radius 3 sigma, reflected borders): linear."""
    if not (math.isfinite(sigma) and sigma > 0):
        raise IllusionError(f"hybrid: sigma must be > 0 pixels, got {sigma}")
    k = 2 * math.ceil(3 * sigma) + 1
    return lambda x: TF.gaussian_blur(x, [k, k], [sigma, sigma])


def _rest(f: Transform) -> Transform:
    """x - f(x): the complementary component, so the pair sums to the identity."""
    return lambda x: x - f(x)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """The channel mean at every channel: the greyscale part of an image (an orthogonal projection)."""
    return x.mean(dim=1, keepdim=True).expand_as(x)


DECOMPOSITIONS = ("low_high", "grey_colour")


def make_components(kind: str, sigma: float = 2.0, channels: int = 3) -> list[Component]:
    """The components of ``kind``: low_high (Gaussian low-pass of ``sigma`` pixels, and the rest: hybrid images)
    or grey_colour (the channel mean, and the rest: colour hybrids, RGB only). They sum to the identity."""
    if kind == "low_high":
        low = gaussian_lowpass(sigma)
        return [Component("low", low), Component("high", _rest(low))]
    if kind == "grey_colour":
        if channels < 2:
            raise IllusionError("hybrid: grey_colour needs a colour model (channels > 1)")
        return [Component("grey", _grey), Component("colour", _rest(_grey))]
    raise IllusionError(f"unknown decomposition {kind!r}; choose from {', '.join(DECOMPOSITIONS)}")


def factorized_denoiser(denoisers: list[Denoiser], components: list[Component]) -> Denoiser:
    """Factorized diffusion (Geng et al. 2024, eq. 4): component i of the estimate comes from denoiser i
    (its own, guided, condition), eps = sum_i f_i(eps_i(x_t)); the same for x0."""
    if len(denoisers) != len(components) or not components:
        raise IllusionError(f"{len(components)} component(s) for {len(denoisers)} condition(s): give one per component")

    def denoiser(x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        eps = x0 = 0
        for den, comp in zip(denoisers, components):
            p = den(x_t, t)
            eps, x0 = eps + comp.apply(p.eps), x0 + comp.apply(p.x0)
        return Prediction(eps, x0)

    return denoiser
