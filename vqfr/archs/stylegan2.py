"""StyleGAN2 "clean" decoder pieces used by GFPGAN v1.3/v1.4 (no custom CUDA ops).

Parameter names and layout follow TencentARC/GFPGAN ``stylegan2_clean_arch.py`` so the official
checkpoints load with ``strict=True``. The decoder here is the SFT variant GFPGAN uses
(``StyleGAN2GeneratorCSFT``): the U-Net conditions modulate half of the channels after the
upsampling conv of each level.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _upsample2x(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class NormStyleCode(nn.Module):
    """RMS-normalises style codes; first (parameterless) entry of the style MLP."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """Conv whose weight is scaled per sample by an affine map of the style (no bias).

    ``demodulate`` renormalises each output filter (eps 1e-8); ``upsample`` resizes the input
    bilinearly by 2 before the conv, as the clean StyleGAN2 does.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int,
                 demodulate: bool = True, upsample: bool = False, eps: float = 1e-8):
        super().__init__()
        self.out_channels = out_channels
        self.demodulate = demodulate
        self.upsample = upsample
        self.eps = eps
        self.padding = kernel_size // 2
        self.modulation = nn.Linear(num_style_feat, in_channels)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size)
                                   / math.sqrt(in_channels * kernel_size**2))

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        b, c = x.shape[:2]
        weight = self.weight * self.modulation(style).view(b, 1, c, 1, 1)  # b, out, in, k, k
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps).view(b, -1, 1, 1, 1)
        if self.upsample:
            x = _upsample2x(x)
        # one grouped conv applies every sample's own weights
        out = F.conv2d(x.reshape(1, b * c, *x.shape[2:]), weight.reshape(b * self.out_channels, c, *weight.shape[3:]),
                       padding=self.padding, groups=b)
        return out.view(b, self.out_channels, *out.shape[2:])


class StyleConv(nn.Module):
    """Modulated conv, x sqrt(2), + noise_weight * noise, + bias, LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, num_style_feat: int, upsample: bool = False):
        super().__init__()
        self.modulated_conv = ModulatedConv2d(in_channels, out_channels, 3, num_style_feat, upsample=upsample)
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))

    def forward(self, x: Tensor, style: Tensor, noise: Tensor) -> Tensor:
        out = self.modulated_conv(x, style) * 2**0.5
        out = out + self.weight * noise + self.bias
        return F.leaky_relu(out, 0.2)


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) to RGB, plus the bilinearly upsampled previous RGB."""

    def __init__(self, in_channels: int, num_style_feat: int, upsample: bool = True):
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            out = out + (_upsample2x(skip) if self.upsample else skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, num_channels: int, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, num_channels, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.weight.expand(batch, -1, -1, -1)


def stylegan2_channels(channel_multiplier: int = 2, narrow: float = 1.0) -> dict[int, int]:
    """Feature width per resolution of the StyleGAN2 generator."""
    base = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
            256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    return {res: int(ch * narrow) for res, ch in base.items()}


class StyleGAN2DecoderSFT(nn.Module):
    """StyleGAN2 generator with SFT conditions (GFPGAN's ``StyleGAN2GeneratorCSFT``, sft_half=True).

    ``forward`` takes per-layer latents (B x num_latent x num_style_feat; the style MLP is not
    applied, as GFPGAN runs with ``input_is_latent=True``), one (scale, shift) pair per level from
    8 up to out_size, and one noise map per StyleConv (``noise_shapes()`` order; each broadcasts
    over the batch or has B rows). ``stored_noise()`` gives the checkpoint's noise buffers.
    """

    def __init__(self, out_size: int = 512, num_style_feat: int = 512, num_mlp: int = 8,
                 channel_multiplier: int = 2, narrow: float = 1.0):
        super().__init__()
        channels = stylegan2_channels(channel_multiplier, narrow)
        self.log_size = int(math.log2(out_size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.num_latent = self.log_size * 2 - 2

        # unused at inference (input_is_latent=True) but part of the checkpoint
        mlp: list[nn.Module] = [NormStyleCode()]
        for _ in range(num_mlp):
            mlp += [nn.Linear(num_style_feat, num_style_feat), nn.LeakyReLU(0.2)]
        self.style_mlp = nn.Sequential(*mlp)

        self.constant_input = ConstantInput(channels[4], 4)
        self.style_conv1 = StyleConv(channels[4], channels[4], num_style_feat)
        self.to_rgb1 = ToRGB(channels[4], num_style_feat, upsample=False)
        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer, shape in enumerate(self.noise_shapes()):
            self.noises.register_buffer(f"noise{layer}", torch.randn(shape))
        in_channels = channels[4]
        for log_res in range(3, self.log_size + 1):
            out_channels = channels[2**log_res]
            self.style_convs.append(StyleConv(in_channels, out_channels, num_style_feat, upsample=True))
            self.style_convs.append(StyleConv(out_channels, out_channels, num_style_feat))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat))
            in_channels = out_channels

    def noise_shapes(self) -> list[tuple[int, int, int, int]]:
        """Shapes of the per-layer noise maps in layer order: 4, 8, 8, 16, 16, ..., out, out."""
        return [(1, 1, 2 ** ((layer + 5) // 2), 2 ** ((layer + 5) // 2)) for layer in range(self.num_layers)]

    def stored_noise(self) -> list[Tensor]:
        return [getattr(self.noises, f"noise{layer}") for layer in range(self.num_layers)]

    def forward(self, latents: Tensor, conditions: Sequence[tuple[Tensor, Tensor]],
                noise: Sequence[Tensor]) -> Tensor:
        out = self.constant_input(latents.shape[0])
        out = self.style_conv1(out, latents[:, 0], noise[0])
        skip = self.to_rgb1(out, latents[:, 1])
        for level in range(len(self.to_rgbs)):
            scale, shift = conditions[level]
            i = 2 * level + 1
            out = self.style_convs[2 * level](out, latents[:, i], noise[i])
            # SFT on the second half of the channels only (sft_half=True)
            keep, modulated = out.split(out.shape[1] // 2, dim=1)
            out = torch.cat([keep, modulated * scale + shift], dim=1)
            out = self.style_convs[2 * level + 1](out, latents[:, i + 1], noise[i + 1])
            skip = self.to_rgbs[level](out, latents[:, i + 2], skip)
        return skip
