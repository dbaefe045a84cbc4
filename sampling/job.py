"""What every sample.py task receives besides its own parameters: a ``Job`` of plain objects.

sample.py builds one from the Hydra config (the boundary); a task is a function ``task(job, **params)``
whose parameters are its own keys in configs/task/<name>.yaml. The job holds the model, the sampler with its
settings, the one ``Guidance`` policy and the run's seed and device, and makes every denoiser a task uses,
so no task builds a guided denoiser or reads a setting any other way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from diffusion.denoiser import Denoiser
from diffusion.guidance import Guidance
from diffusion.samplers import make_timesteps
from sampling.checkpoint import LoadedModel
from sampling.generate import sample_generators
from sampling.io import InputError, parse_label


@dataclass
class Job:
    """The model, the sampler (a sampler function with its settings bound), its step count and spacing, the
    guidance policy, the seed, the device and the loading choice for other checkpoints (``weights``)."""

    model: LoadedModel
    sampler: Callable
    steps: int
    spacing: str
    guidance: Guidance = field(default_factory=Guidance)
    seed: int = 0
    device: torch.device | str = "cpu"
    weights: str = "ema"
    notes: list[str] = field(default_factory=list)  # lines printed after the outputs are written

    def timesteps(self, model: LoadedModel | None = None) -> list[int]:
        """The sampler's full decreasing list of timesteps for ``model`` (default: the job's)."""
        return make_timesteps((model or self.model).schedule.num_timesteps, self.steps, self.spacing)

    def denoiser(self, label: int | None, b: int, model: LoadedModel | None = None) -> Denoiser:
        """The denoiser of ``model`` (default: the job's) for ``label`` (None: the null label) over a batch of b,
        guided by the job's policy; unconditional models are never guided."""
        model = model or self.model
        cond, null = cond_tensor(model, label, b, self.device), cond_tensor(model, None, b, self.device)
        return self.guidance.denoiser(model.net, model.schedule, model.parametrization, cond, null)

    def generators(self, start: int, count: int, seed: int | None = None) -> list[torch.Generator]:
        """One CPU generator per sample index, from the job's seed (or ``seed``)."""
        return sample_generators(self.seed if seed is None else seed, start, count)


def cond_tensor(model: LoadedModel, label: int | None, b: int, device: torch.device | str = "cpu"
                ) -> torch.Tensor | None:
    """(b,) labels: ``label``, or the null label when None; None for unconditional models."""
    if model.num_classes is None:
        return None
    value = model.num_classes if label is None else parse_label(label, model)
    return torch.full((b,), value, dtype=torch.long, device=device)


def check_label(job: Job, label: int | None) -> int | None:
    """``label`` checked against the job's model (None stays None); guidance needs a conditional model."""
    if job.model.num_classes is None and job.guidance.active:
        raise InputError("this checkpoint is unconditional: guidance needs a class-conditional model")
    return None if label is None else parse_label(label, job.model)
