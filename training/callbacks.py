"""Callbacks: preview grids from the EMA model, images/s in the progress bar, EMA agreement across ranks."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import lightning as L
import torch

from diffusion.cascade import downsample, sr_condition
from diffusion.denoiser import cond_slice
from diffusion.samplers import SCHEDULE_SPACINGS, schedule_timesteps
from diffusion.solvers import SAMPLERS
from sampling.generate import generate_images, save_grid


class PreviewSamples(L.Callback):
    """Every ``every_n_steps`` optimizer steps (and at the end), sample a grid from the EMA network with a
    few DDIM steps into ``<dirpath>/step_XXXXXXX.png`` and to the logger."""

    def __init__(
        self, dirpath: str, every_n_steps: int = 500, n: int = 64, steps: int = 20, seed: int = 0, clip_x0: bool = True,
        sampler: str = "ddim", spacing: str = "trailing",
    ):
        self.dirpath, self.every_n_steps, self.n, self.steps, self.seed = Path(dirpath), every_n_steps, n, steps, seed
        if sampler not in SAMPLERS:
            raise ValueError(f"callbacks.preview.sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if spacing not in SCHEDULE_SPACINGS:
            raise ValueError(f"callbacks.preview.spacing must be one of {', '.join(SCHEDULE_SPACINGS)}, "
                             f"got {spacing!r}")
        self.spacing = spacing
        self.sampler = partial(SAMPLERS[sampler], clip_x0=clip_x0)  # each with its defaults (ddim: eta = 0)
        self._last_step = -1
        self._shape: tuple[int, int, int] | None = None  # (C, H, W), read off the training batches
        self._images: torch.Tensor | None = None  # the first batch's images: a super-resolution preview's inputs

    def write(self, trainer: L.Trainer, pl_module) -> Path | None:
        """Sample and save the grid for the current step (rank 0 only)."""
        step = trainer.global_step
        if step == self._last_step or self._shape is None or not trainer.is_global_zero:
            return None
        self._last_step = step
        pl_module.ema.eval()  # Lightning's model.train() reaches the EMA copy too; no dropout when sampling
        schedule = pl_module.schedule
        cond, null = pl_module.preview_condition(self.n)  # labels cycling, or a few captions of the data
        n, low_res = self.n, getattr(pl_module.net, "low_res", None)
        if low_res:  # a super-resolution stage: upscale the low-resolution views of the first training images
            low = downsample(self._images[:n], low_res)  # augmentation level 0, no noise
            n = len(low)
            cond = null = sr_condition(low, self._shape[-1], torch.zeros(n, dtype=torch.long), schedule,
                                       torch.zeros_like(low), cond_slice(null, 0, n))
        images = generate_images(
            pl_module.ema, schedule, pl_module.parametrization, self._shape, cond, null=null,
            n=n, timesteps=schedule_timesteps(schedule, self.steps, self.spacing), seed=self.seed,
            sampler=self.sampler, device=pl_module.device,
        )
        if low_res:  # the bicubic upsampled inputs above their super-resolved samples
            images = torch.cat([cond.low.clamp(-1, 1), images])
        path = self.dirpath / f"step_{step:07d}.png"
        save_grid(images, path, nrow=max(1, int(self.n**0.5)))
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_image"):  # TensorBoard
                experiment.add_image("samples", (images[: self.n] + 1) / 2, step, dataformats="NCHW")
            elif hasattr(logger, "log_image"):  # wandb
                logger.log_image("samples", [str(path)], step=step)
        return path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._shape = tuple(batch[0].shape[1:])
        if self._images is None:
            self._images = batch[0][: self.n].detach().cpu()
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0 and trainer.global_step > 0:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.write(trainer, pl_module)


class ImagesPerSecond(L.Callback):
    """Training throughput (images/s on this rank, averaged over ``window`` batches) in the progress bar."""

    def __init__(self, window: int = 20):
        self.window = window
        self._t0: float | None = None
        self._count = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._t0 is None:
            self._t0, self._count = now, 0
            return
        self._count += batch[0].shape[0]
        if self._count >= self.window * batch[0].shape[0]:
            pl_module.log("train/img_per_s", self._count / (now - self._t0), prog_bar=True)
            self._t0, self._count = now, 0


class EMARankCheck(L.Callback):
    """At the end of training, all-gather a checksum of the EMA weights and fail if ranks disagree."""

    def on_train_end(self, trainer, pl_module) -> None:
        vec = torch.cat([p.detach().double().flatten() for p in pl_module.ema.parameters()])
        checksum = torch.stack([vec.sum(), (vec * torch.arange(len(vec), dtype=vec.dtype, device=vec.device)).sum()])
        gathered = trainer.strategy.all_gather(checksum)  # (world, 2) under DDP, (2,) otherwise
        gathered = gathered.reshape(-1, 2)
        spread = (gathered - gathered[0]).abs().max().item()
        if trainer.is_global_zero:
            print(f"EMA checksum agreement across {gathered.shape[0]} rank(s): max difference {spread:.3e}")
        if spread != 0.0:
            raise RuntimeError(f"EMA weights differ across ranks (max checksum difference {spread:.3e})")
