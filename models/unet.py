"""ADM U-Net (Dhariwal & Nichol 2021, Sec. 3; DDPM Appendix B) written from scratch."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import CrossAttention, LabelEmbedder, TimestepEmbedder, attend, check_cond_kind, text_parts


def group_norm(channels: int, num_groups: int) -> nn.GroupNorm:
    """GroupNorm (Wu & He 2018) with the largest group count <= num_groups that divides channels."""
    groups = min(num_groups, channels)
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters so the residual branch it ends starts as the identity (ADM Sec. 3)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Residual block conditioned on the embedding, by scale-shift norm (ADM Sec. 3) or addition (DDPM)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        dropout: float,
        use_scale_shift_norm: bool,
        num_groups: int,
    ):
        super().__init__()
        self.use_scale_shift_norm = use_scale_shift_norm
        self.in_layers = nn.Sequential(
            group_norm(in_channels, num_groups),
            nn.SiLU(),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
        )
        self.emb_layers = nn.Sequential(
            nn.SiLU(),
            nn.Linear(emb_dim, 2 * out_channels if use_scale_shift_norm else out_channels),
        )
        self.out_norm = group_norm(out_channels, num_groups)
        self.out_layers = nn.Sequential(
            nn.SiLU(),
            nn.Dropout(dropout),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x (B, Cin, H, W), emb (B, E) -> (B, Cout, H, W)."""
        h = self.in_layers(x)  # (B, Cout, H, W)
        e = self.emb_layers(emb)[:, :, None, None]  # (B, 2 Cout or Cout, 1, 1)
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)  # 2 x (B, Cout, 1, 1)
            h = self.out_norm(h) * (1 + scale) + shift  # (B, Cout, H, W)
        else:
            h = self.out_norm(h + e)  # (B, Cout, H, W)
        return self.skip(x) + self.out_layers(h)  # (B, Cout, H, W)


class AttentionBlock(nn.Module):
    """Spatial multi-head self-attention with a residual connection (DDPM Appendix B; ADM Sec. 3)."""

    def __init__(self, channels: int, num_heads: int, num_groups: int):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention width {channels} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm = group_norm(channels, num_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = zero_module(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        B, C, H, W = x.shape
        qkv = self.qkv(self.norm(x)).flatten(2).transpose(1, 2)  # (B, HW, 3C)
        h = attend(qkv, self.num_heads).transpose(1, 2).reshape(B, C, H, W)  # (B, C, H, W)
        return x + self.proj(h)  # (B, C, H, W)


class CrossAttentionBlock(nn.Module):
    """Cross-attention of the feature map to the text tokens with a residual connection (Stable Diffusion's
    U-Net; Imagen Sec. 2.2), starting as the identity."""

    def __init__(self, channels: int, context_dim: int, num_heads: int, num_groups: int):
        super().__init__()
        self.norm = group_norm(channels, num_groups)
        self.attn = CrossAttention(channels, context_dim, num_heads)
        zero_module(self.attn.proj)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W), context (B, L, Dc), mask (B, L) -> (B, C, H, W)."""
        B, C, H, W = x.shape
        h = self.attn(self.norm(x).flatten(2).transpose(1, 2), context, mask)  # (B, HW, C)
        return x + h.transpose(1, 2).reshape(B, C, H, W)


class Downsample(nn.Module):
    """Halve the resolution with a stride-2 3x3 convolution (DDPM Appendix B)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H/2, W/2)."""
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour upsampling then a 3x3 convolution (DDPM Appendix B)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, 2H, 2W)."""
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Level(nn.Module):
    """A residual block optionally followed by self-attention and cross-attention: one step of a U-Net level."""

    def __init__(self, res: ResBlock, attn: AttentionBlock | None, xattn: CrossAttentionBlock | None = None):
        super().__init__()
        self.res = res
        self.attn = attn if attn is not None else nn.Identity()
        self.xattn = xattn  # None registers nothing: label models keep their exact state dict

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: tuple | None = None) -> torch.Tensor:
        """(B, Cin, H, W), (B, E), optional (tokens (B, L, Dc), mask (B, L)) -> (B, Cout, H, W)."""
        h = self.attn(self.res(x, emb))
        return self.xattn(h, *context) if self.xattn is not None else h


