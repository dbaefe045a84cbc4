"""Imagic (Kawar et al., CVPR 2023): edit one real image to follow a target prompt while keeping its identity.

Three stages, all on a text model, none of which changes the loaded checkpoint:

A. From the target prompt's encoding e_tgt (token states and pooled vector), optimise a text embedding e_opt so
   that the *frozen* model reconstructs the input image (its diffusion loss on the image).
B. Fine-tune a *copy* of the network on the image under e_opt (frozen), all of it or only chosen layers.
C. Sample the fine-tuned copy under e = eta * e_tgt + (1 - eta) * e_opt, from noise (the paper) or from the
   image's DDIM inversion under e_opt, for every eta of a strip and for the chosen one.

The paper's steps and rates (Imagen: 100 steps at 1e-3 for e_opt, 1,500 at 5e-7 for the model) are scaled to
our small models in configs/task/imagic.yaml; the wall time of each stage is reported.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from diffusion.editing.inversion import invert_ddim
from diffusion.losses import denoising_loss
from models.text import TextCond
from sampling.io import InputError, labelled_strip, load_input_image, to_pil
from sampling.job import Job, check_prompt


def interpolate(e_tgt: TextCond, e_opt: TextCond, eta: float) -> TextCond:
    """eta * e_tgt + (1 - eta) * e_opt on the token states and the pooled vector (the target's mask)."""
    return TextCond(eta * e_tgt.tokens + (1 - eta) * e_opt.tokens, e_tgt.mask,
                    eta * e_tgt.pooled + (1 - eta) * e_opt.pooled)


def _fit(loss_fn, params: list[torch.Tensor], steps: int, lr: float) -> list[float]:
    """``steps`` Adam steps on ``loss_fn(step)``; returns the losses."""
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(step)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _image_loss(net: nn.Module, job: Job, x0: torch.Tensor, cond: TextCond, batch_size: int, g: torch.Generator
                ) -> torch.Tensor:
    """The model's diffusion loss on ``batch_size`` noisy copies of x0 (1, C, H, W) under cond (batch 1)."""
    model = job.model
    x = x0.expand(batch_size, *x0.shape[1:])
    t = model.parametrization.sample_timesteps(batch_size, model.schedule.num_timesteps, g).to(x.device)
    eps = torch.randn(x.shape, generator=g).to(x)
    return denoising_loss(net, model.parametrization, model.schedule, x, t, eps, cond.repeat(batch_size))


def optimise_embedding(job: Job, x0: torch.Tensor, e_tgt: TextCond, steps: int, lr: float, batch_size: int
                       ) -> tuple[TextCond, list[float]]:
    """Stage A: e_opt from e_tgt by minimising the frozen model's loss on x0 (1, C, H, W)."""
    tokens = nn.Parameter(e_tgt.tokens.clone())
    pooled = nn.Parameter(e_tgt.pooled.clone())
    g = torch.Generator().manual_seed(job.seed)
    net = job.model.net
    losses = _fit(lambda _: _image_loss(net, job, x0, TextCond(tokens, e_tgt.mask, pooled), batch_size, g),
                  [tokens, pooled], steps, lr)
    return TextCond(tokens.detach(), e_tgt.mask, pooled.detach()), losses


def finetune(job: Job, x0: torch.Tensor, e_opt: TextCond, steps: int, lr: float, batch_size: int,
             layers: list[str] | None) -> tuple[nn.Module, list[float]]:
    """Stage B: a copy of the network fine-tuned on x0 under e_opt; ``layers``: the parameter-name prefixes to
    train (None: all). The job's network is never touched."""
    net = copy.deepcopy(job.model.net)
    names = [name for name, _ in net.named_parameters()]
    chosen = [n for n in names if layers is None or any(n.startswith(p) for p in layers)]
    if not chosen:
        raise InputError(f"task.finetune_layers={layers} names no parameter of this network (e.g. "
                         f"{', '.join(sorted({n.split('.')[0] for n in names})[:6])})")
    params = []
    for name, p in net.named_parameters():
        p.requires_grad_(name in chosen)
        if name in chosen:
            params.append(p)
    net.train()
    g = torch.Generator().manual_seed(job.seed + 1)
    losses = _fit(lambda _: _image_loss(net, job, x0, e_opt, batch_size, g), params, steps, lr)
    return net.eval().requires_grad_(False), losses


@dataclass
class Fitted:
    """Stages A and B of one image: the target and optimised embeddings (batch 1), the fine-tuned copy of the
    network, the loss curves and the wall time of each stage."""

    e_tgt: TextCond
    e_opt: TextCond
    net: nn.Module
    losses: dict[str, list[float]]
    times: dict[str, float]


def fit(job: Job, x0: torch.Tensor, prompt: str, embed_steps: int, embed_lr: float, finetune_steps: int,
        finetune_lr: float, batch_size: int, finetune_layers: list[str] | None = None) -> Fitted:
    """Stages A and B on x0 (C, H, W) towards ``prompt``."""
    x = x0[None].to(job.device)
    e_tgt = job.encode(prompt)
    times = {}
    with torch.enable_grad():
        start = time.perf_counter()
        e_opt, loss_a = optimise_embedding(job, x, e_tgt, embed_steps, embed_lr, batch_size)
        times["stage_a_s"] = time.perf_counter() - start
        start = time.perf_counter()
        net, loss_b = finetune(job, x, e_opt, finetune_steps, finetune_lr, batch_size, finetune_layers)
        times["stage_b_s"] = time.perf_counter() - start
    return Fitted(e_tgt, e_opt, net, {"a": loss_a, "b": loss_b}, times)


def starts(job: Job, fitted: Fitted, x0: torch.Tensor, n: int, start: str) -> torch.Tensor:
    """n starting points x_T: the job's seeded noise, or the image's DDIM inversion under e_opt (the same for all)."""
    if start == "noise":
        return torch.stack([torch.randn(job.model.image_shape, generator=g)
                            for g in job.generators(0, n)]).to(job.device)
    x = x0[None].to(job.device)
    x_T = invert_ddim(_denoiser(job, fitted.net, fitted.e_opt, 1), x, job.model.schedule, job.timesteps())
    return x_T.expand(n, *x.shape[1:]).contiguous()


def _denoiser(job: Job, net: nn.Module, e: TextCond, b: int):
    model = job.model
    return job.guidance.denoiser(net, model.schedule, model.parametrization, e.repeat(b), job.cond(None, b))


def edit(job: Job, fitted: Fitted, eta: float, x_T: torch.Tensor) -> torch.Tensor:
    """Stage C: samples (B, C, H, W) of the fine-tuned copy under eta * e_tgt + (1 - eta) * e_opt from x_T."""
    e = interpolate(fitted.e_tgt, fitted.e_opt, eta)
    b = x_T.shape[0]
    ts = job.timesteps()
    return job.sampler(_denoiser(job, fitted.net, e, b), x_T, job.model.schedule, ts,
                       generator=job.generators(0, b), callback=job.callback(len(ts))).clamp(-1, 1).cpu()


def imagic(job: Job, image: str | None = None, prompt: str | None = None, eta: float = 0.7,
           etas: list[float] | None = None, embed_steps: int = 100, embed_lr: float = 1e-3,
           finetune_steps: int = 200, finetune_lr: float = 1e-4, finetune_layers: list[str] | None = None,
           batch_size: int = 8, start: str = "noise", n: int = 1) -> dict:
    """Imagic on ``image`` towards ``prompt`` (module docstring); ``n`` seeds at the chosen ``eta``, a strip over
    ``etas`` (seed 0) with the input."""
    if job.model.encoder is None:
        raise InputError("task=imagic needs a text-conditioned checkpoint (model.cond=text); this one is "
                         + ("label-conditioned" if job.model.num_classes is not None else "unconditional"))
    if prompt is None:
        raise InputError("task=imagic needs prompt=\"...\" (the target text)")
    prompt = check_prompt(job, prompt)
    if start not in ("noise", "inversion"):
        raise InputError(f"task.start must be noise or inversion, got {start!r}")
    etas = [float(e) for e in (etas if etas is not None else [0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2])]
    x0, msg, _ = load_input_image(image, job.model)
    job.notes.append(msg)
    fitted = fit(job, x0, prompt, embed_steps, embed_lr, finetune_steps, finetune_lr, batch_size, finetune_layers)
    t0 = time.perf_counter()
    x_T = starts(job, fitted, x0, n, start)
    strip = torch.cat([edit(job, fitted, e, x_T[:1]) for e in etas])
    edits = edit(job, fitted, float(eta), x_T)
    times = {**fitted.times, "stage_c_s": time.perf_counter() - t0}
    recon = strip[etas.index(0.0)] if 0.0 in etas else edit(job, fitted, 0.0, x_T[:1])[0]
    mse = (recon - x0).pow(2).mean().item()
    job.notes.append(f"imagic: stage A {times['stage_a_s']:.1f} s, B {times['stage_b_s']:.1f} s, "
                     f"C {times['stage_c_s']:.1f} s; eta=0 reconstruction MSE {mse:.3e}")
    first_last = {k: [v[0], v[-1]] if v else [] for k, v in fitted.losses.items()}
    outputs = {
        "imagic.png": labelled_strip([x0, *strip], ["input", *[f"eta={e:g}" for e in etas]]),
        "edited.png": to_pil(edits[0]),
        "imagic.json": {"prompt": prompt, "eta": float(eta), "etas": etas, "start": start,
                        "embed_steps": embed_steps, "embed_lr": embed_lr, "finetune_steps": finetune_steps,
                        "finetune_lr": finetune_lr, "finetune_layers": finetune_layers, "batch_size": batch_size,
                        "loss_a_first_last": first_last["a"], "loss_b_first_last": first_last["b"],
                        "reconstruction_mse": mse, **times},
    }
    outputs.update({f"sample_{i:04d}.png": to_pil(e) for i, e in enumerate(edits)})
    return outputs
