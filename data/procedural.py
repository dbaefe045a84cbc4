"""Procedural shapes: one coloured shape per image with a caption and an exact mask, seeded per index."""

import math
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from data import DatasetError
from data.transforms import check_channels

KINDS = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (220, 30, 30),
    "green": (40, 170, 60),
    "blue": (40, 90, 230),
    "yellow": (245, 215, 30),
    "purple": (150, 60, 210),
    "orange": (250, 130, 20),
}
BACKGROUNDS = {"black": (0, 0, 0), "white": (255, 255, 255), "grey": (170, 170, 170), "navy": (20, 30, 90)}
# Half-width of the shape's bounding square as a fraction of the image size.
SIZES = {"small": 0.18, "medium": 0.26, "large": 0.34}
# Row-major 3x3 grid: position index p is row p // 3, column p % 3.
POSITIONS = (
    "top left",
    "top",
    "top right",
    "left",
    "centre",
    "right",
    "bottom left",
    "bottom",
    "bottom right",
)
PHRASES = {"left": "on the left", "right": "on the right", "centre": "in the centre"}
# Colour x shape pairs that the "seen" split never draws: a text model trained on it is tested on them for
# compositional generalisation (each shape and each of four colours appears in exactly one held-out pair).
HELD_OUT = (("red", "cross"), ("green", "triangle"), ("blue", "circle"), ("yellow", "square"))
COMBOS = ("all", "seen", "held_out")
FACTORS = {"shape": KINDS, "colour": tuple(COLOURS), "background": tuple(BACKGROUNDS), "size": tuple(SIZES),
           "position": POSITIONS}
# Luma difference (ITU-R 601, 0-255) a background needs from the shape colour, so that the shape
# also stands out after the greyscale conversion used for channels=1.
MIN_LUMA_CONTRAST = 60


def luma(rgb: tuple[int, int, int]) -> int:
    """Greyscale value of an RGB colour exactly as PIL's convert('L') computes it."""
    return int(Image.new("RGB", (1, 1), rgb).convert("L").getpixel((0, 0)))


def contrasting_backgrounds(colour: str) -> tuple[str, ...]:
    """Background names whose luma differs from the colour's by at least MIN_LUMA_CONTRAST."""
    return tuple(
        b for b, rgb in BACKGROUNDS.items() if abs(luma(rgb) - luma(COLOURS[colour])) >= MIN_LUMA_CONTRAST
    )


def shape_mask(kind: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, half: float) -> np.ndarray:
    """Boolean mask at points (xs, ys) of a shape centred at (cx, cy) in a square of half-width `half`."""
    dx, dy = np.abs(xs - cx), ys - cy
    if kind == "circle":
        return dx * dx + dy * dy <= half * half
    if kind == "square":
        # 0.8: a square as wide as the circle would look markedly bigger (area 4 vs pi).
        return np.maximum(dx, np.abs(dy)) <= 0.8 * half
    if kind == "triangle":
        # Equilateral, side 2*half, apex up, vertically centred: the width grows linearly from the apex.
        a = half * math.sqrt(3) / 2
        return (dy <= a) & (dx * 2 * a <= half * (dy + a))
    if kind == "cross":
        arm = half / 3
        return ((dx <= half) & (np.abs(dy) <= arm)) | ((dx <= arm) & (np.abs(dy) <= half))
    raise ValueError(f"unknown shape kind {kind!r}")


def place_phrase(position: str) -> str:
    """'top left' -> 'at the top left'; 'left' -> 'on the left'; 'centre' -> 'in the centre'."""
    return PHRASES.get(position, f"at the {position}")


def make_caption(kind: str, colour: str, background: str, size: str, position: str) -> str:
    """The caption of one combination of factors, e.g. 'a small red triangle at the top left on a navy background'."""
    return f"a {size} {colour} {kind} {place_phrase(position)} on a {background} background"


def parse_caption(text: str) -> dict[str, str]:
    """The factors a prompt names (any subset of shape, colour, background, size, position), by keyword.

    'a red circle at the top left on a navy background' -> shape circle, colour red, background navy,
    position top left. The background is the word before 'background'; a colour elsewhere is the shape's.
    """
    words = text.lower().replace(",", " ").split()
    found: dict[str, str] = {}
    if "background" in words:
        k = words.index("background")
        if k > 0 and words[k - 1] in BACKGROUNDS:
            found["background"] = words[k - 1]
            words = words[: k - 1] + words[k + 1 :]
    for word in words:
        for factor in ("shape", "colour", "size"):
            if word in FACTORS[factor] and factor not in found:
                found[factor] = word
    joined = " ".join(words)
    for position in sorted(POSITIONS, key=len, reverse=True):  # 'top left' before 'top' and 'left'
        if place_phrase(position) in joined:
            found["position"] = position
            break
    return found


