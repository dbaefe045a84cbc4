"""Noto Color Emoji rendered with Pillow, captioned with their English names ('a red heart'); unlabelled.

The font comes from Debian's ``fonts-noto-color-emoji`` (``make data``), the names from the PyPI ``emoji``
package (``emoji.EMOJI_DATA``): fully qualified emoji without skin-tone variants that render as one glyph,
about 1,900. Rendered images are cached as uint8 under ``${DIFFLAB_CACHE:-~/.cache/difflab}/emoji/``.
"""

from __future__ import annotations

import itertools
import os
import re
import tempfile
import unicodedata
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import Dataset

from data import DatasetError, cache_root, with_article
from data.transforms import check_channels, check_split, uint8_to_tensor

FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
# The font's only bitmap strike: Pillow cannot scale CBDT colour bitmaps, so other sizes fail to load.
FONT_SIZE = 109
CANVAS = (136, 128)  # width, height of one glyph's advance box at FONT_SIZE
MAX_WIDTH = 140  # wider = a ZWJ sequence the font draws as several glyphs side by side
# Every glyph's ink lies in the central 128x128 square of the canvas (x 4..132): cropped to it, then resized.
SQUARE = ((CANVAS[0] - CANVAS[1]) // 2, 0, (CANVAS[0] + CANVAS[1]) // 2, CANVAS[1])
SKIN_TONES = range(0x1F3FB, 0x1F400)  # Fitzpatrick modifiers U+1F3FB..U+1F3FF
TEST_EVERY = 10  # crc32 of the emoji % TEST_EVERY == 0 -> test split: ~10 %
# Bump when the rendering changes, so that older cache files are not read.
RENDER_VERSION = 1

# ---------------------------------------------------------------- captions

# Last words of a name's head that are plural: those captions take no article ('sunglasses', not 'a sunglasses').
PLURAL_WORDS = frozenset(
    "arrows arts bags bars beads beans biceps busts blueberries books briefs bubbles cards chains cherries chopsticks "
    "clothes dividers dolls droplets ears eyes fingers fireworks flags footprints frames fries glasses gloves "
    "goggles grapes hands hearts houses jeans knobs letters lungs maracas mugs notes numbers pancakes "
    "paperclips peanuts points prints scissors shoes shorts skis socks sparkles springs sunglasses swords symbols "
    "tabs tickets".split()
)
PLURAL_FIRST_WORDS = frozenset({"men", "women", "people", "palms", "two"})
# The head of 'face with rolling eyes' is 'face': the plural test looks only before these words.
HEAD_ENDS = re.compile(r" (with|in|of|over|under|holding|and) ")
# First words whose article the spelling gets wrong ('an hourglass', 'a unicorn', 'an sos button').
AN_WORDS = frozenset({"hourglass", "sos", "ng", "x-ray", "honest"})
A_PREFIXES = ("uni", "euro", "ewe", "one", "ufo", "use")
# Members of family / kiss / couple sequences, and their plurals.
PEOPLE = {"man": "men", "woman": "women", "boy": "boys", "girl": "girls", "adult": "adults", "child": "children"}
NUMBERS = {2: "two", 3: "three", 4: "four"}
KEYCAP_SYMBOLS = {"#": "a number sign", "*": "an asterisk"}


def article(phrase: str) -> str:
    """'red heart' -> 'a red heart'; 'hourglass done' -> 'an hourglass done'; 'sunglasses' unchanged."""
    head = HEAD_ENDS.split(phrase, maxsplit=1)[0].split()
    if head[-1] in PLURAL_WORDS or head[0] in PLURAL_FIRST_WORDS:
        return phrase
    if head[0] in AN_WORDS:
        return f"an {phrase}"
    if head[0].startswith(A_PREFIXES):
        return f"a {phrase}"
    return with_article(phrase)


def list_people(words: list[str]) -> str:
    """['man', 'man', 'girl', 'boy'] -> 'two men, a girl and a boy' (runs of one word are counted)."""
    groups = []
    for word, run in itertools.groupby(words):
        n = len(list(run))
        groups.append(article(word) if n == 1 else f"{NUMBERS[n]} {PEOPLE[word]}")
    return groups[0] if len(groups) == 1 else ", ".join(groups[:-1]) + " and " + groups[-1]


def is_flag(char: str) -> bool:
    """A country or region flag: two regional indicators (U+1F1E6..U+1F1FF) or a black flag with tag letters."""
    return (len(char) == 2 and all(0x1F1E6 <= ord(c) <= 0x1F1FF for c in char)) or (
        char[:1] == "\U0001F3F4" and any(0xE0020 <= ord(c) <= 0xE007F for c in char)
    )


def plain(text: str) -> str:
    """Lower case ASCII words: underscores to spaces, accents dropped, curly quotes straight, '&' as 'and'."""
    text = text.strip(":").replace("_", " ").replace("’", "'").replace("&", "and")
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(text.lower().split())


def make_caption(name: str, char: str = "") -> str:
    """The caption of an emoji from its name: ':red_heart:' -> 'a red heart', ':Germany:' -> 'a flag of germany'.

    ``char`` (the emoji itself) tells flags apart, whose names are bare country names in emoji >= 2.0
    (older versions wrote ':flag_Germany:', also understood). Families, kisses and couples list their people
    ('a family of two men and a boy'), keycaps and clock faces say what they show.
    """
    name, flag = name.strip(":"), is_flag(char)
    if name.startswith("flag_") and name[5:6].isupper():  # emoji < 2.0
        name, flag = name[5:], True
    text = plain(name)
    words = text.split()
    if flag:
        return f"a flag of {text}"
    if words[0] == "keycap" and len(words) == 2:
        return f"a keycap showing {KEYCAP_SYMBOLS.get(words[1], words[1])}"
    if re.fullmatch(r"[a-z]+( o'clock|-thirty)", text):
        return f"a clock showing {text}"
    for prefix, joiner in (("family", " of "), ("kiss", " between "), ("couple with heart", ", ")):
        rest = text[len(prefix):].split()
        if text.startswith(prefix + " ") and rest and all(w in PEOPLE for w in rest):
            return article(prefix) + joiner + list_people(rest)
    return article(text)


# ---------------------------------------------------------------- rendering


def candidates() -> list[tuple[str, str]]:
    """(emoji, name) of every fully qualified emoji without a skin tone, in code point order."""
    import emoji

    qualified = emoji.STATUS["fully_qualified"]
    return sorted(
        (char, data["en"])
        for char, data in emoji.EMOJI_DATA.items()
        if data["status"] == qualified and not any(ord(c) in SKIN_TONES for c in char)
    )


def load_font(path: str) -> ImageFont.FreeTypeFont:
    """The colour emoji font at FONT_SIZE; DatasetError saying how to install it when missing or unreadable."""
    if not Path(path).is_file():
        raise DatasetError(
            f"emoji font {path} not found; run `make data` or `apt-get install -y fonts-noto-color-emoji`"
        )
    try:
        return ImageFont.truetype(path, FONT_SIZE)
    except OSError as e:
        raise DatasetError(f"emoji font {path} cannot be loaded at size {FONT_SIZE} ({e}); use NotoColorEmoji.ttf "
                           "from `apt-get install -y fonts-noto-color-emoji`") from e


def render_glyph(char: str, font: ImageFont.FreeTypeFont, image_size: int) -> np.ndarray | None:
    """One emoji on white as uint8 (S, S, 3), S = image_size; None when it is not drawn as one glyph."""
    draw = ImageDraw.Draw(Image.new("RGBA", CANVAS))
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font, embedded_color=True)
    if right - left > MAX_WIDTH or right <= left or bottom <= top:
        return None
    glyph = Image.new("RGBA", CANVAS, (0, 0, 0, 0))
    ImageDraw.Draw(glyph).text((0, 0), char, font=font, embedded_color=True)
    if glyph.getchannel("A").getbbox() is None:  # a glyph the font does not have draws nothing
        return None
    white = Image.new("RGBA", CANVAS, (255, 255, 255, 255))
    img = Image.alpha_composite(white, glyph).convert("RGB").crop(SQUARE)
    if image_size != img.width:
        # reducing_gap=None: exact bicubic with a support widened by the scale factor (antialiased), as in
        # data/transforms.to_tensor_image.
        img = img.resize((image_size, image_size), Image.Resampling.BICUBIC, reducing_gap=None)
    return np.asarray(img, dtype=np.uint8)


