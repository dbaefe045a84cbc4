"""Data configs for the evaluation tools: compose configs/data/<name>.yaml and build its datasets with Hydra.

The one module under evaluation/ that touches Hydra (config -> object work, as sampling/cli.py); the rest of
evaluation/ takes plain dicts and built datasets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import Dataset

from data import DatasetError
from evaluation.classifier import cached_classifier
from models.classifier import Classifier
from sampling.checks import InputError

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
