"""Inputs and outputs of sampling tasks: images, masks, labels, strips and the final write."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageDraw, UnidentifiedImageError

from data.procedural import ProceduralShapes
from data.transforms import to_tensor_image
from sampling.checkpoint import LoadedModel
from sampling.checks import InputError, check_number  # InputError: re-exported, tasks raise it
from sampling.generate import save_grid


# Inputs are resized to the model's (small) resolution, so a larger file is a mistake or a decompression
# bomb: refused from its header, before a pixel is decoded (PIL's own limit, ~89M pixels, is far above).
MAX_INPUT_SIDE = 4096
MAX_INPUT_PIXELS = MAX_INPUT_SIDE * MAX_INPUT_SIDE


def to_pil(x: torch.Tensor) -> Image.Image:
    """(C, H, W) in [-1, 1] -> PIL image."""
    return TF.to_pil_image(((x.float().clamp(-1, 1) + 1) / 2).cpu())


def _procedural_item(spec: str, model: LoadedModel) -> dict:
    """Item i of the procedural dataset at the model's size: spec 'procedural:<i>[:<seed>]'."""
    parts = spec.split(":")
    try:
        index, seed = int(parts[1]), int(parts[2]) if len(parts) > 2 else 0
    except (IndexError, ValueError) as e:
        raise InputError(f"{spec}: expected procedural:<index>[:<seed>]") from e
    check_number(f"the index of {spec}", index, 0, 2**31 - 1, integer=True)
    check_number(f"the seed of {spec}", seed, 0, 2**32 - 1, integer=True)
    c, s, _ = model.image_shape
    return ProceduralShapes(size=index + 1, image_size=s, seed=seed, channels=c).sample(index)


def _open_image(p: Path, what: str) -> Image.Image:
    """``p`` opened from its header only (no pixel decoded yet), or InputError: missing, unreadable, too big."""
    if not p.is_file():
        raise InputError(f"{p}: no such {what} file")
    too_big = f"{p}: the {what} is larger than the limit of {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE} pixels"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, by a smaller limit
            img = Image.open(p)
    except Image.DecompressionBombError as e:
        raise InputError(f"{too_big} (refused before decoding)") from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InputError(f"{p}: not a readable {what} ({type(e).__name__})") from e
    if img.width * img.height > MAX_INPUT_PIXELS:
        img.close()
        raise InputError(f"{too_big}: it is {img.width}x{img.height} (refused before decoding)")
    return img


def load_input_image(spec: str | None, model: LoadedModel) -> tuple[torch.Tensor, str, tuple[int, int] | None]:
    """The image ``spec`` (a file, or procedural:<i>) as (C, H, W) in [-1, 1] at the model's channels and size,
    a line saying what conversion was made, and the file's (width, height) (None for procedural)."""
    if spec is None:
        raise InputError("this task needs an input image: add image=<file> (or image=procedural:<index>)")
    c, h, _ = model.image_shape
    if str(spec).startswith("procedural:"):
        item = _procedural_item(str(spec), model)
        return item["image"], f"input {spec}: {item['caption']} (label {item['label']})", None
    p = Path(spec)
    try:
        with _open_image(p, "image") as img:
            img.load()
            before, size = f"{img.width}x{img.height} {img.mode}", (img.width, img.height)
            x = to_tensor_image(img, h, c)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{p}: not a readable image ({type(e).__name__})") from e
    after = f"{h}x{h} {'grey' if c == 1 else 'RGB'}"
    return x, f"input {p.name}: {before} -> {after} (shorter side resized, centre-cropped, scaled to [-1, 1])", size


def load_mask(spec: str | None, model: LoadedModel, image_size: tuple[int, int] | None) -> torch.Tensor:
    """Edit mask (1, H, W) in {0, 1} (1 = edit) from an image file (white = edit; the input image's size,
    converted like it) or procedural:<i> (the shape's exact mask). ``image_size``: the input file's (w, h)."""
    if spec is None:
        raise InputError("this task needs a mask: add mask=<file> (white = edit) or mask=procedural:<index>")
    _, h, _ = model.image_shape
    if str(spec).startswith("procedural:"):
        mask = _procedural_item(str(spec), model)["mask"].float()
    else:
        p = Path(spec)
        try:
            with _open_image(p, "mask") as img:
                img.load()
                expected = image_size or (h, h)
                if (img.width, img.height) != expected:
                    raise InputError(f"{p}: mask is {img.width}x{img.height}, the image is {expected[0]}x{expected[1]}")
                mask = (to_tensor_image(img, h, 1) > 0).float()
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
            raise InputError(f"{p}: not a readable mask image ({type(e).__name__})") from e
    if mask.sum() == 0:
        raise InputError(f"{spec}: the mask is empty (no white pixels): nothing to edit")
    return mask


def parse_label(value, model: LoadedModel, name: str = "label") -> int:
    """A class label of this checkpoint, or InputError."""
    k = model.num_classes
    if k is None:
        raise InputError(f"this checkpoint is unconditional: {name} needs a class-conditional model")
    if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value < k):
        raise InputError(f"{name} must be an integer in [0, {k - 1}] for this checkpoint, got {value!r}")
    return value


def labelled_strip(images: list[torch.Tensor], captions: list[str], scale: int = 4) -> Image.Image:
    """Images side by side, upscaled ``scale`` x, with a caption above each."""
    tiles = [to_pil(x).convert("RGB").resize((x.shape[-1] * scale, x.shape[-2] * scale), Image.NEAREST) for x in images]
    w, h, pad, top = tiles[0].width, tiles[0].height, 4, 14
    strip = Image.new("RGB", (len(tiles) * (w + pad) + pad, h + top + pad), "white")
    draw = ImageDraw.Draw(strip)
    for i, (tile, caption) in enumerate(zip(tiles, captions)):
        x0 = pad + i * (w + pad)
        strip.paste(tile, (x0, top))
        draw.text((x0, 1), caption[: max(4, w // 6)], fill="black")
    return strip


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [-1, 1] (peak-to-peak range 2)."""
    mse = (x.clamp(-1, 1) - ref).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


def write_outputs(outputs: dict, out: Path) -> None:
    """Write every output at once, at the end, so a failure leaves nothing half-written.

    Values: a tensor batch (grid PNG), a PIL image, a list of PIL images (GIF), a dict (JSON),
    a tensor under a '.pt' name (saved with torch.save), a numpy array (PNG of a mask).
    """
    out.mkdir(parents=True, exist_ok=True)
    for name, obj in outputs.items():
        if name.endswith(".json"):
            (out / name).write_text(json.dumps(obj, indent=2))
        elif isinstance(obj, str):
            (out / name).write_text(obj)
        elif name.endswith(".pt"):
            torch.save(obj, out / name)
        elif isinstance(obj, list):
            obj[0].save(out / name, save_all=True, append_images=obj[1:], duration=150, loop=0)
        elif isinstance(obj, torch.Tensor):
            save_grid(obj, out / name, nrow=max(1, int(math.ceil(math.sqrt(len(obj))))))
        elif isinstance(obj, np.ndarray):
            Image.fromarray(obj).save(out / name)
        else:
            obj.save(out / name)
