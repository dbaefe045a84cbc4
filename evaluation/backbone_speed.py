"""Training and sampling throughput of backbones of about equal size (issue 15's ablation), timed round by round
on identical inputs, so that a noisy machine slows every backbone alike.

Training: images/s of one training step (forward, MSE, backward, AdamW) at a batch. Sampling: images/s of a
50-step DDIM run, from the time of one no-grad forward at the same batch (the sampler's own cost is under 1% of a
forward; benchmarks/RESULTS.md "Fewer steps").
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from diffusion.schedules import cosine_schedule
from evaluation.flops import training_step_flops
from evaluation.peers import count_params
from evaluation.sampling_speed import preset_net
from evaluation.timing import time_rounds
from evaluation.train_throughput import Trainer, make_batch


def benchmark(presets: list[str], channels: int = 1, image_size: int = 32, num_classes: int = 10,
              batch: int = 32, rounds: int = 5, sampling_steps: int = 50) -> dict[str, Any]:
    """{"rows": [{preset, params, gflops_per_image, train_images_per_s, sample_images_per_s}], settings}."""
    device = torch.device("cpu")
    data = make_batch(batch, channels, channels, image_size, num_classes, device)
    runners, rows = {}, {}
    for name in presets:
        torch.manual_seed(0)
        net, _ = preset_net(name, channels, image_size, num_classes)
        trainer = Trainer(net, lambda m, x, t, y: m(x, t, y), data, None)
        sampler_net = preset_net(name, channels, image_size, num_classes)[0].eval()

        def forward(net=sampler_net):
            with torch.no_grad():
                net(data["x"], data["t"], data["y"])

        runners[f"{name}/train"], runners[f"{name}/sample"] = trainer.step, forward
        flops = training_step_flops(preset_net(name, channels, image_size, num_classes)[0],
                                    (channels, image_size, image_size), cosine_schedule())
        rows[name] = {"preset": name, "params": count_params(net), "gflops_per_image": flops / 1e9}
    for fn in runners.values():  # warm-up
        fn()
    times = time_rounds(runners, rounds)
    for name, row in rows.items():
        row["train_images_per_s"] = batch / statistics.median(times[f"{name}/train"])
        row["sample_images_per_s"] = batch / (sampling_steps * statistics.median(times[f"{name}/sample"]))
    return {"batch": batch, "rounds": rounds, "shape": [channels, image_size, image_size],
            "sampling_steps": sampling_steps, "threads": torch.get_num_threads(), "rows": list(rows.values())}
