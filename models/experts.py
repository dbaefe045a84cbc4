"""eDiff-I's ensemble of expert denoisers (Balaji et al. 2022, Sec. 4): K copies of one backbone, each fine-tuned
on its own interval of timesteps, behind the backbone's own call net(x_t, t, cond)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# what the rest of the code reads off a backbone; the ensemble answers with its experts' (identical) values
_SHARED = ("in_channels", "out_channels", "cond", "num_classes", "image_size", "input_size", "patch_size",
           "low_res", "aug_max")


def check_boundaries(boundaries: Sequence[int], num_timesteps: int) -> list[int]:
    """The boundaries between the experts' intervals as a list: strictly increasing integers in (0, T)."""
    b = list(boundaries)
    if not b or not all(isinstance(v, int) and not isinstance(v, bool) for v in b):
        raise ValueError(f"boundaries must be a non-empty list of integer timesteps, got {boundaries!r}")
    if not all(0 < v < num_timesteps for v in b) or any(u >= v for u, v in zip(b, b[1:])):
        raise ValueError(f"boundaries must increase strictly inside (0, {num_timesteps}), got {b}")
    return b


def select(cond, index: torch.Tensor, batch_size: int):
    """The rows ``index`` of a batched condition: a tensor of batch ``batch_size``, a (named) tuple of them such as
    TextCond or SRCond, or None; anything else (not batched) is passed unchanged."""
    if cond is None:
        return None
    if torch.is_tensor(cond):
        return cond[index] if cond.ndim and cond.shape[0] == batch_size else cond
    if isinstance(cond, tuple):
        parts = [select(c, index, batch_size) for c in cond]
        return type(cond)(*parts) if hasattr(cond, "_fields") else tuple(parts)
    return cond


class ExpertEnsemble(nn.Module):
    """Routes each sample of a batch to the expert that owns its timestep: expert k owns
    boundaries[k-1] <= t < boundaries[k] (with boundaries[-1] = 0 and boundaries[K-1] = T), so every t, integer or
    fractional, has exactly one expert. Samplers and editing tasks call it exactly as they call one backbone."""

    def __init__(self, experts: Sequence[nn.Module], boundaries: Sequence[int], num_timesteps: int = 1000):
        super().__init__()
        self.boundaries = check_boundaries(boundaries, num_timesteps)
        if len(experts) != len(self.boundaries) + 1:
            raise ValueError(f"{len(self.boundaries)} boundaries need {len(self.boundaries) + 1} experts, "
                             f"got {len(experts)}")
        self.num_timesteps = num_timesteps
        self.experts = nn.ModuleList(experts)
        for name in _SHARED:
            values = {repr(getattr(e, name, None)) for e in experts}
            if len(values) > 1:
                raise ValueError(f"the experts differ in {name}: {sorted(values)}")
            if hasattr(experts[0], name):
                setattr(self, name, getattr(experts[0], name))

    def expert_index(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) index of the expert owning each timestep of t (B,)."""
        edges = torch.tensor(self.boundaries, dtype=torch.float64, device=t.device)
        return torch.bucketize(t.to(torch.float64), edges, right=True)  # t == boundary goes to the upper expert

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """x (B, C, H, W), t (B,), cond as the experts take it -> (B, C', H, W)."""
        B = x.shape[0]
        owner = self.expert_index(t)  # (B,)
        first = int(owner[0])
        if bool((owner == first).all()):  # sampling: one t for the whole batch, so one expert and no copies
            return self.experts[first](x, t, cond)
        out = None
        for k in owner.unique().tolist():
            index = (owner == k).nonzero().squeeze(1)  # (Bk,)
            y = self.experts[k](x[index], t[index], select(cond, index, B))  # (Bk, C', H, W)
            if out is None:
                out = y.new_empty((B, *y.shape[1:]))
            out[index] = y
        return out
