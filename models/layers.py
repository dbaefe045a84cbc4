"""Pieces shared by the U-Net and the DiT: timestep and label embeddings, multi-head attention."""

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps t (B,) -> (B, dim) (Vaswani et al. 2017, Sec. 3.5; as in ADM/DiT)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half); float so integer and fractional t share one path
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2 * half)
    if dim % 2:
        emb = F.pad(emb, (0, 1))  # (B, dim)
    return emb


class TimestepEmbedder(nn.Module):
    """Timestep t -> vector: sinusoid, Linear, SiLU, Linear (DiT Sec. 3.2; ADM's time_embed)."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """(B,) int or float -> (B, hidden_size)."""
        freq = timestep_embedding(t, self.frequency_embedding_size)  # (B, F) float32
        return self.mlp(freq.to(self.mlp[0].weight.dtype))  # (B, hidden_size)


class LabelEmbedder(nn.Module):
    """Class label -> vector; row num_classes is the null label of CFG (Ho & Salimans 2022)."""

    def __init__(self, num_classes: int, hidden_size: int):
        super().__init__()
        self.num_classes = num_classes
        self.embedding_table = nn.Embedding(num_classes + 1, hidden_size)

    def forward(self, cond: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """cond (B,) long in [0, num_classes] (num_classes = null), or None = all null -> (B, hidden_size)."""
        if cond is None:
            cond = torch.full((batch_size,), self.num_classes, device=self.embedding_table.weight.device)
        return self.embedding_table(cond)  # (B, hidden_size)


def attend(qkv: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Multi-head scaled dot-product self-attention (Vaswani et al. 2017, Eq. 1): (B, N, 3C) -> (B, N, C)."""
    B, N, C3 = qkv.shape
    head_dim = C3 // (3 * num_heads)
    # contiguous: a transposed (B, N, 3C) view gives q/k/v a non-unit last stride, which sends
    # scaled_dot_product_attention to its slow math path (measured 25% of a U-Net step on CPU)
    q, k, v = qkv.contiguous().reshape(B, N, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, d)
    out = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, d)
    return out.transpose(1, 2).reshape(B, N, C3 // 3)  # (B, N, C)
