"""The studio's forms: what the page sends for each tab, checked and turned into sample.py's overrides.

A form is a flat JSON object: ``tab`` plus the fields below. Only the fields of the tab are read, each through
its own kind (an integer, a number, a choice, a text, a list, an image), so no text the user typed ever becomes
a key, an interpolation or a second override. The overrides are then composed and checked by the same code as
``python sample.py`` (sampling/cli.py), and they are also the command line written into the run's config.yaml.
"""

from __future__ import annotations

import base64
import io
import math
import re
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from diffusion.illusions import VIEWS
from sampling.checks import InputError

MAX_UPLOAD_BYTES = 8 * 1024 * 1024  # one image or mask, decoded
IMAGE_FILE, MASK_FILE = "input_image.png", "input_mask.png"  # the inputs' names in the run folder (and bundle)


@dataclass
class Form:
    """A checked form: the sample.py overrides (paths of uploads relative to the run folder), the uploads to
    write there, and how many sampling passes the run makes (for the progress bar)."""

    tab: str
    overrides: list[str]
    uploads: dict[str, Image.Image] = field(default_factory=dict)
    passes: int = 1


def hydra_text(value: str) -> str:
    """``value`` as a double-quoted Hydra string: quotes escaped, and backslashes before a quote or at the end
    doubled (Hydra's rule); interpolations (``${...}``) are refused, as they would read config or environment."""
    if "${" in value:
        raise InputError(f"{value[:40]!r}: text may not contain '${{' (a config interpolation)")
    value = re.sub(r'(\\+)(?="|$)', lambda m: m.group(1) * 2, value)
    return '"' + value.replace('"', '\\"') + '"'


