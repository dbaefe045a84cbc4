"""Generation tasks of sample.py: generate, forward, denoise_compare; and the helpers editing shares."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torchvision.transforms.functional as TF
from omegaconf import DictConfig
from torchvision.utils import make_grid

from diffusion.denoiser import Denoiser
from diffusion.forward_process import add_noise
from diffusion.guidance import cfg_denoiser
from diffusion.samplers import make_timesteps
from sampling.checkpoint import LoadedModel
from sampling.generate import generate_images, sample_generators
from sampling.io import InputError, labelled_strip, load_input_image, parse_label, psnr, to_pil


@dataclass
class Run:
    """What every task receives: the config, the model, the sampler (a partial) and its step settings."""

    cfg: DictConfig
    model: LoadedModel
    sampler: Callable
    steps: int
    spacing: str
    notes: list[str]


def cond_tensor(model: LoadedModel, label: int | None, b: int) -> torch.Tensor | None:
    """(b,) labels: ``label``, or the null label when None; None for unconditional models."""
    if model.num_classes is None:
        return None
    value = model.num_classes if label is None else parse_label(label, model)
    return torch.full((b,), value, dtype=torch.long)


def make_denoiser(run: Run, label: int | None, b: int, model: LoadedModel | None = None) -> Denoiser:
    """The (guided) denoiser of ``model`` (default: the run's) for ``label`` over a batch of b."""
    model = model or run.model
    cond = cond_tensor(model, label, b)
    null = cond_tensor(model, None, b)
    guidance = run.cfg.guidance if cond is not None else 1.0
    return cfg_denoiser(
        model.net, model.schedule, model.prediction, cond, null, guidance, run.cfg.guidance_rescale,
        batched=run.cfg.get("guidance_batched"),
    )


def check_generation_args(run: Run) -> torch.Tensor | None:
    """Labels of the n samples: ``label`` for all, else 0, 1, 2, ... cycling; None for unconditional models."""
    cfg, model = run.cfg, run.model
    if model.num_classes is None:
        if cfg.label is not None or cfg.guidance != 1.0:
            raise InputError("this checkpoint is unconditional: label and guidance need a class-conditional model")
        return None
    if cfg.label is not None:
        return torch.full((cfg.n,), parse_label(cfg.label, model), dtype=torch.long)
    return torch.arange(cfg.n) % model.num_classes


def generate(run: Run) -> dict:
    """n samples: grid.png, sample_XXXX.png and, with save_trajectory, trajectory.gif."""
    cfg, model = run.cfg, run.model
    labels = check_generation_args(run)
    frames: list[torch.Tensor] = []
    keep = min(cfg.n, 8)

    def record(i, t, x_t, x0_hat):  # first batch only: the trajectory of the first `keep` samples
        if len(frames) < run.steps:
            frames.append(torch.cat([x_t[:keep].clamp(-1, 1), x0_hat[:keep].clamp(-1, 1)]).cpu())

    images = generate_images(
        model.net, model.schedule, model.prediction, model.image_shape, labels, n=cfg.n, sampler=run.sampler,
        steps=run.steps, spacing=run.spacing, guidance=cfg.guidance, guidance_rescale=cfg.guidance_rescale,
        num_classes=model.num_classes, seed=cfg.seed, batch_size=cfg.batch_size, device=cfg.device,
        callback=record if cfg.save_trajectory else None, progress=True,
    )
    outputs: dict = {"grid.png": images}
    outputs.update({f"sample_{i:04d}.png": to_pil(x) for i, x in enumerate(images)})
    if cfg.save_trajectory:
        # each frame: top row x_t, bottom row x0_hat; the last frame holds the final samples
        frames.append(torch.cat([images[:keep], images[:keep]]))
        outputs["trajectory.gif"] = [to_pil(make_grid(f, nrow=keep, padding=2, pad_value=1.0)) for f in frames]
    return outputs


def forward(run: Run) -> dict:
    """forward.png: the input and x_t at each of ``task.timesteps`` (one noise draw)."""
    x0, msg, _ = load_input_image(run.cfg.image, run.model)
    run.notes.append(msg)
    ts = list(run.cfg.task.timesteps)
    eps = torch.randn(x0.shape, generator=sample_generators(run.cfg.seed, 0, 1)[0])
    noised = [add_noise(x0, eps, float(run.model.schedule.alphas_cumprod[t])) for t in ts]
    return {"forward.png": labelled_strip([x0, *noised], ["x0", *[f"t={t}" for t in ts]])}


def denoise_compare(run: Run) -> dict:
    """One image noised to task.t, denoised by Gaussian blur, one-step x0_hat and DDIM; PSNR of each."""
    cfg, model = run.cfg, run.model
    x0, msg, _ = load_input_image(cfg.image, model)
    run.notes.append(msg)
    T, t = model.schedule.num_timesteps, cfg.task.t
    ab = float(model.schedule.alphas_cumprod[t])
    eps = torch.randn(x0.shape, generator=sample_generators(cfg.seed, 0, 1)[0])
    x_t = add_noise(x0, eps, ab)[None].to(cfg.device)  # (1, C, H, W)
    denoiser = make_denoiser(run, cfg.label, 1)
    with torch.no_grad():
        one_step = denoiser(x_t, torch.tensor([t], device=x_t.device)).x0.clamp(-1, 1).cpu()
    iterative = run.sampler(denoiser, x_t, model.schedule, make_timesteps(T, run.steps, start=t),
                            generator=sample_generators(cfg.seed, 1, 1)).clamp(-1, 1).cpu()
    sigma = cfg.task.blur_sigma
    k = max(3, 2 * math.ceil(3 * sigma) + 1)
    noisy = x_t.cpu() / math.sqrt(ab)  # undo the signal scaling so blur and PSNR compare like with like
    blurred = TF.gaussian_blur(noisy, [k, k], [sigma, sigma])
    results = {"noisy": noisy[0], "blur": blurred[0], "one-step": one_step[0], "iterative": iterative[0]}
    scores = {name: psnr(x, x0) for name, x in results.items()}
    run.notes.append("PSNR vs clean (dB): " + ", ".join(f"{k} {v:.2f}" for k, v in scores.items()))
    captions = ["clean", *[f"{k} {v:.1f}dB" for k, v in scores.items()]]
    return {"denoise_compare.png": labelled_strip([x0, *results.values()], captions),
            "psnr.json": {"t": t, "steps": run.steps, "blur_sigma": sigma, **scores}}
