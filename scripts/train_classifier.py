"""Train the small CNN classifier used for FD-classifier and sample class accuracy, and cache it.

    python scripts/train_classifier.py data=procedural
    python scripts/train_classifier.py data=fashion_mnist steps=1500 batch_size=128 [data.image_size=16] [force=true]

The checkpoint goes to ${DIFFLAB_CACHE:-~/.cache/difflab}/classifiers/<data>_<channels>x<size>.pt (state_dict and
meta); ``load_or_train_classifier`` (used by scripts/evaluate.py) trains on first use and reuses it afterwards.
Bad input gets a one-line error and exit status 2.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from data import DatasetError  # noqa: E402
from models.classifier import Classifier  # noqa: E402

CONFIGS = ROOT / "configs"
DEFAULTS = {"steps": 300, "batch_size": 64, "lr": 3e-3, "width": 32, "seed": 0, "device": "cpu", "force": False}
VAL_LIMIT = 10000  # val images scored for the reported accuracy (Fashion-MNIST's whole t10k set)


class InputError(Exception):
    """Bad user input; the message is one line."""


def cache_root() -> Path:
    """Where classifiers and reference features are cached: $DIFFLAB_CACHE, else ~/.cache/difflab."""
    return Path(os.environ.get("DIFFLAB_CACHE") or "~/.cache/difflab").expanduser()


def compose_data(name: str, overrides: Sequence[str] = (), seed: int = 0) -> dict[str, Any]:
    """The resolved ``data`` node of configs/train.yaml with ``data=<name>`` and ``data.*`` overrides."""
    try:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose("train", overrides=[f"data={name}", f"seed={seed}", *overrides])
        return OmegaConf.to_container(cfg.data, resolve=True, throw_on_missing=True)
    except Exception as e:  # Hydra/OmegaConf errors are multi-line; keep the first line
        raise InputError(str(e).strip().splitlines()[0]) from e


def node_digest(node: dict[str, Any]) -> str:
    """A short stable hash of a config node, naming cache entries built from it."""
    return hashlib.sha1(json.dumps(node, sort_keys=True, default=str).encode()).hexdigest()[:8]


def build_dataset(node: dict[str, Any]) -> Dataset:
    """Instantiate a dataset node, raising the DatasetError inside Hydra's wrapping when there is one."""
    try:
        return instantiate(node)
    except Exception as e:
        cause = e
        while cause is not None and not isinstance(cause, DatasetError):
            cause = cause.__cause__
        raise (cause or e) from e


@torch.no_grad()
def accuracy(net: Classifier, dataset: Dataset, batch_size: int = 256, device: str = "cpu") -> float:
    """Top-1 accuracy of ``net`` on the first VAL_LIMIT items of ``dataset``."""
    n = min(len(dataset), VAL_LIMIT)
    loader = DataLoader(torch.utils.data.Subset(dataset, range(n)), batch_size=batch_size, shuffle=False)
    correct = 0
    for x, y in loader:
        correct += (net(x.to(device)).argmax(1).cpu() == y).sum().item()
    return correct / n


