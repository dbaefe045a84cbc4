"""Data configs for the evaluation tools: compose configs/data/<name>.yaml and build its datasets with Hydra.

The one module under evaluation/ that touches Hydra (config -> object work, as sampling/cli.py); the rest of
evaluation/ takes plain dicts and built datasets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset

from data import DatasetError
from evaluation.classifier import cached_classifier
from models.classifier import Classifier
from sampling.checks import InputError, check_number

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def compose_data(name: str, overrides: Sequence[str] = (), seed: int = 0) -> dict[str, Any]:
    """The resolved ``data`` node of configs/train.yaml with ``data=<name>`` and ``data.*`` overrides."""
    try:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose("train", overrides=[f"data={name}", f"seed={seed}", *overrides])
        return OmegaConf.to_container(cfg.data, resolve=True, throw_on_missing=True)
    except Exception as e:  # Hydra/OmegaConf errors are multi-line; keep the first line
        raise InputError(str(e).strip().splitlines()[0]) from e


def data_choice(overrides: Sequence[str]) -> str:
    """The name in the last ``data=<name>`` override (the data config a tool composed, naming its caches)."""
    names = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("data=")]
    if not names:
        raise InputError("data=<dataset config> is required")
    return names[-1]


def split_data_overrides(argv: Sequence[str]) -> tuple[str | None, list[str], list[str]]:
    """(data config name or None, ``data.*`` overrides of the checkpoint's stored data node, the other overrides):
    without ``data=<name>`` there is no data group to compose, so ``data.*`` edits the stored node (``data_node``)."""
    if any(o.lstrip("+").startswith("data=") for o in argv):
        return data_choice(argv), [], list(argv)
    return None, [o for o in argv if o.startswith("data.")], [o for o in argv if not o.startswith("data.")]


def data_node(name: str | None, node: DictConfig | None, overrides: Sequence[str], stored: dict[str, Any],
              shape: tuple[int, int, int]) -> tuple[str, dict[str, Any]]:
    """(name, resolved data node) at a checkpoint's (C, H, W) ``shape``: the composed ``data=<name>`` group
    ``node`` (its image_size and channels set to the checkpoint's), or, without a name, the data node ``stored`` in
    the checkpoint with the ``data.*`` ``overrides``, named after the config file that builds the same dataset."""
    channels, size = shape[0], shape[1]
    if name is not None:
        node.image_size, node.channels = size, channels  # before resolving: the train/val nodes interpolate them
        return name, OmegaConf.to_container(node, resolve=True)
    try:
        node = OmegaConf.merge(OmegaConf.create(stored), OmegaConf.from_dotlist([o[len("data."):] for o in overrides]))
        node = OmegaConf.to_container(node)
    except Exception as e:
        raise InputError(f"data override: {str(e).strip().splitlines()[0]}") from e
    for part in (node, node.get("train"), node.get("val")):  # at ``shape`` (a cascade's stage 2 is larger)
        if isinstance(part, dict) and "image_size" in part:
            part["image_size"] = size
    target = node["train"]["_target_"]
    matches = sorted(p.stem for p in (CONFIGS / "data").glob("*.yaml")
                     if OmegaConf.load(p).get("train", {}).get("_target_") == target)
    if len(matches) != 1:
        raise InputError(f"cannot tell which data config built {target}: pass data=<name>")
    return matches[0], node


def build_dataset(node: dict[str, Any]) -> Dataset:
    """Instantiate a dataset node, raising the DatasetError inside Hydra's wrapping when there is one."""
    try:
        return instantiate(node)
    except Exception as e:
        cause = e
        while cause is not None and not isinstance(cause, DatasetError):
            cause = cause.__cause__
        raise (cause or e) from e


def load_or_train_classifier(data_name: str, data_cfg: dict[str, Any], **options: Any) -> tuple[Classifier, dict]:
    """evaluation.classifier.cached_classifier, trained (when not cached) on the train and val nodes of data_cfg."""
    datasets = lambda: (build_dataset(data_cfg["train"]), build_dataset(data_cfg["val"]))  # noqa: E731
    return cached_classifier(data_name, data_cfg, datasets, **options)


def class_captions(node: dict[str, Any]) -> list[str] | None:
    """The per-class captions ('a photo of a sneaker', label order) of the data node's dataset class, or None when
    it has none (a text model is then evaluated unconditionally on it)."""
    try:
        cls = get_class(node["train"]["_target_"])
    except Exception:
        return None
    return cls.label_captions() if hasattr(cls, "label_captions") else None


def reference_captions(node: dict[str, Any]) -> list[str] | None:
    """The captions of the real images of the data node's train split (caption i of image i), or None when its
    dataset has labels or no captions: a text model on unlabelled captioned data (emoji, folder) is evaluated
    with sample i drawn under caption i."""
    if node.get("num_classes") is not None:
        return None
    dataset = build_dataset(node["train"])
    if not hasattr(dataset, "caption"):
        return None
    return [dataset.caption(i) for i in range(len(dataset))]


def held_out(model, n: int) -> tuple[torch.Tensor, list]:
    """(n, C, H, W) validation images of the model's training data (held out from training; for emoji, its fixed
    test split) at the model's resolution, evenly spaced over the set, and each one's condition value for the
    model (its label or caption; None for an unconditional one)."""
    _, node = data_node(None, None, [], model.config["data"], model.image_shape)
    node["val"]["image_size"] = model.image_shape[-1]
    dataset = build_dataset(node["val"])
    check_number(f"n (the validation set has {len(dataset)} images)", n, 1, len(dataset), integer=True)
    index = torch.linspace(0, len(dataset) - 1, n).round().long().tolist()
    images = torch.stack([dataset[i][0] for i in index])
    values = {None: [None] * n, "label": [int(dataset[i][1]) for i in index],
              "text": [dataset.caption(i) for i in index] if hasattr(dataset, "caption") else None}[model.cond_kind]
    if values is None:
        raise InputError("the validation set has no captions for this text-conditioned upscaler")
    return images, values
