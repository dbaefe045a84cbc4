"""The small CNN classifier behind FD-classifier and sample class accuracy: training, and its cache on disk.

Checkpoints go to ${DIFFLAB_CACHE:-~/.cache/difflab}/classifiers/<data>_<channels>x<size>.pt (state_dict and meta);
``cached_classifier`` trains on first use and reuses the file afterwards. Datasets come in built: from config
nodes, evaluation/data_config.py builds them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from data import cache_root  # noqa: F401 (re-exported: the evaluators import it from here)
from models.classifier import Classifier
from sampling.checks import InputError

DEFAULTS = {"steps": 300, "batch_size": 64, "lr": 3e-3, "width": 32, "seed": 0, "device": "cpu", "force": False}
VAL_LIMIT = 10000  # val images scored for the reported accuracy (Fashion-MNIST's whole t10k set)


def node_digest(node: dict[str, Any]) -> str:
    """A short stable hash of a config node, naming cache entries built from it."""
    return hashlib.sha1(json.dumps(node, sort_keys=True, default=str).encode()).hexdigest()[:8]


@torch.no_grad()
def accuracy(net: Classifier, dataset: Dataset, batch_size: int = 256, device: str = "cpu") -> float:
    """Top-1 accuracy of ``net`` on the first VAL_LIMIT items of ``dataset``."""
    n = min(len(dataset), VAL_LIMIT)
    loader = DataLoader(torch.utils.data.Subset(dataset, range(n)), batch_size=batch_size, shuffle=False)
    correct = 0
    for x, y in loader:
        correct += (net(x.to(device)).argmax(1).cpu() == y).sum().item()
    return correct / n


def fit_classifier(net: torch.nn.Module, loader: DataLoader, loss_fn: Callable, *, steps: int, batch_size: int,
                   lr: float, device: str, log: Callable[[str], None], name: str) -> torch.nn.Module:
    """Train ``net`` for ``steps`` batches of ``loader`` (cycled) on ``loss_fn(net(x), y)`` with AdamW (weight
    decay 0.05), linear warm-up over 5% of the steps and cosine decay, logging ten times; returns it in train mode."""
    net = net.to(device).train()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    step, start, running = 0, time.perf_counter(), []
    while step < steps:
        for x, y in loader:
            loss = loss_fn(net(x.to(device)), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            running.append(loss.item())
            if step % max(1, steps // 10) == 0 or step == steps:
                log(f"{name} step {step}/{steps}  loss {sum(running) / len(running):.4f}  "
                    f"{step * batch_size / (time.perf_counter() - start):.0f} img/s")
                running = []
            if step == steps:
                break
    return net


def train_classifier(
    train_set: Dataset, val_set: Dataset, *, channels: int, num_classes: int, image_size: int, steps: int,
    batch_size: int, lr: float, width: int, seed: int, device: str = "cpu", log: Callable[[str], None] = print,
) -> tuple[Classifier, float]:
    """Train ``Classifier`` on ``train_set`` with AdamW and cosine decay; returns it (eval mode) and its accuracy
    on ``val_set``."""
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without moving the caller's global RNG
        torch.manual_seed(seed)
        net = Classifier(channels, num_classes, image_size, width)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=len(train_set) >= batch_size,
                        generator=torch.Generator().manual_seed(seed))
    fit_classifier(net, loader, F.cross_entropy, steps=steps, batch_size=batch_size, lr=lr,
                   device=device, log=log, name="classifier")
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
    except (OSError, RuntimeError, KeyError, TypeError, EOFError, pickle.UnpicklingError):  # broken: retrained
        return None
    return net.eval().requires_grad_(False), meta


def cached_classifier(
    data_name: str, data_cfg: dict[str, Any], datasets: Callable[[], tuple[Dataset, Dataset]], *,
    steps: int = DEFAULTS["steps"], batch_size: int = DEFAULTS["batch_size"], lr: float = DEFAULTS["lr"],
    width: int = DEFAULTS["width"], seed: int = DEFAULTS["seed"], device: str = "cpu", cache_dir: Path | None = None,
    force: bool = False, log: Callable[[str], None] = print,
) -> tuple[Classifier, dict[str, Any]]:
    """The cached classifier for (data, channels, size), trained on ``datasets()`` (train, val) and cached first when
    missing (or ``force``). Returns the network (eval mode, CPU) and its meta dict (in_channels, num_classes,
    image_size, width, val_accuracy, data, steps, batch_size, seed)."""
    path = classifier_path(data_name, data_cfg, cache_dir)
    cached = None if force or not path.is_file() else _load_cached(path, data_cfg)
    if cached is not None:
        log(f"classifier: {path} (val accuracy {cached[1]['val_accuracy']:.4f})")
        return cached
    log(f"classifier: training on {data_name} ({steps} steps, batch {batch_size}) -> {path}")
    if data_cfg.get("num_classes") is None:
        raise InputError("the classifier needs labelled data: this dataset has num_classes=null")
    train_set, val_set = datasets()
    net, val_acc = train_classifier(
        train_set, val_set, channels=int(data_cfg["channels"]), num_classes=int(data_cfg["num_classes"]),
        image_size=int(data_cfg["image_size"]), steps=steps, batch_size=batch_size, lr=lr, width=width, seed=seed,
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
