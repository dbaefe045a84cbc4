"""Load a trained network from a Lightning checkpoint or an exported .safetensors + .yaml pair, safely."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from hydra.utils import instantiate
from torch import nn

from diffusion.schedules import Schedule


class CheckpointError(Exception):
    """A checkpoint that is missing, truncated, foreign or unsafe; the message is one line naming the file."""


@dataclass
class LoadedModel:
    """A network ready to sample from, with what is needed to interpret its output."""

    net: nn.Module
    schedule: Schedule
    prediction: str
    num_classes: int | None
    image_shape: tuple[int, int, int]  # (C, H, W)
    config: dict


def read_checkpoint(path: Path) -> tuple[dict, dict]:
    try:
        # weights_only: a pickle that would run code is refused instead of executed
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: refused to load (not plain weights: {first[:200]})") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (truncated or foreign file)") from e
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt.get("difflab", {}):
        raise CheckpointError(f"{path}: not a difflab checkpoint (no state_dict / difflab config)")
    return ckpt["state_dict"], ckpt["difflab"]["config"]


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config_path = path.with_suffix(".yaml")
    if not config_path.exists():
        raise CheckpointError(f"{path}: its config {config_path.name} is missing beside it")
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or foreign)") from e
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as e:
        raise CheckpointError(f"{config_path}: not valid YAML") from e
    return {f"ema.{k}": v for k, v in weights.items()}, config


def load_model(path: str | Path, weights: str = "ema") -> LoadedModel:
    """Rebuild the network from the config stored with it and load its ``weights`` ("ema" or "raw")."""
    path = Path(path)
    if weights not in ("ema", "raw"):
        raise CheckpointError(f"weights must be 'ema' or 'raw', got {weights!r}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    state, config = _read_safetensors(path) if path.suffix == ".safetensors" else read_checkpoint(path)
    prefix = f"{'ema' if weights == 'ema' else 'net'}."
    net_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not net_state:
        raise CheckpointError(f"{path}: holds no '{weights}' weights")
    try:
        net = instantiate(config["model"])
        net.load_state_dict(net_state)
    except Exception as e:  # a config and weights that do not match: one line, not a traceback
        raise CheckpointError(f"{path}: weights do not fit the stored model config ({type(e).__name__})") from e
    data = config["data"]
    return LoadedModel(
        net=net.eval().requires_grad_(False),
        schedule=instantiate(config["diffusion"]["schedule"]),
        prediction=config["diffusion"]["prediction"],
        num_classes=config["model"].get("num_classes"),
        image_shape=(int(data["channels"]), int(data["image_size"]), int(data["image_size"])),
        config=config,
    )
