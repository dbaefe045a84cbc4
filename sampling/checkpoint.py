"""Load a trained network from a Lightning checkpoint or an exported .safetensors + .yaml pair, safely.

A checkpoint is data, never code. Its weights are read with ``torch.load(weights_only=True)`` (or
safetensors), so no pickle payload runs. Its stored config names the network and the schedule by
``_target_``, and that config was written by whoever made the file, not by the user: so nothing in it is
passed to Hydra's ``instantiate``. Only the constructors in ``MODELS`` and ``SCHEDULES`` may be named,
their arguments must be plain numbers, strings, booleans or lists of them, and the network is first built
on the meta device and checked against the stored weights' shapes before any memory is allocated.
Non-finite weights are refused too: they would sample black images with exit status 0.
"""

from __future__ import annotations

import inspect
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import yaml
from torch import nn

from diffusion.parametrization import PREDICTIONS, Parametrization, make_parametrization
from diffusion.schedules import (
    Schedule,
    cosine_schedule,
    flow_schedule,
    linear_schedule,
    shifted_cosine_schedule,
    sigmoid_schedule,
)
from models.dit import DiT
from models.experts import ExpertEnsemble
from models.text import EncoderError, TextEncoder, encoder_for
from models.unet import SuperResUNet, UNet
from models.uvit import UViT

# The only callables a checkpoint's config may name. A new backbone or schedule is added here.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "models.unet.UNet": UNet, "models.unet.SuperResUNet": SuperResUNet, "models.dit.DiT": DiT,
    "models.uvit.UViT": UViT,
}
# eDiff-I's ensemble: its config names one backbone of MODELS (``expert``) and the boundaries between the experts'
# intervals of timesteps; every expert is that backbone
ENSEMBLE = "models.experts.ExpertEnsemble"
MAX_EXPERTS = 16
SCHEDULES: dict[str, Callable[..., Schedule]] = {
    "diffusion.schedules.linear_schedule": linear_schedule,
    "diffusion.schedules.cosine_schedule": cosine_schedule,
    "diffusion.schedules.sigmoid_schedule": sigmoid_schedule,
    "diffusion.schedules.flow_schedule": flow_schedule,
    "diffusion.schedules.shifted_cosine_schedule": shifted_cosine_schedule,
}


class CheckpointError(Exception):
    """A checkpoint that is missing, truncated, foreign, unsafe or non-finite; one line naming the file."""


@dataclass
class LoadedModel:
    """A network ready to sample from, with what is needed to interpret its output."""

    net: nn.Module
    schedule: Schedule
    parametrization: Parametrization  # what the network's output means (eps, x0 or v)
    num_classes: int | None
    image_shape: tuple[int, int, int]  # (C, H, W)
    config: dict
    encoder: TextEncoder | None = None  # a text model's frozen text encoder (the one its checkpoint records)

    @property
    def low_res(self) -> int | None:
        """The resolution a super-resolution stage upscales from; None for a base model."""
        return getattr(self.net, "low_res", None)

    @property
    def cond_kind(self) -> str | None:
        """'text', 'label' or None (unconditional)."""
        return "text" if self.encoder is not None else "label" if self.num_classes is not None else None


def non_finite_entry(state_dict: dict[str, torch.Tensor]) -> str | None:
    """The name of the first floating-point tensor holding NaN or Inf, or None when all are finite."""
    for key, value in state_dict.items():
        if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            return key
    return None


