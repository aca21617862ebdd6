"""VQGAN autoencoder pieces of CodeFormer (Zhou et al., NeurIPS 2022).

Names and layout follow sczhou/CodeFormer ``basicsr/archs/vqgan_arch.py`` (itself adapted from
Unleashing Transformers): the encoder and generator are flat ``blocks`` lists, so the official
checkpoint keys (``encoder.blocks.17.q.weight``, ...) load unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResBlock(nn.Module):
    """Pre-activation residual block: (GN, swish, conv3x3) x 2, 1x1 conv on the skip if widths differ."""

    def __init__(self, in_channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.conv_out = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(F.silu(self.norm1(x)))
        out = self.conv2(F.silu(self.norm2(out)))
        return out + (x if self.conv_out is None else self.conv_out(x))


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over all positions, scaled by channels**-0.5."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        h_ = self.norm(x)
        q, k, v = (proj(h_).flatten(2).transpose(1, 2) for proj in (self.q, self.k, self.v))  # b, hw, c
        attended = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj_out(attended.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding one row/column at the bottom/right only."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 2, 0)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2, then 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class VQGANEncoder(nn.Module):
    """Image -> latent (emb_dim x img_size / 2**(len(ch_mult)-1)). ``blocks`` is the flat list
    CodeFormer indexes to tap skip features."""

    def __init__(self, in_channels: int = 3, nf: int = 64, emb_dim: int = 256,
                 ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8), num_res_blocks: int = 2,
                 resolution: int = 512, attn_resolutions: Sequence[int] = (16,)):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(in_channels, nf, 3, 1, 1)]
        res, ch = resolution, nf
        for level, mult in enumerate(ch_mult):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(ch, nf * mult))
                ch = nf * mult
                if res in attn_resolutions:
                    blocks.append(AttnBlock(ch))
            if level != len(ch_mult) - 1:
                blocks.append(Downsample(ch))
                res //= 2
        blocks += [ResBlock(ch), AttnBlock(ch), ResBlock(ch), group_norm(ch), nn.Conv2d(ch, emb_dim, 3, 1, 1)]
        self.blocks = nn.ModuleList(blocks)


class VQGANGenerator(nn.Module):
    """Latent -> image (the VQGAN decoder). ``blocks`` is the flat list CodeFormer fuses into."""

    def __init__(self, nf: int = 64, emb_dim: int = 256, ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8),
                 num_res_blocks: int = 2, img_size: int = 512, attn_resolutions: Sequence[int] = (16,)):
        super().__init__()
        ch = nf * ch_mult[-1]
        res = img_size // 2 ** (len(ch_mult) - 1)
        blocks: list[nn.Module] = [nn.Conv2d(emb_dim, ch, 3, 1, 1), ResBlock(ch), AttnBlock(ch), ResBlock(ch)]
        for level in reversed(range(len(ch_mult))):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(ch, nf * ch_mult[level]))
                ch = nf * ch_mult[level]
                if res in attn_resolutions:
                    blocks.append(AttnBlock(ch))
            if level != 0:
                blocks.append(Upsample(ch))
                res *= 2
        blocks += [group_norm(ch), nn.Conv2d(ch, 3, 3, 1, 1)]
        self.blocks = nn.ModuleList(blocks)


class Codebook(nn.Module):
    """The VQGAN codebook (official ``VectorQuantizer``; only the lookup is needed at inference)."""

    def __init__(self, codebook_size: int = 1024, emb_dim: int = 256):
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, emb_dim)

    def lookup(self, codes: Tensor, height: int, width: int) -> Tensor:
        """codes B x (height*width), row-major tokens -> B x emb_dim x height x width."""
        feat = self.embedding(codes)  # exact rows, as the official one-hot matmul gives
        return feat.view(codes.shape[0], height, width, -1).permute(0, 3, 1, 2).contiguous()
