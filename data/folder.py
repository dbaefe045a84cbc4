"""Any folder of images, labelled by sub-folder when every image sits in one, captioned when captions are given."""

import json
import zlib
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from data import DatasetError
from data.transforms import check_channels, check_split, to_tensor_image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
METADATA = "metadata.jsonl"  # Hugging Face imagefolder: {"file_name": "cats/a.png", "text": "a cat"} per line
HOW_TO_CAPTION = (
    f"add a {METADATA} in the folder with one line per image, "
    '{"file_name": "<path relative to the folder>", "text": "<caption>"}, or a <name>.txt beside each image'
)


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


def read_metadata(path: Path) -> dict[str, str]:
    """Captions from a metadata.jsonl: relative posix path -> text; DatasetError naming the bad line."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from e
    captions: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{where} is not valid JSON ({e.msg}); write one JSON object per line") from e
        if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
            raise DatasetError(f'{where} needs a "file_name" string (the image path relative to the folder)')
        if not isinstance(entry.get("text"), str) or not entry["text"].strip():
            raise DatasetError(f'{where} needs a non-empty "text" string (the caption of {entry["file_name"]})')
        name = PurePosixPath(entry["file_name"]).as_posix()  # './a.png' and 'a.png' name one file
        if name in captions:
            raise DatasetError(f"{where} lists {name} a second time; keep one caption per image")
        captions[name] = entry["text"].strip()
    return captions


def read_caption_file(path: Path) -> str:
    """The caption in a <name>.txt: its first non-empty line (later lines, e.g. Tux Paint's translations, are
    ignored); DatasetError when it is empty or not UTF-8."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from e
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise DatasetError(f"caption file {path} is empty; write the image's caption in it or delete it")
    return lines[0]


def find_captions(root: Path, files: list[Path]) -> list[str] | None:
    """The caption of every file, from root/metadata.jsonl if it exists, else from a <name>.txt beside each
    image; None when there are none at all. DatasetError naming a file that lacks one while others have one."""
    relative = [p.relative_to(root).as_posix() for p in files]
    if (root / METADATA).is_file():
        table = read_metadata(root / METADATA)
        captions = [table.get(r) for r in relative]
        fix = f"add a line for it to {root / METADATA}"
    else:
        captions = [read_caption_file(p.with_suffix(".txt")) if p.with_suffix(".txt").is_file() else None
                    for p in files]
        if all(c is None for c in captions):
            return None
        fix = "add a <name>.txt with its caption beside it"
    missing = [files[k] for k, c in enumerate(captions) if c is None]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"image {missing[0]} has no caption{more} while others have one; {fix}")
    return captions


class ImageFolder(Dataset):
    """Images under root (png/jpg/jpeg/bmp/gif/webp, recursive), resized and centre-cropped to image_size.

    Labelled when every image lies in an immediate sub-folder (or deeper): classes = the sorted sub-folder
    names, label = index of the image's top-level sub-folder. Otherwise unlabelled: label 0 for every item
    and num_classes = classes = None (class-conditional training then needs num_classes set by hand).
    The val split holds round(val_fraction * n) images chosen by a hash of their relative path, so it is
    stable across runs and machines and barely moves when files are added.

    Captioned (for text models) by a ``metadata.jsonl`` in root, one ``{"file_name", "text"}`` object per line
    (Hugging Face imagefolder; entries for absent files are ignored), or else by a ``<name>.txt`` beside each
    image. Either every image has a caption or none has: a folder without any still serves label models, and
    only ``caption``/``captions`` raise, saying how to add them.
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
        # From all files, so that train and val agree on whether the folder is captioned.
        all_captions = find_captions(self.root, files)
        self._captions = None if all_captions is None else [all_captions[k] for k in keep]
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

    def _caption_list(self) -> list[str]:
        if self._captions is None:
            raise DatasetError(f"image folder {self.root} has no captions, which text models need; {HOW_TO_CAPTION}")
        return self._captions

    @property
    def captioned(self) -> bool:
        """Whether the folder gives captions (metadata.jsonl or .txt files)."""
        return self._captions is not None

    def caption(self, i: int) -> str:
        """The caption of image i, from metadata.jsonl or its .txt file."""
        return self._caption_list()[i]

    def captions(self) -> list[str]:
        """Every caption of this split, sorted and without repeats."""
        return sorted(set(self._caption_list()))
