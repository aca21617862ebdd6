"""VQGAN autoencoder pieces of CodeFormer (Zhou et al., NeurIPS 2022).

Names and layout follow sczhou/CodeFormer ``basicsr/archs/vqgan_arch.py`` (itself adapted from
Unleashing Transformers): the encoder and generator are flat ``blocks`` lists, so the official
checkpoint keys (``encoder.blocks.17.q.weight``, ...) load unchanged.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from vqfr.archs.blocks import AttnBlock, Downsample, ResnetBlock, Upsample, group_norm


def res_block(in_channels: int, out_channels: int | None = None) -> ResnetBlock:
    """CodeFormer's ``ResBlock``: the shared GroupNorm ResNet block, 1x1 skip named ``conv_out``."""
    return ResnetBlock(in_channels, out_channels, shortcut_name="conv_out")


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
                blocks.append(res_block(ch, nf * mult))
                ch = nf * mult
                if res in attn_resolutions:
                    blocks.append(AttnBlock(ch))
            if level != len(ch_mult) - 1:
                blocks.append(Downsample(ch))
                res //= 2
        blocks += [res_block(ch), AttnBlock(ch), res_block(ch), group_norm(ch), nn.Conv2d(ch, emb_dim, 3, 1, 1)]
        self.blocks = nn.ModuleList(blocks)


class VQGANGenerator(nn.Module):
    """Latent -> image (the VQGAN decoder). ``blocks`` is the flat list CodeFormer fuses into."""

    def __init__(self, nf: int = 64, emb_dim: int = 256, ch_mult: Sequence[int] = (1, 2, 2, 4, 4, 8),
                 num_res_blocks: int = 2, img_size: int = 512, attn_resolutions: Sequence[int] = (16,)):
        super().__init__()
        ch = nf * ch_mult[-1]
        res = img_size // 2 ** (len(ch_mult) - 1)
        blocks: list[nn.Module] = [nn.Conv2d(emb_dim, ch, 3, 1, 1), res_block(ch), AttnBlock(ch), res_block(ch)]
        for level in reversed(range(len(ch_mult))):
            for _ in range(num_res_blocks):
                blocks.append(res_block(ch, nf * ch_mult[level]))
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
