"""Building blocks shared by VQFR v1 and v2: GroupNorm ResNet blocks, the VQGAN attention and
resampling blocks (also CodeFormer's VQGAN), the v1 bilinear resampling, the conditioned
modulated deformable convolution (DCNv2), the Texture Warping Module (TWM) and the main
(fidelity) decoder built from them.

Levels are named by their downscale factor relative to the input: level 32 is the 16x16 latent
of a 512x512 face, level 1 is full resolution. Module names follow TencentARC/VQFR so that the
official checkpoints load with ``strict=True``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqfr.archs.deform import deform_conv2d


def level_name(factor: int) -> str:
    """The official module-dict key of a level (``Level_32`` ... ``Level_1``)."""
    return f"Level_{factor}"


def group_norm(channels: int) -> nn.GroupNorm:
    # Every VQFR norm: 32 groups, eps 1e-6 (eps 1e-5 is already visible at ~77 dB).
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


def parse_levels(levels: Iterable[int | str], valid: Iterable[int]) -> frozenset[int]:
    """Normalise a collection of level factors (``(32, 16)``, ``("32",)``), rejecting unknown ones."""
    valid = tuple(valid)
    parsed = frozenset(int(level) for level in levels)
    unknown = sorted(parsed.difference(valid))
    if unknown:
        raise ValueError(f"unknown TWM level(s) {unknown}; this model has TWMs at levels {list(valid)}")
    return parsed


class ResnetBlock(nn.Module):
    """GN -> SiLU -> conv3x3 -> GN -> SiLU -> conv3x3, plus the input (through a 1x1 conv when the
    channel count changes). ``shortcut_name`` is the 1x1 conv's official name: v1 calls it
    ``shortcut_conv``, v2 ``residual_func``."""

    def __init__(self, in_channels: int, out_channels: int | None = None, shortcut_name: str = "shortcut_conv"):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut_name = shortcut_name
        if in_channels != out_channels:
            setattr(self, shortcut_name, nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        shortcut = getattr(self, self.shortcut_name, None)
        return h + (x if shortcut is None else shortcut(x))


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over all positions with scale C^-0.5, residual (the
    VQGAN block of VQFR v2 and CodeFormer: q, k, v, proj_out 1x1 convs)."""

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
        q, k, v = (conv(h_).flatten(2).transpose(1, 2) for conv in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(q, k, v)  # default scale: C^-0.5, as official
        return x + self.proj_out(attended.transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """VQGAN downsampling: zero-pad one row/column at the bottom/right, then a stride-2 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """VQGAN upsampling: nearest x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class BilinearResample(nn.Module):
    """VQFR v1 resampling by an integer ``factor``: 'down' = bilinear resize to size // factor, then
    conv3x3; 'up' = conv3x3, then bilinear resize to size * factor (official order: swapping it
    costs 14 dB). Bilinear with align_corners=False and no antialias, so a x2 down is the mean of
    each 2x2 block and a x32 down the mean of each block's centre 2x2 pixels. Factor 1: identity,
    no conv."""

    def __init__(self, in_channels: int, out_channels: int, factor: int, direction: str):
        super().__init__()
        if direction not in ("up", "down"):
            raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
        self.factor = factor
        self.direction = direction
        if factor != 1:
            self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        if self.factor == 1:
            return x
        if self.direction == "up":
            x = self.conv(x)
            return F.interpolate(x, size=(x.shape[-2] * self.factor, x.shape[-1] * self.factor),
                                 mode="bilinear", align_corners=False)
        x = F.interpolate(x, size=(x.shape[-2] // self.factor, x.shape[-1] // self.factor),
                          mode="bilinear", align_corners=False)
        return self.conv(x)


class ConditionedDeformConv(nn.Module):
    """Modulated deformable 3x3 convolution (DCNv2) whose offsets and mask come from a separate
    conditioning feature (the official ``DCNv2Pack``). ``conv_offset`` gives 3 * groups * 9
    channels: the first two thirds are the offsets, used as they are in torchvision's layout
    (channel 2 * (9 * g + k) is (dy, dx) of tap k in offset group g), the last third is the mask
    logit."""

    def __init__(self, channels: int, deformable_groups: int, kernel_size: int = 3):
        super().__init__()
        self.kernel_size = kernel_size
        self.num_offsets = 2 * deformable_groups * kernel_size * kernel_size
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.conv_offset = nn.Conv2d(channels, 3 * deformable_groups * kernel_size * kernel_size,
                                     kernel_size, padding=kernel_size // 2)
        # Zero-initialised offset conv: a fresh module starts as a plain conv with mask 0.5.
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: Tensor, cond: Tensor, zero_offset: bool = False) -> tuple[Tensor, Tensor]:
        """Returns (output, offsets applied). ``zero_offset``: sample on the regular grid, keeping
        the predicted modulation mask (see :class:`TextureWarpingModule`)."""
        out = self.conv_offset(cond)
        offset, mask = out[:, :self.num_offsets], torch.sigmoid(out[:, self.num_offsets:])
        if zero_offset:
            offset = torch.zeros_like(offset)
        padding = self.kernel_size // 2
        device = x.device.type
        if x.dtype in (torch.float32, torch.float64) and not torch.is_autocast_enabled(device):
            return deform_conv2d(x, offset, self.weight, self.bias, padding=padding, mask=mask), offset
        # Reduced precision: torchvision's kernels have no bfloat16 version and CPU autocast does
        # not cover deform_conv2d, so the DCN runs in float32 (as CUDA autocast would run it).
        with torch.autocast(device, enabled=False):
            y = deform_conv2d(x.float(), offset.float(), self.weight.float(), self.bias.float(),
                              padding=padding, mask=mask.float())
        return y.to(x.dtype), offset


class TextureWarpingModule(nn.Module):
    """TWM: predicts an offset feature from the input-image feature (``cond``, resized to this
    level) and the texture feature, refines it with the upsampled offset feature of the coarser
    level, and warps the texture feature with a deformable conv conditioned on it.

    offset_conv1: cat([cond, x]) -> 1x1 -> GN -> SiLU -> depthwise 7x7 -> GN -> SiLU -> 1x1;
    offset_conv2: cat([that, previous]) -> 3x3 -> GN -> SiLU, the offset feature handed to the
    next finer level (bilinear x2, times 2) and the DCN conditioning.

    The cond is a bilinear resize of the input feature to size // ``cond_downscale_rate``; v1
    (``cond_conv=True``) follows it with a learned 3x3 conv (``downsample``), except at rate 1.

    Disabling the module (``warp=False``) forces the DCN's sampling offsets to zero and changes
    nothing else: the modulation mask is still predicted and applied, the offset feature is still
    computed and passed on to the finer level. The level then applies a modulated, unwarped 3x3
    conv, which isolates the effect of its warping.
    """

    def __init__(self, channels: int, cond_channels: int, cond_downscale_rate: int, deformable_groups: int,
                 previous_offset_channels: int = 0, cond_conv: bool = False):
        super().__init__()
        self.cond_downscale_rate = cond_downscale_rate
        if cond_conv and cond_downscale_rate != 1:
            self.downsample = BilinearResample(cond_channels, cond_channels, cond_downscale_rate, "down")
        self.offset_conv1 = nn.Sequential(
            nn.Conv2d(channels + cond_channels, channels, 1), group_norm(channels), nn.SiLU(inplace=True),
            nn.Conv2d(channels, channels, 7, padding=3, groups=channels), group_norm(channels),
            nn.SiLU(inplace=True), nn.Conv2d(channels, channels, 1))
        self.offset_conv2 = nn.Sequential(
            nn.Conv2d(channels + previous_offset_channels, channels, 3, padding=1), group_norm(channels),
            nn.SiLU(inplace=True))
        self.dcn = ConditionedDeformConv(channels, deformable_groups)

    def condition(self, inpfeat: Tensor) -> Tensor:
        if hasattr(self, "downsample"):
            return self.downsample(inpfeat)
        if self.cond_downscale_rate == 1:
            return inpfeat
        h, w = inpfeat.shape[-2:]
        return F.interpolate(inpfeat, size=(h // self.cond_downscale_rate, w // self.cond_downscale_rate),
                             mode="bilinear", align_corners=False)

    def forward(self, x: Tensor, inpfeat: Tensor, previous_offset: Tensor | None = None,
                warp: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (warped feature, offset feature, DCN offsets applied)."""
        feat = self.offset_conv1(torch.cat([self.condition(inpfeat), x], dim=1))
        if previous_offset is not None:
            feat = torch.cat([feat, previous_offset], dim=1)
        feat = self.offset_conv2(feat)
        warped, offset = self.dcn(x, feat, zero_offset=not warp)
        return warped, feat, offset


class WarpingMainDecoder(nn.Module):
    """The main branch: starting from the warped coarsest texture feature, each finer level
    upsamples the running feature, warps that level's texture feature with its TWM and fuses both
    with ``ResnetBlock(cat([upsampled, warped]))``. Returns the finest-level feature.

    ``channels`` maps level factor -> channels (any order); ``upsample(in, out)`` builds the
    version's x2 upsampling module.
    """

    def __init__(self, channels: Mapping[int, int], upsample: Callable[[int, int], nn.Module],
                 cond_channels: int, deformable_groups: int, shortcut_name: str, cond_conv: bool):
        super().__init__()
        self.levels = tuple(sorted(channels, reverse=True))
        self.decoder_dict = nn.ModuleDict()
        self.pre_upsample_dict = nn.ModuleDict()
        for coarse, fine in zip(self.levels, self.levels[1:]):
            self.decoder_dict[level_name(fine)] = ResnetBlock(2 * channels[fine], channels[fine], shortcut_name)
            self.pre_upsample_dict[level_name(fine)] = upsample(channels[coarse], channels[fine])
        self.align_func_dict = nn.ModuleDict()
        for coarse, level in zip((None,) + self.levels, self.levels):
            self.align_func_dict[level_name(level)] = TextureWarpingModule(
                channels[level], cond_channels, level, deformable_groups,
                0 if coarse is None else channels[coarse], cond_conv)

    def forward(self, texture_feats: Mapping[int, Tensor], inpfeat: Tensor,
                twm_disabled: frozenset[int] = frozenset(), offsets: dict[int, Tensor] | None = None) -> Tensor:
        """``texture_feats``: level -> texture decoder feature. ``offsets``, if given, receives
        level -> DCN offsets applied (B x 2*groups*9 x h x w, torchvision layout)."""
        x = feat = None
        for level in self.levels:
            name = level_name(level)
            previous = None
            if feat is not None:
                previous = F.interpolate(feat, scale_factor=2, mode="bilinear", align_corners=False) * 2
            warped, feat, offset = self.align_func_dict[name](
                texture_feats[level], inpfeat, previous, warp=level not in twm_disabled)
            if offsets is not None:
                offsets[level] = offset
            if x is None:
                x = warped
            else:
                x = self.decoder_dict[name](torch.cat([self.pre_upsample_dict[name](x), warped], dim=1))
        return x