def read_checkpoint(path: Path) -> tuple[dict, dict]:
    """(state_dict, stored config) of a training checkpoint, read without running any pickled code."""
    try:
        # weights_only: a pickle that would run code is refused instead of executed
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's own message suggests retrying with weights_only=False: exactly what must not be done here
        raise CheckpointError(f"{path}: refused to load: not plain weights (it pickles objects other than tensors, "
                              "which could run code, or it is not a checkpoint at all)") from e
    except Exception as e:  # truncated zip, text, random bytes, a folder: all "not a checkpoint", in one line
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or foreign file)") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path}: not a difflab checkpoint (no state_dict)")
    difflab = ckpt.get("difflab")
    if not isinstance(difflab, dict) or not isinstance(difflab.get("config"), dict):
        raise CheckpointError(f"{path}: not a difflab checkpoint (no stored difflab config)")
    return ckpt["state_dict"], difflab["config"]


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors.torch import load_file

    config_path = path.with_suffix(".yaml")
    if not config_path.is_file():
        raise CheckpointError(f"{path}: its config {config_path.name} is missing beside it")
    try:
        weights = load_file(str(path))
    except Exception as e:  # SafetensorError, OSError, ValueError, ...: one line
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or foreign)") from e
    try:
        config = yaml.safe_load(config_path.read_text())  # safe_load: YAML tags never build Python objects
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        raise CheckpointError(f"{config_path}: not a readable YAML config") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path}: not a difflab config (expected a mapping)")
    return {f"ema.{k}": v for k, v in weights.items()}, config


def _plain(value: Any) -> bool:
    """True for the values a constructor argument may take: numbers, strings, booleans, None, lists of them."""
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return False


def _constructor(node: Any, allowed: dict[str, Callable], what: str, path: Path) -> tuple[Callable, dict]:
    """The allowed constructor that ``node`` names and its keyword arguments, or CheckpointError.

    Checked before anything is called: the ``_target_`` is in ``allowed``, no other Hydra key (``_args_``,
    ``_partial_``, ``_recursive_``, ...) is present, every argument is plain data (so no nested
    ``_target_`` can hide in it) and is a parameter of that constructor.
    """
    if not isinstance(node, dict):
        raise CheckpointError(f"{path}: the stored {what} config is not a mapping")
    target = node.get("_target_")
    if target not in allowed:
        raise CheckpointError(
            f"{path}: refused: the stored {what} config names {str(target)[:100]!r}, "
            f"which is not one of difflab's own ({', '.join(allowed)})"
        )
    fn = allowed[target]
    params = inspect.signature(fn).parameters
    kwargs = {}
    for key, value in node.items():
        if key == "_target_":
            continue
        if key.startswith("_") or key not in params:
            raise CheckpointError(f"{path}: refused: the stored {what} config has a key {key[:50]!r} that {target} "
                                  "does not take")
        if not _plain(value):
            raise CheckpointError(f"{path}: refused: the stored {what} config's {key!r} is not a plain value")
        kwargs[key] = value
    return fn, kwargs


def _model_constructor(node: Any, path: Path) -> tuple[Callable, dict, dict]:
    """(constructor, its keyword arguments, the backbone's keyword arguments) of the stored model config: one
    backbone of MODELS, or an expert ensemble whose ``expert`` node is checked the same way."""
    if not (isinstance(node, dict) and node.get("_target_") == ENSEMBLE):
        fn, kwargs = _constructor(node, MODELS, "model", path)
        return fn, kwargs, kwargs
    extra = sorted(set(node) - {"_target_", "expert", "boundaries", "num_timesteps"})
    if extra:
        raise CheckpointError(f"{path}: refused: the stored model config has a key {extra[0][:50]!r} that "
                              f"{ENSEMBLE} does not take")
    expert_fn, expert_kwargs = _constructor(node.get("expert"), MODELS, "model.expert", path)
    boundaries, num_timesteps = node.get("boundaries"), node.get("num_timesteps", 1000)
    if not (isinstance(boundaries, list) and _plain(boundaries) and 0 < len(boundaries) < MAX_EXPERTS
            and _plain(num_timesteps)):
        raise CheckpointError(f"{path}: refused: the stored model.boundaries must be a list of 1 to "
                              f"{MAX_EXPERTS - 1} timesteps")

    def build() -> ExpertEnsemble:
        experts = [expert_fn(**expert_kwargs) for _ in range(len(boundaries) + 1)]
        return ExpertEnsemble(experts, boundaries, num_timesteps)

    return build, {}, expert_kwargs


