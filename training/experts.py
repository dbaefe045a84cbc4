"""Join eDiff-I experts into one checkpoint (Balaji et al. 2022, Sec. 4): K fine-tuned copies of one base model,
each trained only on its own interval of timesteps (``diffusion.t_interval``), become one models.ExpertEnsemble.

The experts are runs of ``train.py <the base's settings> init_from=<base> diffusion.t_interval=[lo,hi]``. Their
intervals must tile [0, T) exactly; they must share the backbone, the schedule, the objective and the data shape.
The result loads with sampling.checkpoint.load_model like any checkpoint, so every sampler and task runs it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from sampling.atomic import atomic_write
from sampling.checkpoint import ENSEMBLE, MAX_EXPERTS
from training.checkpoint_io import CheckpointError, read_training_checkpoint

# settings that must agree between experts: a difference would make the ensemble a different model per interval
_SHARED = (("model",), ("diffusion", "schedule"), ("diffusion", "prediction"), ("data", "image_size"),
           ("data", "channels"), ("data", "num_classes"), ("text",))


def _get(config: dict, keys: tuple[str, ...]):
    for k in keys:
        config = config.get(k) if isinstance(config, dict) else None
    return config


def combine_experts(paths: list[str | Path]) -> dict:
    """One checkpoint dict ({"state_dict", "difflab": {"config"}}) holding the experts at ``paths``, in the order
    of their intervals; CheckpointError (one line) for experts that do not form an ensemble."""
    if not 2 <= len(paths) <= MAX_EXPERTS:
        raise CheckpointError(f"an ensemble needs 2 to {MAX_EXPERTS} experts, got {len(paths)}")
    experts = []
    for path in paths:
        ckpt = read_training_checkpoint(path)
        config = ckpt["difflab"]["config"]
        interval = _get(config, ("diffusion", "t_interval"))
        if not (isinstance(interval, list) and len(interval) == 2):
            raise CheckpointError(f"{path}: not an expert: it was trained on every timestep (no diffusion.t_interval)")
        if _get(config, ("model", "_target_")) == ENSEMBLE:
            raise CheckpointError(f"{path}: is an ensemble already")
        experts.append((tuple(interval), Path(path), ckpt["state_dict"], config))
    experts.sort(key=lambda e: e[0])
    first = experts[0][3]
    for _, path, _, config in experts[1:]:
        for keys in _SHARED:
            if _get(config, keys) != _get(first, keys):
                raise CheckpointError(f"{path}: its {'.'.join(keys)} differs from {experts[0][1]}'s: experts must "
                                      "branch from one base model")
    steps = _get(first, ("diffusion", "schedule", "timesteps"))
    intervals = [e[0] for e in experts]
    tiles = intervals[0][0] == 0 and intervals[-1][1] == steps and all(
        a[1] == b[0] for a, b in zip(intervals, intervals[1:]))
    if not tiles:
        raise CheckpointError(f"the experts' intervals {[list(i) for i in intervals]} must tile [0, {steps}) "
                              "without gaps or overlaps")
    state = {}
    for k, (_, _, expert_state, _) in enumerate(experts):
        for key, value in expert_state.items():
            prefix, _, rest = key.partition(".")
            if prefix in ("net", "ema"):
                state[f"{prefix}.experts.{k}.{rest}"] = value
    config = copy.deepcopy(first)
    config["model"] = {"_target_": ENSEMBLE, "expert": first["model"],
                       "boundaries": [i[1] for i in intervals[:-1]], "num_timesteps": steps}
    config["diffusion"]["t_interval"] = None
    config["experts"] = {"sources": [str(e[1]) for e in experts], "intervals": [list(i) for i in intervals]}
    return {"state_dict": state, "difflab": {"config": config}}


def save_ensemble(ckpt: dict, out: str | Path) -> Path:
    """Write the ensemble checkpoint atomically (a crash leaves no half-written file)."""
    return atomic_write(out, lambda tmp: torch.save(ckpt, tmp))
