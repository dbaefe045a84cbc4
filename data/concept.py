"""New concepts for textual inversion: shapes the procedural set never draws (a five-pointed star, or a letter in
matplotlib's DejaVu Sans Bold), rendered in procedural's colours, backgrounds, sizes and positions; or an emoji of
the emoji set's held-out split, at a few scales and offsets.

``write_concept`` makes a folder that ``train.py experiment=textual_inversion concept=<folder>`` reads: PNGs and a
``metadata.jsonl`` whose captions name the concept ``<S*>``: procedural's captions for shapes ("a large red <S*> in
the centre on a black background"), "a <S*>" for an emoji (as the emoji captions are "a red heart").
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from data import DatasetError
from data.procedural import ProceduralShapes, make_caption

PLACEHOLDER = "<S*>"


def star_mask(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, half: float, points: int = 5,
              inner: float = 0.45) -> np.ndarray:
    """Boolean mask at (xs, ys) of a star with ``points`` tips, outer radius ``half``, apex up."""
    from matplotlib.path import Path as Polygon

    angles = -math.pi / 2 + np.arange(2 * points) * math.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, half, inner * half)
    vertices = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    inside = Polygon(vertices).contains_points(np.stack([xs.ravel(), ys.ravel()], axis=1))
    return inside.reshape(xs.shape)


def letter_mask(letter: str, image_size: int, cx: float, cy: float, half: float) -> np.ndarray:
    """Boolean mask of ``letter`` in DejaVu Sans Bold, its box 2*half tall, centred at (cx, cy)."""
    import matplotlib

    font_path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"
    scale = 8  # render large, then average down: anti-aliasing, thresholded at half coverage
    font = ImageFont.truetype(str(font_path), size=max(1, round(2 * half * scale * 1.2)))
    canvas = Image.new("L", (image_size * scale, image_size * scale), 0)
    draw = ImageDraw.Draw(canvas)
    left, top, right, bottom = draw.textbbox((0, 0), letter, font=font)
    draw.text((cx * scale - (left + right) / 2, cy * scale - (top + bottom) / 2), letter, fill=255, font=font)
    coverage = np.asarray(canvas, dtype=np.float32).reshape(image_size, scale, image_size, scale).mean((1, 3))
    return coverage >= 127.5


def concept_mask(kind: str, shapes: ProceduralShapes, p: dict) -> np.ndarray:
    """The mask of the concept ``kind`` ('star' or 'letter:<c>') with the placement of procedural params p."""
    if kind == "star":
        return star_mask(shapes._xs, shapes._ys, *p["centre"], p["half"])
    if kind.startswith("letter:") and len(kind) == len("letter:") + 1:
        return letter_mask(kind[-1], shapes.image_size, *p["centre"], p["half"])
    raise DatasetError(f"unknown concept kind {kind!r}: star, letter:<one character> or emoji:<held-out name>")


def held_out_emoji(name: str, image_size: int) -> torch.Tensor:
    """The emoji of the held-out (test) split whose caption is "a <name>" or "an <name>", (3, S, S) in [-1, 1]."""
    from data.emoji import Emoji

    test = Emoji(image_size, split="test")
    for i in range(len(test)):
        if test.caption(i) in (f"a {name}", f"an {name}", name):
            return test[i][0]
    raise DatasetError(f"no emoji of the held-out split is called {name!r} (e.g. "
                       f"{', '.join(test.caption(i) for i in range(3))})")


def render_emoji_concept(name: str, n: int, image_size: int, seed: int) -> tuple[torch.Tensor, list[str]]:
    """n views of a held-out emoji on white: scaled by 0.8-1.0 and shifted by up to 2 px (the first as it is)."""
    import torchvision.transforms.functional as TF

    base = held_out_emoji(name, image_size)
    rng = np.random.default_rng(seed)
    views = [base]
    for _ in range(n - 1):
        scale, (dx, dy) = float(rng.uniform(0.8, 1.0)), rng.integers(-2, 3, size=2).tolist()
        views.append(TF.affine(base, angle=0.0, translate=[dx, dy], scale=scale, shear=[0.0],
                               interpolation=TF.InterpolationMode.BILINEAR, fill=[1.0, 1.0, 1.0]))
    return torch.stack(views[:n]), [f"a {PLACEHOLDER}"] * n


def render_concept(kind: str, n: int, image_size: int = 32, seed: int = 0, sizes: tuple[str, ...] = ("large",)
                   ) -> tuple[torch.Tensor, list[str]]:
    """n images (n, 3, S, S) in [-1, 1] of the concept in procedural's colours, backgrounds and positions (drawn
    per index from ``seed``; sizes limited to ``sizes`` so small glyphs stay legible), and their captions; for
    ``emoji:<name>``, views of that held-out emoji."""
    if kind.startswith("emoji:"):
        return render_emoji_concept(kind.removeprefix("emoji:"), n, image_size, seed)
    shapes = ProceduralShapes(size=max(n, 1) * 50, image_size=image_size, seed=seed)
    images, captions, i = [], [], 0
    while len(images) < n:
        p = shapes.params(i)
        i += 1
        if p["size"] not in sizes:
            continue
        mask = concept_mask(kind, shapes, p)
        image = np.where(mask, shapes.colour_values[p["colour"]], shapes.background_values[p["background"]])
        images.append(torch.from_numpy(image.astype(np.float32)))
        captions.append(make_caption(PLACEHOLDER, p["colour"], p["background"], p["size"], p["position"]))
    return torch.stack(images), captions


def write_concept(folder: str | Path, kind: str, n: int, image_size: int = 32, seed: int = 0) -> Path:
    """Write n concept images and their metadata.jsonl into ``folder`` (created; must not hold images yet)."""
    images, captions = render_concept(kind, n, image_size, seed)  # a bad kind is refused before anything is made
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for k, (image, caption) in enumerate(zip(images, captions)):
        name = f"{k:03d}.png"
        pixels = ((image.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name)
        lines.append(json.dumps({"file_name": name, "text": caption}))
    (folder / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    return folder
