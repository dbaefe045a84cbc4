"""The input pictures of the README's editing examples, written to docs/inputs/ (re-run to rebuild them).

    .venv/bin/python docs/make_inputs.py

Fashion-MNIST test images (the t10k split, padded to 32x32 as the model sees them), a coarse stroke painting,
a collage with its patch mask, and an inpainting mask. Needs the Debian Fashion-MNIST package (`make data`).
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from data.fashion_mnist import FashionMNIST

OUT = Path(__file__).resolve().parent / "inputs"
PICKS = {"tshirt": 0, "trouser": 1, "pullover": 2, "sneaker": 7, "bag": 8, "boot": 9}  # name: class


def to_image(x) -> Image.Image:
    """A (1, H, W) tensor in [-1, 1] as an 8-bit grey image."""
    return Image.fromarray(((x[0].numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8), "L")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    test = FashionMNIST(split="val")
    first = {c: int(np.flatnonzero(test.labels == c)[0]) for c in PICKS.values()}
    images = {}
    for name, c in PICKS.items():
        images[name] = to_image(test[first[c]][0])
        images[name].save(OUT / f"{name}.png")
    # a coarse stroke painting of trousers: two grey legs under a waistband, flat colours, no texture
    stroke = Image.new("L", (32, 32), 0)
    draw = ImageDraw.Draw(stroke)
    draw.rectangle([10, 4, 21, 8], fill=150)
    draw.polygon([(10, 8), (15, 8), (14, 28), (10, 28)], fill=150)
    draw.polygon([(16, 8), (21, 8), (21, 28), (17, 28)], fill=150)
    stroke.save(OUT / "stroke_trouser.png")
    # a collage: the bag with the pullover's printed logo pasted on its front, and the patch's mask
    collage = images["bag"].copy()
    collage.paste(images["pullover"].crop((9, 5, 23, 13)), (9, 14))
    collage.save(OUT / "collage.png")
    patch = Image.new("L", (32, 32), 0)
    ImageDraw.Draw(patch).rectangle([9, 14, 22, 21], fill=255)
    patch.save(OUT / "collage_mask.png")
    # inpainting: fill the right half
    half = Image.new("L", (32, 32), 0)
    ImageDraw.Draw(half).rectangle([16, 0, 31, 31], fill=255)
    half.save(OUT / "right_half_mask.png")
    print(f"wrote {len(list(OUT.glob('*.png')))} pictures to {OUT}")


if __name__ == "__main__":
    main()