def render_all(font_path: str, image_size: int, limit: int | None = None) -> tuple[list[str], list[str], np.ndarray]:
    """(emoji, names, images uint8 (N, S, S, 3)) of every candidate that renders as one glyph (the first
    ``limit`` candidates only, when given)."""
    font = load_font(font_path)
    chars, names, images = [], [], []
    for char, name in candidates()[:limit]:
        image = render_glyph(char, font, image_size)
        if image is not None:
            chars.append(char)
            names.append(name)
            images.append(image)
    array = np.stack(images) if images else np.zeros((0, image_size, image_size, 3), np.uint8)
    return chars, names, array


def cache_path(font_path: str, image_size: int, limit: int | None) -> Path:
    """The cache file of one rendering: keyed by size, the font file's size and mtime and the emoji version."""
    import emoji

    stat = Path(font_path).stat()
    font_key = f"{zlib.crc32(str(Path(font_path).resolve()).encode()):08x}-{stat.st_size}-{stat.st_mtime_ns}"
    first = f"_first{limit}" if limit is not None else ""
    name = f"emoji_{image_size}px_font{font_key}_emoji{emoji.__version__}_v{RENDER_VERSION}{first}.npz"
    return cache_root() / "emoji" / name


def load_or_render(
    font_path: str, image_size: int, limit: int | None = None
) -> tuple[list[str], list[str], np.ndarray]:
    """render_all, read from the cache when it holds this rendering and written to it (atomically) otherwise."""
    load_font(font_path)  # the font must exist even on a cache hit: its size and mtime key the cache
    path = cache_path(font_path, image_size, limit)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                chars, names, images = f["chars"].tolist(), f["names"].tolist(), f["images"]
            if images.shape[1:] == (image_size, image_size, 3) and len(images) == len(chars) == len(names):
                return chars, names, images
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # a damaged cache file is rendered again and replaced
    chars, names, images = render_all(font_path, image_size, limit)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, chars=np.array(chars), names=np.array(names), images=images)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the cache is as readable as any other file
        os.replace(tmp, path)  # atomic: a reader sees the old file or the whole new one
    except OSError as e:
        warnings.warn(f"emoji: cannot write the render cache {path} ({e}); rendering again next time", stacklevel=2)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return chars, names, images


