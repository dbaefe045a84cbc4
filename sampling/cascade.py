"""The cascade's second stage in sample.py: ``stage2=<upscaler>`` after generate or an illusion task, and the
``upscale`` task. The maths (augmentation, resizing, SRCond) is in diffusion/cascade.py."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch
import torch.nn.functional as F

from diffusion.cascade import SRCond, sr_condition
from diffusion.denoiser import Denoiser, cond_map, cond_slice, net_denoiser
from sampling.checkpoint import LoadedModel
from sampling.generate import sample_batches
from sampling.io import InputError, captioned_rows, load_input_image, to_pil
from sampling.job import Job, check_condition


def check_stage2(base: LoadedModel, sr: LoadedModel, path: str) -> None:
    """InputError unless ``sr`` (loaded from ``path``) is an upscaler that takes ``base``'s samples: its low
    resolution and channels are the base's image size and channels, and its condition kind is the base's (or
    none: an unconditional upscaler takes any base)."""
    if sr.low_res is None:
        raise InputError(f"stage2={path}: not an upscaler (a super-resolution checkpoint, model=unet_sr)")
    c, h, _ = base.image_shape
    if (sr.image_shape[0], sr.low_res) != (c, h):
        raise InputError(f"stage2={path}: upscales {sr.image_shape[0]}-channel {sr.low_res}x{sr.low_res} images, "
                         f"and the base model makes {c}-channel {h}x{h} ones")
    if base.low_res is not None:
        raise InputError("ckpt= is itself an upscaler: the base stage must be a base model")
    if sr.cond_kind is not None and base.cond_kind is not None and sr.cond_kind != base.cond_kind:
        raise InputError(f"stage2={path}: a {sr.cond_kind}-conditioned upscaler cannot follow a "
                         f"{base.cond_kind}-conditioned base model")
    if sr.cond_kind == "label" and base.cond_kind == "label" and sr.num_classes != base.num_classes:
        raise InputError(f"stage2={path}: has {sr.num_classes} classes, the base model {base.num_classes}")


def low_condition(job: Job, sr: LoadedModel, low: torch.Tensor, seed: int) -> SRCond:
    """The SRCond (without its base condition) of low-resolution images ``low`` (n, C, h, w): noise-augmented at
    the job's ``stage2_aug`` level with image i's noise from generator (seed, i), then upsampled."""
    n = len(low)
    noise = torch.stack([torch.randn(low.shape[1:], generator=g) for g in job.generators(0, n, seed)])
    aug_t = torch.full((n,), job.stage2_aug, dtype=torch.long)
    return sr_condition(low.float().cpu(), sr.image_shape[-1], aug_t, sr.schedule, noise)


def sr_denoiser(job: Job, sr: LoadedModel, low: SRCond, cond, null) -> Denoiser:
    """The upscaler's denoiser given the augmented low-resolution batch ``low``, guided from ``null`` towards
    ``cond`` by the job's policy (both batched like ``low``; cond None: unguided under ``null``). Guidance only
    ever changes the base condition: the low-resolution image is in both passes."""
    if cond is None or sr.cond_kind is None:
        return net_denoiser(sr.net, sr.schedule, sr.parametrization, low._replace(cond=null))
    return job.guidance.denoiser(sr.net, sr.schedule, sr.parametrization, low._replace(cond=cond),
                                 low._replace(cond=null))


def upscale_batches(job: Job, low: torch.Tensor, make_denoiser: Callable[[SRCond, int, int], Denoiser],
                    batch_size: int = 16, model: LoadedModel | None = None) -> torch.Tensor:
    """(n, C, H, W) in [-1, 1]: the low-resolution images ``low`` (n, C, h, w) upscaled by ``model`` (default:
    the job's stage 2) with the job's sampler. ``make_denoiser(low_batch, start, b)`` builds each batch's
    denoiser from its slice of the augmented low-resolution condition (see ``sr_denoiser``)."""
    sr = model or job.stage2
    seed = job.seed + 1  # the stage-2 noise (its x_T and the augmentation) is not the base's
    cond = low_condition(job, sr, low, seed + 1)
    to_device = lambda c: cond_map(c, lambda x: x.to(job.device))  # noqa: E731

    def batch_denoiser(start: int, b: int) -> Denoiser:
        return make_denoiser(to_device(cond_slice(cond, start, start + b)), start, b)

    return sample_batches(batch_denoiser, sr.image_shape, n=len(low), schedule=sr.schedule, sampler=job.sampler,
                          timesteps=job.timesteps(sr), seed=seed, batch_size=batch_size, device=job.device,
                          progress=True, callback=job.callback(len(job.timesteps(sr))))


def upscale_conditioned(job: Job, low: torch.Tensor, cond, null, batch_size: int = 16) -> torch.Tensor:
    """``low`` upscaled by the job's stage 2 under per-sample conditions ``cond``/``null`` (batched over n, for
    the upscaler: see ``stage2_conditions``)."""
    return upscale_batches(job, low, lambda lc, s, b: sr_denoiser(job, job.stage2, lc, cond_slice(cond, s, s + b),
                                                                  cond_slice(null, s, s + b)), batch_size)


def upscale_samples(job: Job, low: torch.Tensor, cond, null, batch_size: int = 16) -> torch.Tensor:
    """The base stage's samples ``low`` upscaled by the job's stage 2, given the base's own batched (cond, null)
    (labels or TextConds, None for an unconditional base): an unconditional upscaler ignores them, and a
    conditional one after an unconditional base runs under its null condition."""
    sr = job.stage2
    if sr.cond_kind is None:
        cond = null = None
    elif job.model.cond_kind is None:
        cond, null = None, job.cond(None, len(low), sr)
    to_device = lambda c: cond_map(c, lambda x: x.to(job.device))  # noqa: E731
    return upscale_conditioned(job, low, to_device(cond), to_device(null), batch_size)


def stage2_conditions(job: Job, values: list):
    """(cond, null) of the job's upscaler batched over samples with condition ``values`` (a prompt, a label or None
    each, as the base stage drew them); (None, null) where the upscaler or the base is unconditional."""
    sr, n = job.stage2, len(values)
    null = job.cond(None, n, sr)
    if sr.cond_kind is None or job.model.cond_kind is None:
        return None, null
    rows = [job.cond(v, 1, sr) for v in values]
    return stack_conditions(rows), null


def stack_conditions(rows: list):
    """Batch-1 conditions (label tensors or TextConds) stacked into one batch."""
    if isinstance(rows[0], torch.Tensor):
        return torch.cat(rows)
    return type(rows[0])(*(torch.cat(parts) for parts in zip(*rows)))


def cascade_outputs(low: torch.Tensor, high: torch.Tensor, keep: int = 8) -> dict:
    """stage1_grid.png (the base samples) and cascade.png: the first ``keep`` base samples (nearest-upsampled)
    above their stage-2 upscales."""
    k = min(keep, len(low))
    nearest = F.interpolate(low[:k].float(), size=high.shape[-2:], mode="nearest")
    return {
        "stage1_grid.png": low,
        "cascade.png": captioned_rows([nearest, high[:k]], [f"stage 1 ({low.shape[-1]} px)",
                                                            f"stage 2 ({high.shape[-1]} px)"]),
    }


def upscale(job: Job, image: str | None = None, label: int | None = None, prompt: str | None = None,
            n: int = 1) -> dict:
    """Upscale one low-resolution image with the loaded upscaler (ckpt=<sr checkpoint>): n samples of its
    high-resolution version under ``label``/``prompt`` (or the null condition). The input must be exactly the
    upscaler's low resolution. Writes upscale.png (input nearest- and bicubic-upsampled, then the samples) and
    sample_XXXX.png."""
    sr = job.model
    if sr.low_res is None:
        raise InputError("task=upscale needs an upscaler checkpoint (model=unet_sr) as ckpt=")
    value = check_condition(job, label, prompt)
    low_model = replace(sr, image_shape=(sr.image_shape[0], sr.low_res, sr.low_res))
    x, msg, size = load_input_image(image, low_model)
    if size is not None and size != (sr.low_res, sr.low_res):
        raise InputError(f"{image}: is {size[0]}x{size[1]}; this upscaler takes {sr.low_res}x{sr.low_res} images")
    job.notes.append(msg.split(" -> ")[0] if size is not None else msg)
    low = x[None].expand(n, -1, -1, -1)
    cond = job.cond(value, n, sr) if value is not None else None
    high = upscale_batches(job, low, lambda lc, s, b: sr_denoiser(job, sr, lc, cond_slice(cond, s, s + b),
                                                                  job.cond(None, b, sr)), model=sr)
    size_hi = high.shape[-2:]
    nearest = F.interpolate(x[None], size=size_hi, mode="nearest")[0]
    bicubic = F.interpolate(x[None], size=size_hi, mode="bicubic", align_corners=False)[0].clamp(-1, 1)
    outputs: dict = {"upscale.png": captioned_rows([torch.stack([nearest, bicubic, *high])],
                                                   ["input (nearest), bicubic, upscaled samples"])}
    outputs.update({f"sample_{i:04d}.png": to_pil(y) for i, y in enumerate(high)})
    return outputs
