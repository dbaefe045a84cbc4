"""Deterministic conversions from PIL images and uint8 arrays to (C, H, W) float32 tensors in [-1, 1]."""

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from data import DatasetError


def check_channels(channels: int, dataset: str) -> None:
    """Raise DatasetError unless channels is 1 (grey) or 3 (RGB)."""
    if channels not in (1, 3):
        raise DatasetError(f"{dataset}: channels must be 1 or 3, got {channels}")


def check_split(split: str, dataset: str) -> None:
    """Raise DatasetError unless split is 'train' or 'val'."""
    if split not in ("train", "val"):
        raise DatasetError(f"{dataset}: split must be 'train' or 'val', got {split!r}")


def uint8_to_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 (H, W) or (H, W, C) array -> float32 (C, H, W) in [-1, 1]; 0 -> -1 and 255 -> 1 exactly."""
    # np.array copies: arrays from PIL and np.frombuffer are read-only, which torch.from_numpy warns about.
    x = torch.from_numpy(np.array(array, dtype=np.uint8)).to(torch.float32)
    x = x[None] if x.ndim == 2 else x.permute(2, 0, 1)
    return x / 127.5 - 1.0


def expand_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """Repeat a one-channel image (1, H, W) to `channels` channels; other inputs pass through."""
    return x.expand(channels, -1, -1).contiguous() if x.shape[0] == 1 and channels != 1 else x


def to_tensor_image(img: Image.Image, image_size: int, channels: int) -> torch.Tensor:
    """PIL image -> (channels, S, S) float32 in [-1, 1], S = image_size: shorter side resized, centre crop."""
    check_channels(channels, "image")
    if img.mode in ("I", "I;16", "I;16B", "I;16L"):
        # 16-bit greyscale PNGs: PIL's convert("L") would clip at 255 instead of rescaling.
        grey = np.asarray(img, dtype=np.float64) * (255.0 / 65535.0)
        img = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent pixels have arbitrary colour underneath; white is what viewers show.
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    img = img.convert("L" if channels == 1 else "RGB")
    width, height = img.size
    if min(width, height) != image_size:
        scale = image_size / min(width, height)
        size = (max(image_size, round(width * scale)), max(image_size, round(height * scale)))
        # reducing_gap=None: exact bicubic with a support widened by the scale factor (antialiased).
        img = img.resize(size, Image.Resampling.BICUBIC, reducing_gap=None)
    left, top = (img.width - image_size) // 2, (img.height - image_size) // 2
    img = img.crop((left, top, left + image_size, top + image_size))
    return uint8_to_tensor(np.asarray(img, dtype=np.uint8))


def pad_or_resize_grey(array: np.ndarray, image_size: int, channels: int) -> torch.Tensor:
    """28x28 uint8 grey (MNIST layout) -> (channels, S, S): padded with background -1 to 32, else resized."""
    x = uint8_to_tensor(array)
    if image_size == 32 and array.shape == (28, 28):
        # Padding keeps every original pixel; the U-Nets want sizes divisible by 8.
        x = F.pad(x, (2, 2, 2, 2), value=-1.0)
    elif array.shape != (image_size, image_size):
        x = to_tensor_image(Image.fromarray(array), image_size, 1)
    return expand_channels(x, channels)