def in_test_split(char: str) -> bool:
    """The fixed split: a hash of the emoji's code points (stable across emoji-package renames) picks ~10 %."""
    return zlib.crc32(char.encode("utf-8")) % TEST_EVERY == 0


class Emoji(Dataset):
    """Noto Color Emoji on white, (channels, S, S) in [-1, 1]; caption = the cleaned English name; label -1.

    ``split``: 'train' (~90 %) or 'val'/'test' (the same ~10 %, fixed by a hash of each emoji). ``limit`` keeps
    only the first ``limit`` candidate emoji before filtering and splitting (for tests). ``names`` are the
    ``emoji`` package names (':red_heart:') and ``chars`` the emoji themselves, per item.
    """

    classes = None
    num_classes = None

    def __init__(self, image_size: int = 32, channels: int = 3, split: str = "train", font: str = FONT,
                 limit: int | None = None) -> None:
        check_channels(channels, "emoji")
        check_split("val" if split == "test" else split, "emoji")
        if image_size < 8:
            raise DatasetError(f"emoji: image_size must be >= 8, got {image_size}")
        self.image_size, self.channels, self.split = image_size, channels, split
        chars, names, images = load_or_render(font, image_size, limit)
        keep = [k for k, c in enumerate(chars) if in_test_split(c) == (split != "train")]
        if not keep:
            raise DatasetError(f"emoji: the {split} split is empty (limit={limit}); raise limit or leave it unset")
        self.chars = [chars[k] for k in keep]
        self.names = [names[k] for k in keep]
        self._captions = [make_caption(n, c) for n, c in zip(self.names, self.chars)]
        images = images[keep]
        if channels == 1:  # PIL's convert('L') on all images at once, the grey of every other dataset
            n, s = images.shape[:2]
            images = np.asarray(Image.fromarray(images.reshape(n * s, s, 3)).convert("L")).reshape(n, s, s)
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return uint8_to_tensor(self.images[i]), -1

    def caption(self, i: int) -> str:
        """The cleaned English name of emoji i, with an article: 'a grinning face with big eyes'."""
        return self._captions[i]

    def captions(self) -> list[str]:
        """Every caption of this split, sorted and without repeats."""
        return sorted(set(self._captions))