class ProceduralShapes(Dataset):
    """One shape (circle/square/triangle/cross) per image; label = kind index; item i seeded by (seed, i).

    Captioned: ``caption(i)`` names all five factors, and ``captions()`` is the finite set of every caption the
    dataset can produce. ``combos`` picks the colour x shape pairs drawn: all, the ``seen`` ones (no pair of
    ``HELD_OUT``: the training split of text models) or only the ``held_out`` ones (their generalisation test).
    """

    classes = KINDS
    num_classes = len(KINDS)

    def __init__(self, size: int = 50000, image_size: int = 32, seed: int = 0, channels: int = 3,
                 combos: str = "all") -> None:
        check_channels(channels, "procedural")
        if image_size < 16:
            raise DatasetError(f"procedural: image_size must be >= 16, got {image_size}")
        if combos not in COMBOS:
            raise DatasetError(f"procedural: combos must be one of {', '.join(COMBOS)}, got {combos!r}")
        self.size, self.image_size, self.seed, self.channels, self.combos = size, image_size, seed, channels, combos
        centres = np.arange(image_size, dtype=np.float64) + 0.5  # rasterise at pixel centres
        self._ys, self._xs = np.meshgrid(centres, centres, indexing="ij")
        to_grey = (lambda rgb: (luma(rgb),)) if channels == 1 else (lambda rgb: rgb)
        # Colours in [-1, 1], shape (C, 1, 1), converted once so that images hold these exact values.
        self.colour_values = {n: self._value(to_grey(rgb)) for n, rgb in COLOURS.items()}
        self.background_values = {n: self._value(to_grey(rgb)) for n, rgb in BACKGROUNDS.items()}
        self._backgrounds = {c: contrasting_backgrounds(c) for c in COLOURS}

    @staticmethod
    def _value(levels: tuple[int, ...]) -> np.ndarray:
        return (np.asarray(levels, dtype=np.float32) / 127.5 - 1.0)[:, None, None]

    def __len__(self) -> int:
        return self.size

    def params(self, i: int) -> dict[str, Any]:
        """The attributes of item i (kind, colour, background, size, position, centre, half-width)."""
        if not 0 <= i < self.size:
            raise IndexError(f"index {i} out of range for {self.size} procedural shapes")
        rng = np.random.default_rng([self.seed, i])
        kind = KINDS[rng.integers(len(KINDS))]
        colour = tuple(COLOURS)[rng.integers(len(COLOURS))]
        if self.combos == "held_out":
            colour, kind = HELD_OUT[rng.integers(len(HELD_OUT))]
        while self.combos == "seen" and (colour, kind) in HELD_OUT:  # redraw: a function of (seed, i) still
            kind, colour = KINDS[rng.integers(len(KINDS))], tuple(COLOURS)[rng.integers(len(COLOURS))]
        size = tuple(SIZES)[rng.integers(len(SIZES))]
        position = int(rng.integers(len(POSITIONS)))
        jitter = rng.random(2)
        options = self._backgrounds[colour]
        background = options[rng.integers(len(options))]
        half = SIZES[size] * self.image_size
        # The centre ranges over [half, S - half] (shape fully inside); the position picks a third of it.
        span = self.image_size - 2 * half
        cx = half + span * (position % 3 + jitter[0]) / 3
        cy = half + span * (position // 3 + jitter[1]) / 3
        return dict(
            kind=kind,
            colour=colour,
            background=background,
            size=size,
            position=POSITIONS[position],
            centre=(cx, cy),
            half=half,
        )

    def _render(self, p: dict[str, Any]) -> tuple[torch.Tensor, np.ndarray]:
        mask = shape_mask(p["kind"], self._xs, self._ys, *p["centre"], p["half"])
        image = np.where(mask, self.colour_values[p["colour"]], self.background_values[p["background"]])
        return torch.from_numpy(image), mask

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        p = self.params(i)
        return self._render(p)[0], KINDS.index(p["kind"])

    def caption(self, i: int) -> str:
        """The caption of item i: all five factors in words."""
        p = self.params(i)
        return make_caption(p["kind"], p["colour"], p["background"], p["size"], p["position"])

    def captions(self) -> list[str]:
        """Every caption this dataset can produce (sorted): the finite set a text model's encodings are cached for."""
        out = []
        for kind in KINDS:
            for colour in COLOURS:
                held = (colour, kind) in HELD_OUT
                if (self.combos == "seen" and held) or (self.combos == "held_out" and not held):
                    continue
                for background in self._backgrounds[colour]:
                    for size in SIZES:
                        out += [make_caption(kind, colour, background, size, pos) for pos in POSITIONS]
        return sorted(out)

    def sample(self, i: int) -> dict[str, Any]:
        """Item i with everything: image, label, caption, mask (1, H, W) bool, and its attributes."""
        p = self.params(i)
        image, mask = self._render(p)
        caption = make_caption(p["kind"], p["colour"], p["background"], p["size"], p["position"])
        return dict(
            image=image, label=KINDS.index(p["kind"]), caption=caption, mask=torch.from_numpy(mask)[None], **p
        )
