"""Every numeric and choice setting of sample.py checked once, where the Hydra config becomes a Job.

One table names each key of configs/sample.yaml, configs/sampler/* and configs/task/* once, with the range
the YAML comments state; a key absent from the composed config (another task's) is skipped. The tasks below
then take the values as given. Checks that need more than a range stay with their parser: labels
(``parse_label``: this checkpoint's classes), ``pad`` (the canvas size), image and mask files (sampling/io.py),
``source``/``target`` of DDIB (a label or a checkpoint) and ``weights`` (the checkpoint loader).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from omegaconf import DictConfig, OmegaConf

from diffusion.samplers import SCHEDULE_SPACINGS
from diffusion.solvers import UNIPC_VARIANTS
from sampling.checks import InputError, check_choice, check_number

Bound = float | Callable[[int], int] | None  # a number, or a function of the model's T (timesteps)


@dataclass(frozen=True)
class Range:
    """A numeric setting's allowed interval (inclusive unless open), optionally a function of T."""

    lo: Bound = None
    hi: Bound = None
    integer: bool = False
    lo_open: bool = False
    hi_open: bool = False


SEED_MAX = 2**32 - 1  # seed * 1_000_003 + i stays far inside torch.Generator's 64-bit seed

NUMBERS: dict[str, Range] = {
    # sample.yaml
    "seed": Range(0, SEED_MAX, integer=True),
    # CFG scale (Ho & Salimans 2022, eq. 6, with w + 1 = scale): 0 = unconditional, 1 = off; above 50 the
    # samples saturate whatever the thresholding, so a larger value is a typo
    "guidance": Range(0, 50),
    "guidance_rescale": Range(0, 1),  # Lin et al. 2024, eq. 16: a blend weight phi in [0, 1]
    # the cascade's low-res augmentation level (CDM sec. 4.2); its upper bound, the upscaler's T - 1, is checked
    # where the upscaler is loaded (sampling/cli.py): the base model's T says nothing about it
    "stage2_aug": Range(0, None, integer=True),
    # sampler
    "sampler.steps": Range(1, lambda T: T, integer=True),
    "sampler.eta": Range(0, 1),  # Song et al. 2021, eq. 16: 0 = DDIM (deterministic), 1 = DDPM's variance
    "sampler.order": Range(1, 3, integer=True),  # DPM-Solver++ (1, 2M, 3M) and UniPC's predictor order
    # tasks (configs/task/*.yaml; a key absent from the chosen task is skipped)
    "task.n": Range(1, 100_000, integer=True),
    "task.batch_size": Range(1, 4096, integer=True),
    "task.timesteps[]": Range(0, lambda T: T - 1, integer=True),  # forward
    "task.t": Range(0, lambda T: T - 1, integer=True),  # denoise_compare
    "task.blur_sigma": Range(0, 16, lo_open=True),  # pixels; gaussian_blur needs sigma > 0
    "task.strength": Range(0, 1),  # SDEdit t0 = strength * T
    "task.strength_sweep[]": Range(0, 1),
    "task.fixed_point_iters": Range(0, 50, integer=True),  # each costs one more network call per step
    "task.mask_draws": Range(1, 1000, integer=True),  # DiffEdit averages n noise draws (they use 10)
    "task.mask_strength": Range(0, 1, lo_open=True),  # DiffEdit compares the predictions at t = mask_strength * T
    "task.mask_clamp_ratio": Range(0, None, lo_open=True),
    "task.mask_threshold": Range(0, 1),
    "task.encode_ratio": Range(0, 1),
    "task.resamples": Range(1, 100, integer=True),  # RePaint (Lugmayr et al. 2022) uses r = 10; cost x r
    "task.jump_length": Range(1, lambda T: T, integer=True),  # RePaint uses j = 10; 0 would never advance
    "task.frames": Range(2, 1000, integer=True),  # zoom
    "task.scale": Range(0.2, 1, hi_open=True),  # zoom: shrink factor per frame
    "task.overlap": Range(0, 16, integer=True),  # zoom: pixels regenerated inside the pasted frame (its own check:
    # less than half the pasted frame)
    "task.jigsaw": Range(2, 64, integer=True),  # anagram: pieces per side (its own check: it divides the size)
    "task.sigma": Range(0, 8, lo_open=True),  # hybrid: low-pass std in pixels (its own check: the kernel fits)
    "task.eta": Range(0, 2),  # imagic: the paper sweeps 0..1 and edits beyond 1 rarely help
    "task.etas[]": Range(0, 2),
    "task.embed_steps": Range(0, 100_000, integer=True),  # imagic stage A
    "task.embed_lr": Range(0, 1, lo_open=True),
    "task.finetune_steps": Range(0, 100_000, integer=True),  # imagic stage B
    "task.finetune_lr": Range(0, 1, lo_open=True),
}