def _build_net(fn: Callable, kwargs: dict, net_state: dict, path: Path) -> nn.Module:
    """The network, built first on the meta device and compared with the weights' names and shapes, so a
    config that asks for huge layers fails on the comparison instead of allocating them."""
    try:
        with torch.device("meta"):
            skeleton = fn(**kwargs)
    except Exception as e:  # the constructor's own argument checks
        raise CheckpointError(f"{path}: the stored model config is invalid ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:150] if str(e) else ''})") from e
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in net_state.items()}
    if expected != stored:
        missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
        wrong = sorted(k for k in set(expected) & set(stored) if expected[k] != stored[k])
        detail = (f"missing {missing[:2]}" if missing else f"unexpected {extra[:2]}" if extra
                  else f"shape of {wrong[:2]}")
        raise CheckpointError(f"{path}: weights do not fit the stored model config ({detail})")
    net = fn(**kwargs)
    net.load_state_dict(net_state)
    return net


def _positive_int(config: dict, keys: tuple[str, ...], path: Path) -> int:
    node: Any = config
    for k in keys:
        node = node.get(k) if isinstance(node, dict) else None
    if isinstance(node, bool) or not isinstance(node, int) or node < 1:
        raise CheckpointError(f"{path}: the stored config's {'.'.join(keys)} must be a positive integer, got {node!r}")
    return node


def load_model(path: str | Path, weights: str = "ema") -> LoadedModel:
    """Rebuild the network from the config stored with it (checked as the module docstring says) and load its
    ``weights`` ("ema" or "raw")."""
    path = Path(path)
    if weights not in ("ema", "raw"):
        raise CheckpointError(f"weights must be 'ema' or 'raw', got {weights!r}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    state, config = _read_safetensors(path) if path.suffix == ".safetensors" else read_checkpoint(path)
    prefix = f"{'ema' if weights == 'ema' else 'net'}."
    net_state = {k[len(prefix):]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}
    if not net_state:
        raise CheckpointError(f"{path}: holds no '{weights}' weights")
    if not all(isinstance(v, torch.Tensor) for v in net_state.values()):
        raise CheckpointError(f"{path}: its '{weights}' weights are not all tensors")
    bad = non_finite_entry(net_state)
    if bad is not None:
        raise CheckpointError(f"{path}: refused: its '{weights}' weights hold NaN or inf (first: {bad}); the run "
                              "diverged before this was saved")
    model_fn, net_kwargs, model_kwargs = _model_constructor(config.get("model"), path)
    diffusion = config.get("diffusion") if isinstance(config.get("diffusion"), dict) else {}
    schedule_fn, schedule_kwargs = _constructor(diffusion.get("schedule"), SCHEDULES, "diffusion.schedule", path)
    prediction = diffusion.get("prediction")
    if prediction not in PREDICTIONS:
        raise CheckpointError(f"{path}: the stored diffusion.prediction must be one of {PREDICTIONS}, "
                              f"got {str(prediction)[:50]!r}")
    cond = model_kwargs.get("cond", "label")  # checkpoints from before text conditioning have no cond
    encoder = None
    if cond == "text":
        try:
            encoder = encoder_for(config.get("text"), f"checkpoint {path}")
        except EncoderError as e:
            raise CheckpointError(str(e)) from None
        if model_kwargs.get("text_dim", 384) != encoder.dim:
            raise CheckpointError(f"{path}: its model.text_dim does not match its text encoder's width")
    num_classes = model_kwargs.get("num_classes") if cond != "text" else None
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise CheckpointError(f"{path}: the stored model.num_classes must be a positive integer or null")
    channels = _positive_int(config, ("data", "channels"), path)
    size = _positive_int(config, ("data", "image_size"), path)
    net = _build_net(model_fn, net_kwargs, net_state, path)
    try:
        schedule = schedule_fn(**schedule_kwargs)
    except Exception as e:  # the schedule's own checks (a non-decreasing alpha_bar, T = 0, ...)
        raise CheckpointError(f"{path}: the stored diffusion.schedule config is invalid ({type(e).__name__})") from e
    return LoadedModel(
        net=net.eval().requires_grad_(False),
        schedule=schedule,
        parametrization=make_parametrization(prediction),
        num_classes=num_classes,
        image_shape=(channels, size, size),
        config=config,
        encoder=encoder,
    )