def train_classifier(
    data_cfg: dict[str, Any], *, steps: int, batch_size: int, lr: float, width: int, seed: int, device: str = "cpu",
    log: Callable[[str], None] = print,
) -> tuple[Classifier, float]:
    """Train ``Classifier`` on the train split with AdamW and cosine decay; returns it (eval mode) and val accuracy."""
    if data_cfg.get("num_classes") is None:
        raise InputError("the classifier needs labelled data: this dataset has num_classes=null")
    train_set, val_set = build_dataset(data_cfg["train"]), build_dataset(data_cfg["val"])
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without moving the caller's global RNG
        torch.manual_seed(seed)
        net = Classifier(int(data_cfg["channels"]), int(data_cfg["num_classes"]), int(data_cfg["image_size"]), width)
    net = net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=len(train_set) >= batch_size,
                        generator=torch.Generator().manual_seed(seed))
    step, start, running = 0, time.perf_counter(), []
    while step < steps:
        for x, y in loader:
            loss = F.cross_entropy(net(x.to(device)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running.append(loss.item())
            if step % max(1, steps // 10) == 0 or step == steps:
                log(f"classifier step {step}/{steps}  loss {sum(running) / len(running):.4f}  "
                    f"{step * batch_size / (time.perf_counter() - start):.0f} img/s")
                running = []
            if step == steps:
                break
    net.eval()
    return net, accuracy(net, val_set, device=device)


def classifier_path(data_name: str, data_cfg: dict[str, Any], cache_dir: Path | None = None) -> Path:
    """<cache>/classifiers/<data>_<channels>x<size>.pt"""
    name = f"{data_name}_{int(data_cfg['channels'])}x{int(data_cfg['image_size'])}.pt"
    return (cache_dir or cache_root()) / "classifiers" / name


def _load_cached(path: Path, data_cfg: dict[str, Any]) -> tuple[Classifier, dict[str, Any]] | None:
    """The cached classifier if it is readable and fits the data's channels, size and classes."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        meta = ckpt["meta"]
        expected = (int(data_cfg["channels"]), int(data_cfg["num_classes"]), int(data_cfg["image_size"]))
        if (meta["in_channels"], meta["num_classes"], meta["image_size"]) != expected:
            return None
        net = Classifier(meta["in_channels"], meta["num_classes"], meta["image_size"], meta["width"])
        net.load_state_dict(ckpt["state_dict"])
    except (OSError, RuntimeError, KeyError, TypeError, EOFError):  # a broken cache entry is retrained, not fatal
        return None
    return net.eval().requires_grad_(False), meta


def load_or_train_classifier(
    data_name: str, data_cfg: dict[str, Any], *, steps: int = DEFAULTS["steps"],
    batch_size: int = DEFAULTS["batch_size"], lr: float = DEFAULTS["lr"], width: int = DEFAULTS["width"],
    seed: int = DEFAULTS["seed"], device: str = "cpu", cache_dir: Path | None = None, force: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[Classifier, dict[str, Any]]:
    """The cached classifier for (data, channels, size), trained and cached first when missing (or ``force``).
    Returns the network (eval mode, CPU) and its meta dict (in_channels, num_classes, image_size, width,
    val_accuracy, data, steps, batch_size, seed)."""
    path = classifier_path(data_name, data_cfg, cache_dir)
    cached = None if force or not path.is_file() else _load_cached(path, data_cfg)
    if cached is not None:
        log(f"classifier: {path} (val accuracy {cached[1]['val_accuracy']:.4f})")
        return cached
    log(f"classifier: training on {data_name} ({steps} steps, batch {batch_size}) -> {path}")
    net, val_acc = train_classifier(data_cfg, steps=steps, batch_size=batch_size, lr=lr, width=width, seed=seed,
                                    device=device, log=log)
    net = net.cpu().requires_grad_(False)
    meta = {"in_channels": net.in_channels, "num_classes": net.num_classes, "image_size": net.image_size,
            "width": width, "val_accuracy": val_acc, "data": data_name, "steps": steps, "batch_size": batch_size,
            "seed": seed}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"state_dict": net.state_dict(), "meta": meta}, tmp)
    os.replace(tmp, path)  # readers never see half a file
    return net, meta


def parse_args(argv: list[str]) -> tuple[str, list[str], dict[str, Any]]:
    """key=value arguments -> (data name, data.* overrides, options)."""
    name, overrides, opts = None, [], dict(DEFAULTS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise InputError(f"arguments are key=value, got {arg!r}")
        if key == "data":
            name = value
        elif key.startswith("data."):
            overrides.append(arg)
        elif key in DEFAULTS:
            try:
                opts[key] = value.lower() in ("1", "true", "yes") if key == "force" else type(DEFAULTS[key])(value)
            except ValueError:
                raise InputError(f"{key} must be a {type(DEFAULTS[key]).__name__}, got {value!r}") from None
        else:
            raise InputError(f"unknown key {key!r}; known: data, data.*, {', '.join(DEFAULTS)}")
    if name is None:
        known = ", ".join(sorted(p.stem for p in (CONFIGS / "data").glob("*.yaml")))
        raise InputError(f"data=<name> is required (one of: {known})")
    if opts["steps"] < 1 or opts["batch_size"] < 1:
        raise InputError("steps and batch_size must be >= 1")
    return name, overrides, opts


def main(argv: list[str] | None = None) -> int:
    try:
        name, overrides, opts = parse_args(list(sys.argv[1:] if argv is None else argv))
        data_cfg = compose_data(name, overrides, opts["seed"])
        start = time.perf_counter()
        _, meta = load_or_train_classifier(name, data_cfg, steps=opts["steps"], batch_size=opts["batch_size"],
                                           lr=opts["lr"], width=opts["width"], seed=opts["seed"],
                                           device=opts["device"], force=opts["force"])
    except (InputError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"val accuracy {meta['val_accuracy']:.4f} ({meta['data']}, {meta['in_channels']}x{meta['image_size']}, "
          f"{meta['steps']} steps) in {time.perf_counter() - start:.0f} s: {classifier_path(name, data_cfg)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
