"""Image generation from a network: the one path used by preview grids, sample.py and evaluate.py."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torchvision
from torch import nn
from tqdm import tqdm

from diffusion.denoiser import Denoiser, cond_map, cond_slice
from diffusion.guidance import Guidance
from diffusion.parametrization import Parametrization
from diffusion.samplers import make_timesteps, sample_ddim
from diffusion.schedules import Schedule


def sample_generators(seed: int, start: int, count: int, device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per sample index (seed, i): sample i gets the same noise whatever the batching."""
    return [torch.Generator(device=device).manual_seed(seed * 1_000_003 + i) for i in range(start, start + count)]


@torch.no_grad()
def sample_batches(
    make_denoiser: Callable[[int, int], Denoiser],
    shape: tuple[int, int, int],
    *,
    n: int,
    schedule: Schedule,
    sampler: Callable = partial(sample_ddim, eta=0.0),
    timesteps: list[int] | None = None,
    seed: int = 0,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    callback: Callable | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """``n`` samples (n, C, H, W) in [-1, 1] with ``sampler`` (a sampler function with its settings bound) over
    ``timesteps`` (default: 20 trailing-spaced), in batches of ``batch_size``. ``make_denoiser(start, b)`` gives
    the denoiser of samples start..start+b-1 (any wrapper: guidance, anagram views, factorized components).
    Sample i's noise comes from generator (seed, i) only, so the same seed gives the same images at any
    ``batch_size``."""
    timesteps = make_timesteps(schedule.num_timesteps, 20, "trailing") if timesteps is None else timesteps
    out = []
    starts = range(0, n, batch_size)
    bar = tqdm(total=len(starts) * len(timesteps), desc=f"{n} samples, {len(starts)} batch(es)", disable=not progress)

    def step_callback(i, t, x_t, x0_hat):
        bar.update(1)
        if callback is not None:
            callback(i, t, x_t, x0_hat)

    for start in starts:
        b = min(batch_size, n - start)
        gens = sample_generators(seed, start, b)
        x_T = torch.stack([torch.randn(shape, generator=g) for g in gens]).to(device)  # (b, C, H, W)
        x0 = sampler(make_denoiser(start, b), x_T, schedule, timesteps, generator=gens, callback=step_callback)
        out.append(x0.clamp(-1, 1).cpu())
    bar.close()
    return torch.cat(out)


def generate_images(
    net: nn.Module,
    schedule: Schedule,
    parametrization: Parametrization,
    shape: tuple[int, int, int],
    cond,
    *,
    null=None,
    n: int,
    guidance: Guidance | None = None,
    device: torch.device | str = "cpu",
    **sampling,
) -> torch.Tensor:
    """``n`` samples of ``net`` (see ``sample_batches`` for ``sampling``: sampler, timesteps, seed, batch_size,
    callback, progress).

    cond: the condition of each sample, batched over n: (n,) class labels, a text model's TextCond of batch n, or
    None (an unconditional model). null: the null condition batched the same way (null labels, the empty or
    negative prompt's encoding), which guidance pushes away from. The denoiser of each batch comes from
    ``guidance``, the run's one CFG policy (default: unguided).
    """
    guidance = guidance or Guidance()
    to_device = partial(cond_map, fn=lambda x: x.to(device))

    def make_denoiser(start: int, b: int) -> Denoiser:
        c, c_null = (to_device(cond_slice(x, start, start + b)) for x in (cond, null))
        return guidance.denoiser(net, schedule, parametrization, c, c_null)

    return sample_batches(make_denoiser, shape, n=n, schedule=schedule, device=device, **sampling)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> None:
    """Write images in [-1, 1] as one PNG grid."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torchvision.utils.save_image((images.float().cpu() + 1) / 2, str(path), nrow=nrow, padding=2, pad_value=1.0)
