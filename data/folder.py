"""Any folder of images, labelled by sub-folder when every image sits in one."""

import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from data import DatasetError
from data.transforms import check_channels, check_split, to_tensor_image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def find_images(root: Path) -> list[Path]:
    """Image files under root, recursively, sorted; hidden paths (e.g. macOS '._x.png') skipped."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


def open_image(path: Path) -> Image.Image:
    """Open and decode an image file, upright per its EXIF orientation; DatasetError if that fails."""
    try:
        with Image.open(path) as img:
            img.load()
            return ImageOps.exif_transpose(img)
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... depending on the codec
        raise DatasetError(f"unreadable image {path} ({e}); fix or remove it") from e


class ImageFolder(Dataset):
    """Images under root (png/jpg/jpeg/bmp/gif/webp, recursive), resized and centre-cropped to image_size.

    Labelled when every image lies in an immediate sub-folder (or deeper): classes = the sorted sub-folder
    names, label = index of the image's top-level sub-folder. Otherwise unlabelled: label 0 for every item
    and num_classes = classes = None (class-conditional training then needs num_classes set by hand).
    The val split holds round(val_fraction * n) images chosen by a hash of their relative path, so it is
    stable across runs and machines and barely moves when files are added.
    """

    def __init__(
        self,
        root: str,
        image_size: int = 32,
        channels: int = 3,
        split: str = "train",
        val_fraction: float = 0.0,
    ) -> None:
        check_channels(channels, "folder")
        check_split(split, "folder")
        if not 0.0 <= val_fraction < 1.0:
            raise DatasetError(f"image folder {root}: val_fraction must be in [0, 1), got {val_fraction}")
        self.root, self.image_size, self.channels = Path(root).expanduser(), image_size, channels
        if not self.root.is_dir():
            raise DatasetError(
                f"image folder {self.root} does not exist; set data.train.root=/path/to/images"
            )
        files = find_images(self.root)
        if not files:
            raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found under {self.root}")
        relative = [p.relative_to(self.root) for p in files]

        # Classes come from all files, before splitting, so train and val share one label mapping.
        if all(len(r.parts) >= 2 for r in relative):
            self.classes: tuple[str, ...] | None = tuple(sorted({r.parts[0] for r in relative}))
            self.num_classes: int | None = len(self.classes)
            labels = [self.classes.index(r.parts[0]) for r in relative]
        else:
            self.classes, self.num_classes = None, None
            labels = [0] * len(files)

        n_val = max(1, round(val_fraction * len(files))) if val_fraction > 0 else 0
        order = sorted(range(len(files)), key=lambda k: (zlib.crc32(relative[k].as_posix().encode()), k))
        in_val = np.zeros(len(files), dtype=bool)
        in_val[order[:n_val]] = True
        keep = np.flatnonzero(in_val if split == "val" else ~in_val)
        if len(keep) == 0:
            hint = "raise val_fraction" if split == "val" else "lower val_fraction or add images"
            raise DatasetError(f"image folder {self.root}: the {split} split is empty; {hint}")
        self.files = [files[k] for k in keep]
        self.labels = [labels[k] for k in keep]
        for path in self.files:
            self._verify(path)

    @staticmethod
    def _verify(path: Path) -> None:
        try:
            with Image.open(path) as img:
                img.verify()
        except Exception as e:  # see open_image
            raise DatasetError(f"unreadable image {path} ({e}); fix or remove it") from e

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return to_tensor_image(open_image(self.files[i]), self.image_size, self.channels), self.labels[i]
