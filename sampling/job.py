"""What every sample.py task receives besides its own parameters: a ``Job`` of plain objects.

sample.py builds one from the Hydra config (the boundary); a task is a function ``task(job, **params)``
whose parameters are its own keys in configs/task/<name>.yaml. The job holds the model, the sampler with its
settings, the one ``Guidance`` policy and the run's seed and device, and makes every denoiser a task uses,
so no task builds a guided denoiser or reads a setting any other way.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

from diffusion.denoiser import Denoiser, net_denoiser
from diffusion.guidance import Guidance
from diffusion.samplers import schedule_timesteps
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
    negative_prompt: str | None = None  # a text model's null condition for guidance, in place of the empty caption
    stage2: LoadedModel | None = None  # the cascade's upscaler (sample.py stage2=), run after the base stage
    stage2_aug: int = 250  # its low-resolution noise-augmentation level (DeepFloyd IF's stage II default)
    sigma_max: float | None = None  # karras spacing: where its ramp starts (the sampler's sigma_max setting)
    notes: list[str] = field(default_factory=list)  # lines printed after the outputs are written
    # observer(i, n, x_t, x0_hat) at step i of n of every sampling pass a task runs (the studio's progress bar,
    # preview and cancel button: an exception it raises stops the task between steps)
    observer: Callable | None = None
    _encoded: dict = field(default_factory=dict, repr=False)  # (encoder id, prompt) -> TextCond of batch 1

    def timesteps(self, model: LoadedModel | None = None) -> list[int]:
        """The sampler's full decreasing list of timesteps for ``model`` (default: the job's)."""
        return schedule_timesteps((model or self.model).schedule, self.steps, self.spacing,
                                  sigma_max=self.sigma_max)

    def encode(self, prompt: str, model: LoadedModel | None = None):
        """The TextCond (batch 1, on the job's device) of ``prompt`` under ``model``'s encoder, encoded once."""
        model = model or self.model
        key = (id(model.encoder), prompt)
        if key not in self._encoded:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                self._encoded[key] = model.encoder.encode([prompt]).to(self.device)
            self.notes.extend(f"warning: {w.message}" for w in caught)
        return self._encoded[key]

    def cond(self, value, b: int, model: LoadedModel | None = None):
        """The network's condition over a batch of b for ``value``: a prompt (str) for a text model, a label (int)
        for a label model, or None for the null condition (the empty caption, or the job's negative prompt;
        the null label); None for an unconditional model."""
        model = model or self.model
        if model.encoder is not None:
            prompt = value if value is not None else (self.negative_prompt or "")
            return self.encode(prompt, model).repeat(b)
        return cond_tensor(model, value, b, self.device)

    def denoiser(self, value, b: int, model: LoadedModel | None = None) -> Denoiser:
        """The denoiser of ``model`` (default: the job's) for ``value`` (a prompt, a label, or None for the null
        condition) over a batch of b, guided by the job's policy; unconditional models and the null condition
        itself are never guided."""
        model = model or self.model
        if value is None:
            return net_denoiser(model.net, model.schedule, model.parametrization, self.cond(None, b, model))
        cond, null = self.cond(value, b, model), self.cond(None, b, model)
        return self.guidance.denoiser(model.net, model.schedule, model.parametrization, cond, null)

    def callback(self, n: int, chain: Callable | None = None) -> Callable | None:
        """The per-step callback of a sampling pass of ``n`` steps: ``chain`` (the task's own callback, if any),
        then the job's observer."""
        if self.observer is None:
            return chain

        def step(i, t, x_t, x0_hat):
            if chain is not None:
                chain(i, t, x_t, x0_hat)
            self.observer(i, n, x_t, x0_hat)

        return step

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
    if job.model.cond_kind is None and job.guidance.active:
        raise InputError("this checkpoint is unconditional: guidance needs a class-conditional model")
    return None if label is None else parse_label(label, job.model)


def check_prompt(job: Job, prompt, name: str = "prompt", model: LoadedModel | None = None) -> str | None:
    """``prompt`` checked against ``model`` (default: the job's; None stays None): only text models take one."""
    model = model or job.model
    if prompt is None:
        return None
    if model.encoder is None:
        kind = "label-conditioned: it takes label=<class>" if model.num_classes is not None else "unconditional"
        raise InputError(f"{name}={str(prompt)[:60]!r}: this checkpoint is {kind}, not a prompt")
    if not isinstance(prompt, str):
        raise InputError(f"{name} must be text, got {prompt!r}")
    return prompt


def check_condition(job: Job, label: int | None, prompt: str | None):
    """A task's condition: the prompt of a text model or the label of a label model (None: the null one)."""
    if label is not None and prompt is not None:
        raise InputError("give either label= or prompt=, not both")
    if job.negative_prompt is not None:
        check_prompt(job, job.negative_prompt, "negative_prompt")
    if prompt is not None:
        return check_prompt(job, prompt)
    return check_label(job, label)
