"""What text conditioning costs (scripts/benchmark_text.py): training and sampling time of a text model against
the label model on the same backbone, and the one-time cost of encoding a dataset's caption set.

Training steps are the real step of each kind: the text step looks the batch's captions up in the caption cache
(with dropout to the empty caption) and feeds the encodings to the network; the label step feeds labels. Rounds
alternate the two (evaluation/timing.py), so machine noise hits both; reported are median images/s and the median
of the per-round ratios text/label.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffusion.denoiser import net_denoiser
from diffusion.parametrization import make_parametrization
from diffusion.samplers import make_timesteps, sample_ddim
from diffusion.schedules import cosine_schedule
from evaluation.timing import paired_ratio, time_rounds
from models.text import CaptionCache, TextEncoder


def _train_step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, t: torch.Tensor, make_cond) -> None:
    opt.zero_grad(set_to_none=True)
    F.mse_loss(net(x, t, make_cond()), x).backward()
    opt.step()


def benchmark(label_net: nn.Module, text_net: nn.Module, cache: CaptionCache, captions: list[str],
              num_classes: int, shape: tuple[int, int, int], *, batch_size: int, rounds: int, steps: int,
              sample_steps: int, sample_batch: int, seed: int = 0) -> dict[str, Any]:
    """Train-step and DDIM sampling time of ``text_net`` (conditioned through ``cache`` on ``captions``, one per
    batch item, cycled) against ``label_net``; both nets built from the same preset for images of ``shape``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, *shape, generator=g)
    t = torch.randint(0, 1000, (batch_size,), generator=g)
    labels = torch.randint(0, num_classes, (batch_size,), generator=g)
    batch_captions = [captions[i % len(captions)] for i in range(batch_size)]

    def text_cond():  # the training module's lookup: caption ids, dropout to row 0, gather the rows
        ids = cache.ids(batch_captions)
        ids = torch.where(torch.rand(batch_size, generator=g) < 0.1, 0, ids)
        return cache.cond.index(ids)

    opts = {k: torch.optim.AdamW(n.parameters(), lr=1e-4) for k, n in (("label", label_net), ("text", text_net))}
    train = {
        "label": lambda: [_train_step(label_net, opts["label"], x, t, lambda: labels) for _ in range(steps)],
        "text": lambda: [_train_step(text_net, opts["text"], x, t, text_cond) for _ in range(steps)],
    }
    for fn in train.values():  # warm-up
        fn()
    times = time_rounds(train, rounds)
    report: dict[str, Any] = {
        "train_batch_size": batch_size,
        "params_label": sum(p.numel() for p in label_net.parameters()),
        "params_text": sum(p.numel() for p in text_net.parameters()),
    }
    for k in train:
        report[f"train_img_per_s_{k}"] = batch_size * steps / statistics.median(times[k])
    report["train_time_ratio_text_over_label"] = paired_ratio(times["text"], times["label"])

    schedule, param = cosine_schedule(1000), make_parametrization("v")
    ts = make_timesteps(1000, sample_steps, "trailing")
    x_T = torch.randn(sample_batch, *shape, generator=g)
    conds = {"label": labels[:1].expand(sample_batch).contiguous(), "text": cache.lookup([captions[0]] * sample_batch)}
    nets = {"label": label_net.eval(), "text": text_net.eval()}

    def sampler(k):
        with torch.no_grad():
            sample_ddim(net_denoiser(nets[k], schedule, param, conds[k]), x_T, schedule, ts)

    times = time_rounds({k: partial(sampler, k) for k in nets}, max(3, rounds // 2))
    for k in nets:
        report[f"sample_img_per_s_{k}"] = sample_batch / statistics.median(times[k])
    report["sample_time_ratio_text_over_label"] = paired_ratio(times["text"], times["label"])
    report["sample_steps"], report["sample_batch"] = sample_steps, sample_batch
    return report


def caption_cache_cost(encoder: TextEncoder, captions: list[str]) -> dict[str, float]:
    """Seconds to encode and store ``captions`` once, and to load them back from the cache."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        CaptionCache.build(encoder, captions, folder, log=lambda s: None)
        encode = time.perf_counter() - start
        start = time.perf_counter()
        CaptionCache.build(encoder, captions, folder, log=lambda s: None)
        load = time.perf_counter() - start
    return {"captions": len(captions), "encode_seconds": encode, "load_seconds": load}
