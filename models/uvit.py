"""U-ViT: a ViT whose inputs (time, condition, noisy patches) are all tokens, with U-Net-style long skips between
shallow and deep blocks (Bao et al. 2023, "All are Worth Words: A ViT Backbone for Diffusion Models") written
from scratch after the paper and its official code (baofff/U-ViT, libs/uvit.py and libs/uvit_t2i.py)."""

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import LabelEmbedder, check_cond_kind, text_parts, timestep_embedding, unpatchify


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (ViT; U-ViT Sec. 3 leaves qkv without bias) and an
    optional key mask, so that padded text tokens are never attended to."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = False):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, N, D), key_mask (B, N) bool (True = may be attended to) or None -> (B, N, D)."""
        B, N, D = x.shape
        h = self.num_heads
        # contiguous: q/k/v views with a unit last stride keep scaled_dot_product_attention off its slow path
        q, k, v = self.qkv(x).contiguous().reshape(B, N, 3, h, D // h).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, d)
        mask = key_mask[:, None, None, :] if key_mask is not None else None  # (B, 1, 1, N): broadcast over queries
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))  # (B, N, D)


class Block(nn.Module):
    """Pre-LN transformer block (U-ViT Sec. 3, Fig. 1); an out block (``skip=True``) first fuses the long skip
    by concatenation and a linear layer, the best of the fusions the paper compares (Sec. 3.1, Fig. 2(a))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, skip: bool = False):
        super().__init__()
        self.skip_linear = nn.Linear(2 * dim, dim) if skip else None
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))  # exact GELU, as timm's Mlp

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, key_mask: torch.Tensor | None = None):
        """x (B, N, D), skip (B, N, D) for an out block, key_mask (B, N) bool or None -> (B, N, D)."""
        if self.skip_linear is not None:
            x = self.skip_linear(torch.cat([x, skip], dim=-1))  # (B, N, 2D) -> (B, N, D)
        x = x + self.attn(self.norm1(x), key_mask)  # (B, N, D)
        return x + self.mlp(self.norm2(x))  # (B, N, D)


class UViT(nn.Module):
    """U-ViT (Bao et al. 2023, Sec. 3): net(x_t, t, cond) -> tensor shaped like x_t (2x channels if learn_sigma).

    ``depth`` counts every transformer block and must be odd: depth // 2 in blocks, one mid block and depth // 2
    out blocks, out block j taking the output of in block depth // 2 - 1 - j (the paper's long skip "from block i
    to block depth - i"; the official configs write depth - 1, e.g. depth=12 for the 13-block U-ViT-S).

    Tokens, in order: [label] (label models with classes), time, [text tokens] (text models), image patches.
    The time token is the bare sinusoidal embedding of t (the official default mlp_time_embed=False; Sec. 3.1
    finds a token better than adaptive norm). A text model adds a linear projection of the pooled prompt
    vector to the time token, and appends the prompt's tokens (LayerNorm, Linear) as extra tokens, as U-ViT's
    text-to-image model appends CLIP's (Sec. 4.4); padded tokens are masked out as keys of every attention.
    """

    def __init__(
        self,
        input_size: int = 32,
        patch_size: int = 2,
        in_channels: int = 3,
        hidden_size: int = 512,
        depth: int = 13,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        num_classes: int | None = None,
        learn_sigma: bool = False,
        cond: str = "label",
        text_dim: int = 384,
        qkv_bias: bool = False,
        conv_out: bool = True,
    ):
        super().__init__()
        check_cond_kind(cond)
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}")
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not divisible by num_heads {num_heads}")
        if depth < 1 or depth % 2 == 0:
            raise ValueError(f"depth {depth} must be odd: depth // 2 in blocks, one mid block, depth // 2 out blocks")
        self.input_size = input_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = in_channels * (2 if learn_sigma else 1)
        self.cond = cond
        self.num_classes = num_classes if cond == "label" else None  # a text model ignores the data's classes
        self.hidden_size = hidden_size
        self.grid_size = input_size // patch_size
        text = cond == "text"

        self.patch_embed = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.label_embed = LabelEmbedder(self.num_classes, hidden_size) if self.num_classes is not None else None
        if text:
            self.context_embed = nn.Sequential(nn.LayerNorm(text_dim), nn.Linear(text_dim, hidden_size))
            self.pooled_embed = nn.Linear(text_dim, hidden_size)
        # Extra tokens with a learned position: the time token and, for label models, the label token. Text
        # tokens get none: the encoder's states already carry their positions, and their number is the
        # encoder's max_length, which the model does not fix.
        self.extras = 1 + (self.label_embed is not None)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.extras + self.grid_size**2, hidden_size))
        half = depth // 2
        self.in_blocks = nn.ModuleList([Block(hidden_size, num_heads, mlp_ratio, qkv_bias) for _ in range(half)])
        self.mid_block = Block(hidden_size, num_heads, mlp_ratio, qkv_bias)
        self.out_blocks = nn.ModuleList(
            [Block(hidden_size, num_heads, mlp_ratio, qkv_bias, skip=True) for _ in range(half)]
        )
        self.norm = nn.LayerNorm(hidden_size)
        self.decoder_pred = nn.Linear(hidden_size, patch_size * patch_size * self.out_channels)
        # Sec. 3.1, Fig. 2(d): a 3x3 conv after unpatchifying smooths patch seams; the paper's best option.
        self.conv_out = nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1) if conv_out else nn.Identity()
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The official initialisation: trunc-normal(0.02) linears and position embedding, zero biases, unit
        LayerNorms; the convolutions and the label table keep PyTorch's defaults, as in the official code."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens (B, G^2, p * p * C') -> image (B, C', G p, G p)."""
        return unpatchify(x, self.grid_size, self.patch_size, self.out_channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """x (B, C, H, W), t (B,) int or float, cond: (B,) labels or None (= null label), or for a text model a
        TextCond (tokens (B, L, Dt), mask (B, L), pooled (B, Dt)) -> (B, C', H, W)."""
        B, _, H, W = x.shape
        if (H, W) != (self.input_size, self.input_size):
            raise ValueError(f"input is {H}x{W} but this U-ViT was built for input_size {self.input_size}")
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D), N = HW/p^2
        time = timestep_embedding(t, self.hidden_size).to(x.dtype)  # (B, D)
        key_mask, context = None, None
        if self.cond == "text":
            tokens, mask, pooled = text_parts(cond, B)
            dtype = self.pooled_embed.weight.dtype
            time = time + self.pooled_embed(pooled.to(dtype))  # (B, D)
            context = self.context_embed(tokens.to(dtype))  # (B, L, D)
            # time, text, patches; only padded text tokens are hidden as keys
            keep = torch.ones(B, self.extras, dtype=torch.bool, device=x.device)  # (B, 1)
            key_mask = torch.cat([keep, mask.bool(), keep.new_ones(B, x.shape[1])], dim=1)  # (B, 1 + L + N)
        seq = [time[:, None], x]  # (B, 1, D), (B, N, D)
        if self.label_embed is not None:
            seq.insert(0, self.label_embed(cond, B)[:, None])  # (B, 1, D): label first, as the official code
        x = torch.cat(seq, dim=1) + self.pos_embed  # (B, E + N, D), E = self.extras
        if context is not None:
            x = torch.cat([x[:, : self.extras], context, x[:, self.extras :]], dim=1)  # (B, E + L + N, D)
        skips = []
        for block in self.in_blocks:
            x = block(x, key_mask=key_mask)  # (B, T, D), T = all tokens
            skips.append(x)
        x = self.mid_block(x, key_mask=key_mask)  # (B, T, D)
        for block in self.out_blocks:
            x = block(x, skips.pop(), key_mask)  # (B, T, D): last in, first out
        x = self.decoder_pred(self.norm(x))  # (B, T, p * p * C')
        x = x[:, x.shape[1] - self.grid_size**2 :]  # (B, N, p * p * C'): drop the extra tokens
        return self.conv_out(self.unpatchify(x))  # (B, C', H, W)