def _integer(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not re.fullmatch(r"\s*-?\d+\s*", str(value)):
        raise InputError(f"{name} must be a whole number, got {value!r}")
    return int(value)


def _number(name: str, value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(x):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    return x


def _choice(name: str, value, choices) -> str:
    if value not in choices:
        raise InputError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _text(name: str, value, max_len: int = 500) -> str:
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, got {value!r}")
    if len(value) > max_len:
        raise InputError(f"{name} is longer than {max_len} characters")
    return value


def decode_image(name: str, value) -> Image.Image:
    """A ``data:image/...;base64,`` URL (what a canvas gives) as a PIL image, or InputError."""
    if not isinstance(value, str) or not value.startswith("data:image/") or ";base64," not in value:
        raise InputError(f"{name}: expected an image (a data:image/... URL)")
    payload = value.split(",", 1)[1]
    if len(payload) * 3 // 4 > MAX_UPLOAD_BYTES:
        raise InputError(f"{name}: larger than {MAX_UPLOAD_BYTES // 2**20} MiB")
    try:
        img = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
        if img.width * img.height > 4096 * 4096:
            raise InputError(f"{name}: {img.width}x{img.height} is larger than 4096x4096")
        img.load()
    except (ValueError, OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise InputError(f"{name}: not a readable image ({type(e).__name__})") from None
    return img


# The tabs and their fields. Every tab takes the run settings; a tab with a condition takes prompt (text models)
# or label (label models).
SETTINGS = ("seed", "guidance", "sampler", "steps", "negative_prompt")
TABS: dict[str, tuple[str, ...]] = {
    "generate": ("prompt", "label", "n"),
    "sdedit": ("prompt", "label", "image", "mask", "strength", "n"),
    "inpaint": ("prompt", "label", "image", "mask", "method", "resamples", "jump_length", "n"),
    "outpaint": ("prompt", "label", "image", "pad", "method", "resamples", "jump_length", "n"),
    "diffedit": ("image", "mask", "query", "reference", "source", "target", "encode_ratio", "mask_threshold"),
    "zoom": ("prompt", "label", "image", "frames", "direction", "scale", "method", "resamples", "jump_length"),
    "anagram": ("views", "labels", "prompts", "n"),
    "hybrid": ("kind", "sigma", "labels", "prompts", "n"),
}
# The DiffEdit tab's first step: only the mask (sampling.editing.diffedit_mask), shown for correction.
MASK_TAB = "diffedit_mask"
TABS[MASK_TAB] = ("image", "query", "reference", "source", "target", "mask_threshold")
INT_FIELDS = {"seed": "seed", "steps": "sampler.steps", "n": "n", "label": "label", "resamples": "task.resamples",
              "jump_length": "task.jump_length", "frames": "task.frames", "source": "task.source",
              "target": "task.target"}
FLOAT_FIELDS = {"guidance": "guidance", "strength": "task.strength", "encode_ratio": "task.encode_ratio",
                "mask_threshold": "task.mask_threshold", "scale": "task.scale", "sigma": "task.sigma"}
TEXT_FIELDS = {"prompt": "prompt", "negative_prompt": "negative_prompt", "query": "task.query",
               "reference": "task.reference"}
LISTS = {  # name: (what it must be, one item -> its override text, length or None)
    "pad": ("[left, top, right, bottom]", lambda v: str(_integer("pad", v)), 4),
    "views": ("a list of views", lambda v: _choice("view", v, VIEWS), None),
    "labels": ("a list of class labels", lambda v: str(_integer("label", v)), None),
    "prompts": ("a list of prompts", lambda v: hydra_text(_text("prompt", v)), None),
}
CHOICES = {"direction": ("in", "out"), "kind": ("low_high", "grey_colour"), "method": ("replacement", "repaint")}


def parse_form(form: dict, samplers: tuple[str, ...]) -> Form:
    """The page's ``form`` -> a checked Form (InputError naming the bad field). ``samplers``: the names this
    checkpoint can use (configs/sampler)."""
    if not isinstance(form, dict):
        raise InputError("expected a JSON object")
    tab = form.get("tab")
    if tab not in TABS:
        raise InputError(f"unknown tab {tab!r} (tabs: {', '.join(TABS)})")
    unknown = sorted(k for k in form if k != "tab" and k not in TABS[tab] + SETTINGS)
    if unknown:
        raise InputError(f"tab {tab} takes no {unknown[0]!r}")
    task = "diffedit" if tab == MASK_TAB else tab
    out = Form(tab, [f"task={task}"])
    given = {k: v for k, v in form.items() if k != "tab" and v is not None and v != ""}
    for key, value in given.items():
        if key in INT_FIELDS:
            out.overrides.append(f"{INT_FIELDS[key]}={_integer(key, value)}")
        elif key in FLOAT_FIELDS:
            out.overrides.append(f"{FLOAT_FIELDS[key]}={_number(key, value)!r}")
        elif key in TEXT_FIELDS:
            out.overrides.append(f"{TEXT_FIELDS[key]}={hydra_text(_text(key, value))}")
        elif key == "sampler":
            out.overrides.append(f"sampler={_choice(key, value, samplers)}")
        elif key in CHOICES and key != "method":
            out.overrides.append(f"task.{key}={_choice(key, value, CHOICES[key])}")
        elif key in ("image", "mask"):
            if key == "image" and isinstance(value, str) and re.fullmatch(r"procedural:\d{1,9}", value):
                out.overrides.append(f"image={value}")  # one of the page's sample pictures
                continue
            name = IMAGE_FILE if key == "image" else MASK_FILE
            out.uploads[name] = decode_image(key, value)
            out.overrides.append(f"{key}={name}")
        elif key in LISTS:
            what, item, length = LISTS[key]
            if not isinstance(value, list) or not value or (length and len(value) != length):
                raise InputError(f"{key} must be {what}, got {value!r}")
            out.overrides.append(f"task.{key}=[{','.join(item(v) for v in value)}]")
    method = given.get("method")
    if method is not None:
        _choice("method", method, CHOICES["method"])
        if method == "repaint":  # RePaint's resampling runs ancestral DDPM steps (sampling.editing.fill_sampler)
            if "resamples" not in given:
                out.overrides.append("task.resamples=5")
            if "sampler" in given and given["sampler"] != "ddpm":
                raise InputError("method repaint resamples with ancestral DDPM steps: choose sampler ddpm")
            if "sampler" not in given:
                out.overrides.append("sampler=ddpm")
        else:
            out.overrides = [o for o in out.overrides if not o.startswith(("task.resamples=", "task.jump_length="))]
            out.overrides.append("task.resamples=1")
    if tab in ("generate", "anagram", "hybrid") and "n" in given:
        out.overrides.append(f"batch_size={_integer('n', given['n'])}")  # one pass: one progress bar
    if tab == "zoom":
        frames = _integer("frames", given.get("frames", 8))
        out.passes = max(1, frames - 1 if "image" in given else frames)
    elif tab == "diffedit":
        out.passes = 2  # the encoding, then the decoding
    elif tab == MASK_TAB:
        out.passes = 0
    return out
