"""GFPGAN v1.3 / v1.4 ("clean" architecture, Wang et al., CVPR 2021).

U-Net encoder-decoder whose decoder features drive a StyleGAN2 decoder through SFT. Names and
layout follow TencentARC/GFPGAN ``gfpganv1_clean_arch.py`` (``GFPGANv1Clean``); the defaults are
the arguments ``GFPGANer`` uses for v1.3 and v1.4, which share one architecture.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqfr.archs.stylegan2 import StyleGAN2DecoderSFT, stylegan2_channels


class ResampleResBlock(nn.Module):
    """conv3x3-LReLU, bilinear resample, conv3x3-LReLU, plus a resampled 1x1-conv skip."""

    def __init__(self, in_channels: int, out_channels: int, scale_factor: float):
        super().__init__()
        self.scale_factor = scale_factor
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def _resample(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=False)

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.conv2(self._resample(F.leaky_relu(self.conv1(x), 0.2))), 0.2)
        return out + self.skip(self._resample(x))


def _sft_branch(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.2),
                         nn.Conv2d(channels, channels, 3, 1, 1))


class GFPGANv1Clean(nn.Module):
    """GFPGAN v1.3/v1.4 generator. Input B x 3 x 512 x 512 RGB in [-1, 1].

    Only the official inference configuration is supported: per-layer latents from
    ``final_linear`` (different_w, input_is_latent), SFT on half of the channels (sft_half).

    Noise: the official ``GFPGANer.enhance`` leaves ``randomize_noise=True``, so every StyleConv
    adds fresh N(0, 1) noise drawn from torch's global generator. ``restore(noise='random',
    seed=s)`` reproduces the official single-image call made right after ``torch.manual_seed(s)``
    for every image, whatever the batch size, the image's position in it and the process it runs
    in. ``noise='stored'`` uses the checkpoint's noise buffers (deterministic, like
    ``randomize_noise=False``). GFPGANer's ``weight`` argument is swallowed and never used, so it
    has no counterpart here.
    """

    def __init__(self, out_size: int = 512, num_style_feat: int = 512, channel_multiplier: int = 2,
                 num_mlp: int = 8, narrow: float = 1.0):
        super().__init__()
        self.out_size = out_size
        self.num_style_feat = num_style_feat
        log_size = int(math.log2(out_size))
        unet = stylegan2_channels(channel_multiplier, narrow * 0.5)  # the U-Net is half as wide

        self.conv_body_first = nn.Conv2d(3, unet[out_size], 1)
        self.conv_body_down = nn.ModuleList(
            ResampleResBlock(unet[2**i], unet[2 ** (i - 1)], 0.5) for i in range(log_size, 2, -1))
        self.final_conv = nn.Conv2d(unet[4], unet[4], 3, 1, 1)
        self.conv_body_up = nn.ModuleList(
            ResampleResBlock(unet[2 ** (i - 1)], unet[2**i], 2) for i in range(3, log_size + 1))
        self.toRGB = nn.ModuleList(nn.Conv2d(unet[2**i], 3, 1) for i in range(3, log_size + 1))
        num_latent = log_size * 2 - 2
        self.final_linear = nn.Linear(unet[4] * 4 * 4, num_latent * num_style_feat)
        self.stylegan_decoder = StyleGAN2DecoderSFT(out_size, num_style_feat, num_mlp, channel_multiplier, narrow)
        self.condition_scale = nn.ModuleList(_sft_branch(unet[2**i]) for i in range(3, log_size + 1))
        self.condition_shift = nn.ModuleList(_sft_branch(unet[2**i]) for i in range(3, log_size + 1))

    def forward(self, x: Tensor, noise: Sequence[Tensor] | None = None,
                return_rgb: bool = False) -> tuple[Tensor, list[Tensor]]:
        """Official ``forward``: returns (image, U-Net toRGB side outputs at 8..out_size, empty
        unless ``return_rgb``). ``noise``: one map per StyleConv (see ``noise_shapes``); None
        uses the stored buffers."""
        self._check_input(x)
        feat = F.leaky_relu(self.conv_body_first(x), 0.2)
        skips = []
        for block in self.conv_body_down:
            feat = block(feat)
            skips.append(feat)
        feat = F.leaky_relu(self.final_conv(feat), 0.2)
        latents = self.final_linear(feat.flatten(1)).view(x.shape[0], -1, self.num_style_feat)

        conditions, rgbs = [], []
        for i, block in enumerate(self.conv_body_up):
            feat = block(feat + skips[-1 - i])
            conditions.append((self.condition_scale[i](feat), self.condition_shift[i](feat)))
            if return_rgb:
                rgbs.append(self.toRGB[i](feat))
        if noise is None:
            noise = self.stylegan_decoder.stored_noise()
        return self.stylegan_decoder(latents, conditions, noise), rgbs

    def noise_shapes(self) -> list[tuple[int, int, int, int]]:
        return self.stylegan_decoder.noise_shapes()

    def official_random_noise(self, seed: int) -> list[Tensor]:
        """The 15 noise maps the official single-image forward draws right after
        ``torch.manual_seed(seed)``: N(0, 1), layer order, shapes 1x1xSxS, default CPU
        generator. Drawn from a private generator, so the global RNG state is untouched."""
        generator = torch.Generator().manual_seed(seed)
        return [torch.randn(shape, generator=generator) for shape in self.noise_shapes()]

    def restore(self, x: Tensor, noise: str = "random", seed: int = 0) -> Tensor:
        """Restored faces, raw and unclamped (B x 3 x 512 x 512). See the class doc for ``noise``."""
        if noise == "stored":
            maps = None
        elif noise == "random":
            # each image gets the draws of its own official call, i.e. the same maps for all
            ref = self.final_linear.weight
            maps = [m.to(device=ref.device, dtype=x.dtype) for m in self.official_random_noise(seed)]
        else:
            raise ValueError(f"GFPGAN noise must be 'random' or 'stored', got {noise!r}")
        return self(x, noise=maps)[0]

    def _check_input(self, x: Tensor) -> None:
        size = self.out_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, size, size):
            raise ValueError(f"GFPGAN takes B x 3 x {size} x {size} aligned faces (its encoder ends in a "
                             f"fixed-size linear layer); got {tuple(x.shape)}. Resize the faces to {size}x{size}.")