class UNet(nn.Module):
    """ADM U-Net denoiser (Dhariwal & Nichol 2021, Sec. 3): net(x_t, t, cond) -> tensor shaped like x_t.

    simple diffusion's U-Net changes (Hoogeboom et al. 2023, Sec. 3.3 and 3.4) are two options: ``num_res_blocks`` as
    one count per level puts the capacity at the low resolutions (its "scaling the architecture", blocks
    weighted toward 16x16), and ``dropout_resolutions`` keeps dropout only in ResBlocks at those sizes (the middle
    block sits at the lowest). At their defaults (an int, None) the network is ADM's, parameter for parameter.
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int | Sequence[int] = 2,
        attention_resolutions: Sequence[int] = (16,),
        image_size: int = 32,
        dropout: float = 0.0,
        num_heads: int = 4,
        num_classes: int | None = None,
        learn_sigma: bool = False,
        use_scale_shift_norm: bool = True,
        num_groups: int = 32,
        cond: str = "label",
        text_dim: int = 384,
        dropout_resolutions: Sequence[int] | None = None,
    ):
        super().__init__()
        check_cond_kind(cond)
        channel_mult = tuple(channel_mult)
        attention_resolutions = tuple(attention_resolutions)
        if isinstance(num_res_blocks, int):
            blocks_per_level = (num_res_blocks,) * len(channel_mult)
        else:
            blocks_per_level = tuple(num_res_blocks)
            if len(blocks_per_level) != len(channel_mult) or not all(
                isinstance(n, int) and n >= 1 for n in blocks_per_level
            ):
                raise ValueError(
                    f"num_res_blocks must be an int or one count >= 1 per level of channel_mult "
                    f"{list(channel_mult)}, got {list(blocks_per_level)}"
                )
        if dropout_resolutions is not None:
            dropout_resolutions = tuple(dropout_resolutions)
        self.factor = 2 ** (len(channel_mult) - 1)
        if image_size % self.factor:
            raise ValueError(
                f"image_size {image_size} is not divisible by {self.factor}, the downsampling factor of "
                f"channel_mult {list(channel_mult)}"
            )
        resolutions = [image_size // 2**level for level in range(len(channel_mult))]
        self.in_channels = in_channels
        self.out_channels = in_channels * (2 if learn_sigma else 1)
        self.cond = cond
        # a text model ignores num_classes (the data config's), so one preset serves both kinds
        self.num_classes = num_classes if cond == "label" else None
        emb_dim = 4 * base_channels
        text = cond == "text"

        self.time_embed = TimestepEmbedder(emb_dim, frequency_embedding_size=base_channels)
        self.label_embed = LabelEmbedder(num_classes, emb_dim) if self.num_classes is not None else None
        if text:  # the pooled vector joins the timestep embedding (Imagen Sec. 2.2); tokens feed cross-attention
            self.context_norm = nn.LayerNorm(text_dim)
            self.pooled_embed = nn.Sequential(nn.Linear(text_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        def xattn(ch: int) -> CrossAttentionBlock | None:
            return CrossAttentionBlock(ch, text_dim, num_heads, num_groups) if text else None

        def res_block(cin: int, cout: int, res: int) -> ResBlock:
            # simple diffusion Sec. 3.4: dropout only where the feature maps are small; None = everywhere (ADM)
            drops = dropout_resolutions is None or res in dropout_resolutions
            return ResBlock(cin, cout, emb_dim, dropout if drops else 0.0, use_scale_shift_norm, num_groups)

        # Sizes no level reaches (8 for a 28x28 input) are ignored, as in ADM; the middle block always attends.
        def level(cin: int, cout: int, res: int) -> Level:
            attends = res in attention_resolutions
            attn = AttentionBlock(cout, num_heads, num_groups) if attends else None
            return Level(res_block(cin, cout, res), attn, xattn(cout) if attends else None)

        # Encoder: every block's output is kept as a skip for the decoder, as in ADM's input_blocks.
        self.input_conv = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        skip_channels = [base_channels]
        ch = base_channels
        self.down = nn.ModuleList()
        for i, mult in enumerate(channel_mult):
            for _ in range(blocks_per_level[i]):
                self.down.append(level(ch, base_channels * mult, resolutions[i]))
                ch = base_channels * mult
                skip_channels.append(ch)
            if i < len(channel_mult) - 1:
                self.down.append(Downsample(ch))
                skip_channels.append(ch)

        # ADM's middle block is res-attention-res whatever attention_resolutions says.
        self.middle = Level(
            res_block(ch, ch, resolutions[-1]),
            AttentionBlock(ch, num_heads, num_groups),
            xattn(ch),
        )
        self.middle_res = res_block(ch, ch, resolutions[-1])

        # Decoder: the level's num_res_blocks + 1 blocks, each consuming one skip, upsampling after the last.
        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(channel_mult))):
            for j in range(blocks_per_level[i] + 1):
                self.up.append(level(ch + skip_channels.pop(), base_channels * mult, resolutions[i]))
                ch = base_channels * mult
                if i > 0 and j == blocks_per_level[i]:
                    self.up.append(Upsample(ch))

        self.out = nn.Sequential(
            group_norm(ch, num_groups),
            nn.SiLU(),
            zero_module(nn.Conv2d(ch, self.out_channels, 3, padding=1)),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """x (B, C, H, W), t (B,) int or float, cond: (B,) labels or None (= null label), or for a text model a
        TextCond (tokens (B, L, Dt), mask (B, L), pooled (B, Dt)) -> (B, C', H, W)."""
        emb, context = self.embed(t, cond, x.shape[0])
        return self.body(x, emb, context)

    def embed(self, t: torch.Tensor, cond, batch_size: int) -> tuple[torch.Tensor, tuple | None]:
        """(the embedding (B, E) of t and the label or pooled text, the text context or None)."""
        emb = self.time_embed(t)  # (B, E)
        context = None
        if self.cond == "text":
            tokens, mask, pooled = text_parts(cond, batch_size)
            emb = emb + self.pooled_embed(pooled.to(self.context_norm.weight.dtype))  # (B, E)
            context = (self.context_norm(tokens.to(self.context_norm.weight.dtype)), mask)  # (B, L, Dt), (B, L)
        elif self.label_embed is not None:
            emb = emb + self.label_embed(cond, batch_size)  # (B, E)
        return emb, context

    def body(self, x: torch.Tensor, emb: torch.Tensor, context: tuple | None) -> torch.Tensor:
        """The encoder, middle and decoder over x (B, Cin, H, W) given the embedding and context -> (B, C', H, W)."""
        _, _, H, W = x.shape
        if H % self.factor or W % self.factor:
            raise ValueError(f"input {H}x{W} is not divisible by the U-Net's downsampling {self.factor}")
        h = self.input_conv(x)  # (B, base, H, W)
        skips = [h]
        for block in self.down:
            h = block(h) if isinstance(block, Downsample) else block(h, emb, context)  # (B, base * mult, Hi, Wi)
            skips.append(h)
        h = self.middle_res(self.middle(h, emb, context), emb)  # (B, base * mult[-1], H / f, W / f)
        for block in self.up:
            if isinstance(block, Upsample):
                h = block(h)  # (B, Ch, 2 Hi, 2 Wi)
            else:
                h = block(torch.cat([h, skips.pop()], dim=1), emb, context)  # (B, base * mult, Hi, Wi)
        return self.out(h)  # (B, C', H, W)


class SuperResUNet(UNet):
    """The cascade's second stage (Ho et al. 2022; Saharia et al. 2022, Imagen's super-resolution U-Nets): a
    U-Net over the noisy high-resolution image concatenated with the upsampled, noise-augmented low-resolution
    image (2C input channels), with the augmentation level s embedded like a timestep and added to the
    embedding (CDM sec. 4.2). ``cond`` is a diffusion.cascade.SRCond(low, aug_t, base condition)."""

    def __init__(
        self,
        low_res: int = 32,
        aug_max: int = 500,
        in_channels: int = 3,
        base_channels: int = 128,
        channel_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int | Sequence[int] = 2,
        attention_resolutions: Sequence[int] = (16,),
        image_size: int = 64,
        dropout: float = 0.0,
        num_heads: int = 4,
        num_classes: int | None = None,
        learn_sigma: bool = False,
        use_scale_shift_norm: bool = True,
        num_groups: int = 32,
        cond: str = "label",
        text_dim: int = 384,
        dropout_resolutions: Sequence[int] | None = None,
    ):
        # every argument named (no **kwargs): the checkpoint loader admits only a constructor's own parameters
        super().__init__(in_channels, base_channels, channel_mult, num_res_blocks, attention_resolutions, image_size,
                         dropout, num_heads, num_classes, learn_sigma, use_scale_shift_norm, num_groups, cond, text_dim,
                         dropout_resolutions)
        if not 1 <= low_res < image_size:
            raise ValueError(f"low_res must be in [1, image_size={image_size}), got {low_res}")
        if aug_max < 0:
            raise ValueError(f"aug_max must be >= 0, got {aug_max}")
        # aug_max: training draws the augmentation level s uniformly from [0, aug_max] (kept with the weights)
        self.low_res, self.aug_max, self.image_size = low_res, aug_max, image_size
        self.input_conv = nn.Conv2d(2 * in_channels, base_channels, 3, padding=1)
        self.aug_embed = TimestepEmbedder(4 * base_channels, frequency_embedding_size=base_channels)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        """x (B, C, H, W), t (B,), cond SRCond(low (B, C, H, W), aug_t (B,), base cond) -> (B, C', H, W)."""
        if not (isinstance(cond, tuple) and hasattr(cond, "low") and hasattr(cond, "aug_t")):
            raise ValueError("a super-resolution network needs cond = SRCond(low, aug_t, cond) "
                             "(diffusion/cascade.py)")
        if cond.low.shape != x.shape:
            raise ValueError(f"low-resolution input {tuple(cond.low.shape)} must be upsampled to {tuple(x.shape)}")
        emb, context = self.embed(t, cond.cond, x.shape[0])
        emb = emb + self.aug_embed(cond.aug_t)  # (B, E)
        return self.body(torch.cat([x, cond.low.to(x.dtype)], dim=1), emb, context)
