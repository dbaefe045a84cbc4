"""Inputs and outputs of sampling tasks: images, masks, labels, strips and the final write."""

from __future__ import annotations

import datetime
import io
import json
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError

from data.procedural import ProceduralShapes
from data.transforms import to_tensor_image
from sampling.atomic import OutputError, describe_os_error, publish_dir, staging_dir
from sampling.checkpoint import LoadedModel
from sampling.checks import InputError, check_number  # InputError, OutputError: re-exported, tasks raise them
from sampling.generate import save_grid

# Inputs are resized to the model's (small) resolution, so a larger file is a mistake or a decompression
# bomb: refused from its header, before a pixel is decoded (PIL's own limit, ~89M pixels, is far above).
MAX_INPUT_SIDE = 4096
MAX_INPUT_PIXELS = MAX_INPUT_SIDE * MAX_INPUT_SIDE


def to_pil(x: torch.Tensor) -> Image.Image:
    """(C, H, W) in [-1, 1] -> PIL image, 8 bits rounded to nearest: floor((x + 1) * 127.5 + 0.5), as
    torchvision's save_image rounds the grid (to_pil_image truncates: one level darker on many values)."""
    levels = ((x.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).floor().clamp(0, 255).to(torch.uint8).cpu()
    array = levels.permute(1, 2, 0).numpy()  # (H, W, C)
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


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
    if getattr(model, "encoder", None) is not None:
        raise InputError(f"{name}={value!r}: this checkpoint is text-conditioned; it takes a prompt, not a class label")
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


def captioned_rows(rows: list[torch.Tensor], captions: list[str], scale: int = 2) -> Image.Image:
    """One row of images per caption, the caption written above its row: rows[i] is (k, C, H, W) in [-1, 1]."""
    pad, top = 4, 14
    tiles = [[to_pil(x).convert("RGB").resize((x.shape[-1] * scale, x.shape[-2] * scale), Image.NEAREST)
              for x in row] for row in rows]
    w, h = tiles[0][0].size
    k = max(len(r) for r in tiles)
    grid = Image.new("RGB", (k * (w + pad) + pad, len(tiles) * (h + top + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for i, (row, caption) in enumerate(zip(tiles, captions)):
        y = pad + i * (h + top + pad)
        draw.text((pad, y), caption[: max(8, grid.width // 6)], fill="black")
        for j, tile in enumerate(row):
            grid.paste(tile, (pad + j * (w + pad), y + top))
    return grid


def read_prompts(path) -> list[str]:
    """The prompts of a text file, one per non-blank line (UTF-8), or InputError."""
    p = Path(str(path)).expanduser()
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError(f"prompts file {p} does not exist") from None
    except OSError as e:
        raise InputError(f"prompts file {p} is unreadable ({e.strerror or type(e).__name__})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"prompts file {p} is not UTF-8 text (byte {e.start})") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise InputError(f"prompts file {p} holds no prompts (one per line)")
    return prompts


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [-1, 1] (peak-to-peak range 2)."""
    mse = (x.clamp(-1, 1) - ref).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(4.0 / mse)


def default_out_dir() -> Path:
    """runs/sample/<date>/<H-M-S>: the base name of an output folder when out= is not given."""
    return Path("runs/sample") / datetime.datetime.now().strftime("%Y-%m-%d/%H-%M-%S")


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an ``out`` that is a file, or a non-empty folder unless ``overwrite`` (which
    replaces only an earlier sample.py output: a folder with its config.yaml, never an arbitrary one)."""
    if out.exists() and not out.is_dir():
        raise InputError(f"out={out} is a file: out= must be a folder (new or empty)")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InputError(f"out={out} is not empty: choose a new folder, or add overwrite=true to replace it")
        if not (out / "config.yaml").is_file():
            raise InputError(f"out={out} is not an earlier sample.py output (no config.yaml): overwrite=true "
                             "replaces only those")


def _write_one(name: str, obj, path: Path) -> None:
    """One output file (see write_outputs for the kinds)."""
    if name.endswith(".json"):
        path.write_text(json.dumps(obj, indent=2))
    elif isinstance(obj, str):
        path.write_text(obj)
    elif name.endswith(".pt"):
        buffer = io.BytesIO()  # torch.save reports a full disk as RuntimeError; a plain write gives OSError
        torch.save(obj, buffer)
        path.write_bytes(buffer.getvalue())
    elif isinstance(obj, list):
        obj[0].save(path, save_all=True, append_images=obj[1:], duration=150, loop=0)
    elif isinstance(obj, torch.Tensor):
        save_grid(obj, path, nrow=max(1, int(math.ceil(math.sqrt(len(obj))))))
    elif isinstance(obj, np.ndarray):
        Image.fromarray(obj).save(path)
    else:
        obj.save(path)


def _reserve(base: Path) -> Path:
    """base, or base_1, base_2, ...: the first free name, created empty. mkdir is atomic, so two runs that
    start in the same second get different folders."""
    for k in range(10_000):
        candidate = base if k == 0 else base.with_name(f"{base.name}_{k}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as e:
            raise OutputError(describe_os_error(e, candidate)) from e
    raise OutputError(f"{base}: 10,000 output folders of this name already exist")


def _replace_dir(staging: Path, out: Path) -> None:
    """Publish ``staging`` over the existing folder ``out``: the old one is moved aside and deleted only once
    the new one is in place (a kill in between leaves both complete, the old one as a .<name>.old.* folder)."""
    old = None
    try:
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.rename(out, old)  # onto the empty temp folder: atomic
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and old.is_dir() and not any(old.iterdir()):
            old.rmdir()
        raise OutputError(describe_os_error(e, out)) from e
    try:
        publish_dir(staging, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def write_outputs(outputs: dict, out: Path, *, overwrite: bool = False, unique: bool = False) -> Path:
    """Write every output into a temp folder beside ``out``, then rename it into place in one step: ``out``
    appears complete or not at all, and a non-empty ``out`` is refused (replaced with ``overwrite``).
    ``unique``: ``out`` is a default name; add _1, _2, ... if taken. Returns the folder written.

    Values: a tensor batch (grid PNG), a PIL image, a list of PIL images (GIF), a dict (JSON),
    a tensor under a '.pt' name (saved with torch.save), a numpy array (PNG of a mask).
    """
    staging = staging_dir(out)
    try:
        for name, obj in outputs.items():
            _write_one(name, obj, staging / name)
        if unique:
            out = _reserve(out)
    except BaseException as e:
        # described before the cleanup, so that the free space reported is what the write ran into
        message = describe_os_error(e, out) if isinstance(e, OSError) else None
        shutil.rmtree(staging, ignore_errors=True)
        if message:
            raise OutputError(message) from e
        raise
    try:
        if overwrite and out.is_dir() and any(out.iterdir()):
            _replace_dir(staging, out)
        else:
            publish_dir(staging, out)
    except BaseException:
        if unique and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # give the reserved, still empty, name back
        raise
    return out
