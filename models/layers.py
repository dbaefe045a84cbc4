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


class CrossAttention(nn.Module):
    """Multi-head attention from query tokens to text tokens (Stable Diffusion's and Imagen's cross-attention):
    padded text tokens are masked out of the softmax, so they change nothing."""

    def __init__(self, dim: int, context_dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"cross-attention width {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, N, D), context (B, L, Dc), mask (B, L) bool (True = attend) -> (B, N, D)."""
        B, N, D = x.shape
        h, d = self.num_heads, D // self.num_heads
        q = self.q(x).reshape(B, N, h, d).transpose(1, 2)  # (B, h, N, d)
        k, v = self.kv(context).reshape(B, -1, 2, h, d).permute(2, 0, 3, 1, 4)  # 2 x (B, h, L, d)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # (B, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


def unpatchify(x: torch.Tensor, grid: int, patch: int, channels: int) -> torch.Tensor:
    """Tokens (B, G^2, p * p * C) of a G x G patch grid -> image (B, C, G p, G p) (DiT's and U-ViT's decoder)."""
    B = x.shape[0]
    x = x.reshape(B, grid, grid, patch, patch, channels)  # (B, G, G, p, p, C)
    x = torch.einsum("bhwpqc->bchpwq", x)  # (B, C, G, p, G, p)
    return x.reshape(B, channels, grid * patch, grid * patch)  # (B, C, H, W)


COND_KINDS = ("label", "text")


def check_cond_kind(cond: str) -> None:
    if cond not in COND_KINDS:
        raise ValueError(f"cond must be one of {COND_KINDS}, got {cond!r}")


def text_parts(cond, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens, mask, pooled) of a text condition (a models.text.TextCond) for a batch of ``batch_size``."""
    if cond is None or not all(hasattr(cond, k) for k in ("tokens", "mask", "pooled")):
        raise ValueError("a text-conditioned network needs cond = TextCond(tokens, mask, pooled); the null "
                         "condition is the encoding of the empty caption")
    if cond.tokens.shape[0] != batch_size:
        raise ValueError(f"text condition has batch {cond.tokens.shape[0]}, input has {batch_size}")
    return cond.tokens, cond.mask, cond.pooled
