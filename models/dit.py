"""Diffusion Transformer with adaLN-Zero blocks (Peebles & Xie 2023) written from scratch."""

import torch
from torch import nn

from models.layers import (
    CrossAttention,
    LabelEmbedder,
    TimestepEmbedder,
    attend,
    check_cond_kind,
    text_parts,
    unpatchify,
)


def sincos_pos_embed_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """Fixed sin-cos embedding of positions (N,) -> (N, dim) (Vaswani et al. 2017, Sec. 3.5; MAE layout)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))  # (dim/2,)
    out = pos.double()[:, None] * omega[None]  # (N, dim/2)
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)  # (N, dim)


def sincos_pos_embed_2d(dim: int, grid_size: int) -> torch.Tensor:
    """Fixed 2D sin-cos embedding of a G x G patch grid -> (G^2, dim), row-major (DiT Sec. 3.2)."""
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")  # (G, G) each
    # Half the channels encode the column, half the row, as in DiT/MAE's get_2d_sincos_pos_embed.
    emb_col = sincos_pos_embed_1d(dim // 2, cols.flatten())  # (G^2, dim/2)
    emb_row = sincos_pos_embed_1d(dim // 2, rows.flatten())  # (G^2, dim/2)
    return torch.cat([emb_col, emb_row], dim=1).float()  # (G^2, dim)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN modulation x * (1 + scale) + shift (DiT Sec. 3.2): x (B, N, D), shift and scale (B, D)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    """Multi-head self-attention over tokens with a fused qkv projection (ViT, Dosovitskiy et al. 2021)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        return self.proj(attend(self.qkv(x), self.num_heads))


class Mlp(nn.Module):
    """Transformer feed-forward block with tanh-approximate GELU (DiT Sec. 3.2)."""

    def __init__(self, dim: int, hidden_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, N, D)."""
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning (DiT Sec. 3.2, Fig. 3); with ``context_dim``, a
    cross-attention layer to the text tokens between self-attention and the MLP (PixArt-alpha Sec. 2.3)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float, context_dim: int | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads)
        if context_dim is not None:
            self.norm_cross = nn.LayerNorm(hidden_size, eps=1e-6)
            self.cross_attn = CrossAttention(hidden_size, context_dim, num_heads)
        else:
            self.cross_attn = None
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor, context: tuple | None = None) -> torch.Tensor:
        """x (B, N, D), c (B, D), optional (tokens (B, L, Dc), mask (B, L)) -> (B, N, D)."""
        mod = self.adaLN_modulation(c).chunk(6, dim=1)  # 6 x (B, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod
        x = x + gate_msa[:, None] * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))  # (B, N, D)
        if self.cross_attn is not None:
            x = x + self.cross_attn(self.norm_cross(x), *context)  # (B, N, D)
        x = x + gate_mlp[:, None] * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))  # (B, N, D)
        return x


class FinalLayer(nn.Module):
    """adaLN then a linear map from each token to its patch's pixels (DiT Sec. 3.2, "Transformer decoder")."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (B, N, D), c (B, D) -> (B, N, p * p * C')."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # 2 x (B, D)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class DiT(nn.Module):
    """Diffusion Transformer (Peebles & Xie 2023, Sec. 3.2): net(x_t, t, cond) -> tensor shaped like x_t."""

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 4,
        hidden_size: int = 1152,
        depth: int = 28,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        num_classes: int | None = 1000,
        learn_sigma: bool = True,
        cond: str = "label",
        text_dim: int = 384,
        text_cross_attention: bool = True,
    ):
        super().__init__()
        check_cond_kind(cond)
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}")
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        if hidden_size % 4:
            raise ValueError(f"hidden_size {hidden_size} must be divisible by 4 for the 2D sin-cos embedding")
        self.input_size = input_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = in_channels * (2 if learn_sigma else 1)
        self.cond = cond
        self.num_classes = num_classes if cond == "label" else None  # a text model ignores the data's classes
        self.grid_size = input_size // patch_size
        text = cond == "text"

        self.x_embedder = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size) if self.num_classes is not None else None
        # text: the pooled vector joins adaLN's conditioning; the tokens feed each block's cross-attention,
        # unless text_cross_attention=False (pooled vector in adaLN only: the DiT paper's conditioning ablation)
        self.text_cross_attention = text and text_cross_attention
        if text:
            self.context_norm = nn.LayerNorm(text_dim)
            self.pooled_embedder = nn.Sequential(nn.Linear(text_dim, hidden_size), nn.SiLU(),
                                                 nn.Linear(hidden_size, hidden_size))
        # Not persistent: it is a function of the config, so checkpoints need not carry it.
        pos_embed = sincos_pos_embed_2d(hidden_size, self.grid_size)[None]  # (1, N, D)
        self.register_buffer("pos_embed", pos_embed, persistent=False)
        context_dim = text_dim if self.text_cross_attention else None
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio, context_dim) for _ in range(depth)])
        self.final_layer = FinalLayer(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """DiT's initialisation (Sec. 3.2, adaLN-Zero): xavier linears, zeroed modulation and output."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        # The patch embedding is a linear map of each flattened patch.
        w = self.x_embedder.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.bias)
        if self.y_embedder is not None:
            nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        # adaLN-Zero: every block starts as the identity and the network outputs exactly zero.
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
            if block.cross_attn is not None:  # starts as the identity too (PixArt-alpha)
                nn.init.zeros_(block.cross_attn.proj.weight)
                nn.init.zeros_(block.cross_attn.proj.bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, G^2, p * p * C') -> image (B, C', G p, G p)."""
        return unpatchify(x, self.grid_size, self.patch_size, self.out_channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """x (B, C, H, W), t (B,) int or float, cond: (B,) labels or None (= null label), or for a text model a
        TextCond (tokens (B, L, Dt), mask (B, L), pooled (B, Dt)) -> (B, C', H, W)."""
        B, _, H, W = x.shape
        if (H, W) != (self.input_size, self.input_size):
            raise ValueError(f"input is {H}x{W} but this DiT was built for input_size {self.input_size}")
        # contiguous: keeps the residual stream in (B, N, D) memory order, so LayerNorm and adds don't copy
        x = self.x_embedder(x).flatten(2).transpose(1, 2).contiguous() + self.pos_embed  # (B, N, D), N = HW/p^2
        c = self.t_embedder(t)  # (B, D)
        context = None
        if self.cond == "text":
            tokens, mask, pooled = text_parts(cond, B)
            dtype = self.context_norm.weight.dtype
            c = c + self.pooled_embedder(pooled.to(dtype))  # (B, D)
            context = (self.context_norm(tokens.to(dtype)), mask) if self.text_cross_attention else None
        elif self.y_embedder is not None:
            c = c + self.y_embedder(cond, B)  # (B, D)
        for block in self.blocks:
            x = block(x, c, context)  # (B, N, D)
        x = self.final_layer(x, c)  # (B, N, p * p * C')
        return self.unpatchify(x)  # (B, C', H, W)