CHOICES: dict[str, tuple] = {
    "sampler.spacing": SCHEDULE_SPACINGS,
    "sampler.variant": UNIPC_VARIANTS,  # UniPC B(h) (Zhao et al. 2023, sec. 3.3)
    "sampler.variance": ("beta_tilde", "beta"),  # DDPM, Ho et al. 2020, sec. 3.2
    "guidance_batched": (None, True, False),
    "task.save_trajectory": (True, False),
    "overwrite": (True, False),
    "task.direction": ("in", "out"),
    "task.kind": ("low_high", "grey_colour"),  # hybrid
    "task.start": ("noise", "inversion"),  # imagic
}

_MISSING = object()


def _bound(b: Bound, T: int) -> float | None:
    return b(T) if callable(b) else b


def check_clip_x0(value) -> bool | float:
    """sampler.clip_x0: true (clip to [-1, 1]), false, or a percentile p in (0, 1) for dynamic thresholding
    (Saharia et al. 2022, sec. 2.3; they use p = 0.995)."""
    if isinstance(value, bool):
        return value
    what = "sampler.clip_x0 must be true, false or a percentile in (0, 1)"
    if not isinstance(value, float):  # an int 0 or 1 would read as a percentile; 2 would be nonsense
        raise InputError(f"{what}, got {value!r}")
    try:
        return check_number("sampler.clip_x0", value, 0, 1, lo_open=True, hi_open=True)
    except InputError as e:
        raise InputError(f"{what}, got {value!r}") from e


def check_device(value) -> torch.device:
    """cpu, cuda or cuda:<index>, refused unless this machine has that device."""
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"device must be cpu, cuda or cuda:<index>, got {value!r}") from e
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise InputError(f"device must be cpu, cuda or cuda:<index>, got {value!r}")
    if not torch.cuda.is_available():
        raise InputError(f"device={value}: no CUDA GPU is available on this machine (use device=cpu)")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"device={value}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_settings(cfg: DictConfig, num_timesteps: int) -> None:
    """InputError (one line naming the key and its allowed range) for the first setting of ``cfg`` out of
    range; ``num_timesteps``: the model's T, which bounds steps and timesteps."""
    for key, r in NUMBERS.items():
        is_list = key.endswith("[]")
        value = OmegaConf.select(cfg, key.removesuffix("[]"), default=_MISSING)
        if value is _MISSING or (is_list and value is None):
            continue
        lo, hi = _bound(r.lo, num_timesteps), _bound(r.hi, num_timesteps)
        name = key.removesuffix("[]")
        if is_list and not OmegaConf.is_list(value):
            raise InputError(f"{name} must be a list such as {name}=[{lo:g},{hi:g}], got {value!r}")
        for v in value if is_list else [value]:
            check_number(name, v, lo, hi, integer=r.integer, lo_open=r.lo_open, hi_open=r.hi_open)
    for key, choices in CHOICES.items():
        value = OmegaConf.select(cfg, key, default=_MISSING)
        if value is not _MISSING:
            check_choice(key, value, choices)
    if "clip_x0" in cfg.sampler:
        check_clip_x0(cfg.sampler.clip_x0)
    check_device(cfg.device)


# samplers written in Karras et al.'s sigma = s / a, infinite where alpha_bar = 0 (a flow schedule's t = 1)
SIGMA_SAMPLERS = ("sample_euler", "sample_heun", "sample_euler_ancestral")


def check_sampler(sampler: dict, steps: int, spacing: str, prediction: str, schedule) -> None:
    """InputError for a sampler that cannot run on this model as configured: a flow sampler (flow_euler,
    flow_heun, flow_sde) on a model that is not a flow model, a sigma-space sampler or a log-SNR/Karras spacing on
    a schedule that ends at zero SNR (flow models: sigma is infinite at t = 1), and fewer steps than the order of
    a multistep solver. ``sampler``: the sampler node (``_target_`` and options)."""
    name = str(sampler.get("_target_", "")).rsplit(".", 1)[-1]
    short = name.removeprefix("sample_")
    if short.startswith("flow_") and prediction != "flow":
        raise InputError(f"sampler={short} runs flow models (trained with diffusion=flow); this checkpoint predicts "
                         f"{prediction}: use ddim, dpmpp_2m, unipc, heun or euler")
    zero_snr = float(schedule.alphas_cumprod[-1]) == 0.0
    if zero_snr and name in SIGMA_SAMPLERS:
        raise InputError(f"sampler={short} steps in sigma = sqrt((1 - alpha_bar)/alpha_bar), which is infinite at "
                         "this schedule's last timestep (zero terminal SNR, as in flow models): use "
                         + ("flow_euler or flow_heun" if prediction == "flow" else "ddim, dpmpp_2m or unipc"))
    if zero_snr and spacing in ("logsnr", "karras"):
        raise InputError(f"sampler.spacing={spacing} needs a finite log-SNR at the last timestep, and this schedule "
                         "ends at zero SNR (as flow models do): use sampler.spacing=trailing")
    order = sampler.get("order")
    if order is not None and isinstance(steps, int) and steps < order:
        raise InputError(f"sampler.steps={steps} is fewer than sampler.order={order}: a multistep solver of order "
                         f"k needs at least k steps")
