"""VQFR v1 (Gu et al., ECCV 2022): VQGAN encoder -> nearest-code quantizer -> texture decoder,
plus a main decoder that warps the texture features onto the input with Texture Warping Modules.

A reimplementation of ``VQFRv1`` from TencentARC/VQFR @ 239c77a7 (``vqfrv1_arch.py``,
``vqganv1_arch.py``, ``quantizer_arch.py``); module names and state-dict order are the official
ones, so ``VQFR_v1-33a1fac5.pth`` (weights under ``params``) loads with ``strict=True``. The
default arguments are ``network_sr`` of ``options/test/VQFR/test_vqfr_v1.yml``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from vqfr.archs.blocks import (
    BilinearResample,
    ResnetBlock,
    WarpingMainDecoder,
    group_norm,
    level_name,
    parse_levels,
)

DEFAULT_ALIGN_OPT = {level_name(2 ** i): {"cond_channels": 32, "cond_downscale_rate": 2 ** i, "deformable_groups": 4}
                     for i in reversed(range(6))}
DEFAULT_QUANTIZER_OPT = {"Level_32": {"type": "L2VectorQuantizerKmeans", "in_dim": 512, "num_code": 1024,
                                      "code_dim": 256, "reservoir_size": 16384, "reestimate_iters": 2000,
                                      "reestimate_maxiters": -1, "warmup_iters": -1}}


def _level_channels(base_channels: int, channel_multipliers: Sequence[int]) -> dict[int, int]:
    return {2 ** i: base_channels * m for i, m in enumerate(channel_multipliers)}


class VQGANEncoderV1(nn.Module):
    """conv_in, then per level (1 -> 32): bilinear down x rate + conv, ResnetBlocks; the coarsest
    level goes through GN -> SiLU -> conv3x3 (``enc_convout_dict``)."""

    def __init__(self, channels: Mapping[int, int], scale_rates: Mapping[int, int], num_blocks: int):
        super().__init__()
        levels = sorted(channels)
        self.conv_in = nn.Conv2d(3, channels[levels[0]], 3, padding=1)
        self.encoder_dict = nn.ModuleDict()
        self.pre_downsample_dict = nn.ModuleDict()
        for previous, level in zip(levels[:1] + levels, levels):
            self.encoder_dict[level_name(level)] = nn.Sequential(
                *[ResnetBlock(channels[level]) for _ in range(num_blocks)])
            self.pre_downsample_dict[level_name(level)] = BilinearResample(
                channels[previous], channels[level], scale_rates[level], "down")
        top = levels[-1]
        self.enc_convout_dict = nn.ModuleDict({level_name(top): nn.Sequential(
            group_norm(channels[top]), nn.SiLU(inplace=True), nn.Conv2d(channels[top], channels[top], 3, padding=1))})

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        for name, blocks in self.encoder_dict.items():
            x = blocks(self.pre_downsample_dict[name](x))
        (convout,) = self.enc_convout_dict.values()
        return convout(x)


class VQGANDecoderV1(nn.Module):
    """Per level (32 -> 1): conv + bilinear up x rate, ResnetBlocks; conv_out = GN -> SiLU -> conv3x3.
    The level features feed the main decoder."""

    def __init__(self, channels: Mapping[int, int], scale_rates: Mapping[int, int], num_blocks: int):
        super().__init__()
        self.levels = levels = sorted(channels, reverse=True)
        self.decoder_dict = nn.ModuleDict()
        self.pre_upsample_dict = nn.ModuleDict()
        for previous, level in zip(levels[:1] + levels, levels):
            self.decoder_dict[level_name(level)] = nn.Sequential(
                *[ResnetBlock(channels[level]) for _ in range(num_blocks)])
            self.pre_upsample_dict[level_name(level)] = BilinearResample(
                channels[previous], channels[level], scale_rates[level], "up")
        self.conv_out = nn.Sequential(group_norm(channels[1]), nn.SiLU(inplace=True),
                                      nn.Conv2d(channels[1], 3, 3, padding=1))

    def features(self, x: Tensor) -> dict[int, Tensor]:
        feats = {}
        for level in self.levels:
            name = level_name(level)
            x = feats[level] = self.decoder_dict[name](self.pre_upsample_dict[name](x))
        return feats


class NearestCodeQuantizer(nn.Module):
    """1x1 conv to ``code_dim``, nearest codebook entry (L2), 1x1 conv back (the official
    ``L2VectorQuantizerKmeans`` at inference; its k-means re-estimation is training-only).
    ``usage`` (non-persistent, as in the official code) counts how often each code was picked in
    eval mode."""

    def __init__(self, in_dim: int, num_code: int, code_dim: int):
        super().__init__()
        self.quant_conv = nn.Conv2d(in_dim, code_dim, 1)
        self.post_quant_conv = nn.Conv2d(code_dim, in_dim, 1)
        self.embedding = nn.Embedding(num_code, code_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / num_code, 1.0 / num_code)
        self.register_buffer("usage", torch.zeros(num_code, dtype=torch.int), persistent=False)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (post-quant feature, code indices B x h x w, z_conv)."""
        z_conv = self.quant_conv(z)
        b, c, h, w = z_conv.shape
        flat = z_conv.permute(0, 2, 3, 1).reshape(-1, c)
        with torch.autocast(flat.device.type, enabled=False):  # pick codes in float32 under autocast
            z32, codebook = flat.float(), self.embedding.weight.float()
            distance = (z32.square().sum(1, keepdim=True) + codebook.square().sum(1)).addmm_(z32, codebook.t(), alpha=-2)
        indices = distance.argmin(1)
        if not self.training:
            self.usage.index_add_(0, indices, torch.ones_like(indices, dtype=self.usage.dtype))  # no host sync
        # The official straight-through z + (e - z): not exactly e in floating point.
        quant = flat + (self.embedding(indices) - flat)
        quant = quant.view(b, h, w, c).permute(0, 3, 1, 2)
        return self.post_quant_conv(quant), indices.view(b, h, w), z_conv

    def codebook_usage(self) -> float:
        """Fraction of the codebook picked at least once since construction (or ``usage.zero_()``)."""
        return (self.usage > 0).float().mean().item()


class LevelQuantizers(nn.Module):
    """The official ``GeneralizedQuantizer``: one quantizer per quantized level."""

    def __init__(self, quantizer_opt: Mapping[str, Mapping]):
        super().__init__()
        self.quantize_dict = nn.ModuleDict()
        for name, opt in quantizer_opt.items():
            if opt["type"] not in ("L2VectorQuantizerKmeans", "L2VectorQuantizer"):
                raise ValueError(f"unsupported v1 quantizer type {opt['type']!r}")
            self.quantize_dict[name] = NearestCodeQuantizer(opt["in_dim"], opt["num_code"], opt["code_dim"])


class MainDecoderV1(WarpingMainDecoder):
    """The v1 main decoder: the warping decoder, then GN -> SiLU -> cat([x, x_lq]) -> conv3x3."""

    def __init__(self, channels: Mapping[int, int], scale_rates: Mapping[int, int], align_opt: Mapping[str, Mapping]):
        levels = sorted(channels, reverse=True)
        opts = [align_opt[level_name(level)] for level in levels]
        for level, opt in zip(levels, opts):
            if opt["cond_downscale_rate"] != level:
                raise ValueError(f"align_opt {level_name(level)}: cond_downscale_rate must be {level}")
        if len({(o["cond_channels"], o["deformable_groups"]) for o in opts}) != 1:
            raise ValueError("align_opt: all levels must share cond_channels and deformable_groups")
        super().__init__(channels, lambda cin, cout: BilinearResample(cin, cout, 2, "up"),
                         cond_channels=opts[0]["cond_channels"], deformable_groups=opts[0]["deformable_groups"],
                         shortcut_name="shortcut_conv", cond_conv=True)
        if any(scale_rates[level] != 2 for level in levels[1:]):
            raise ValueError("the v1 main decoder upsamples by 2 per level")
        self.conv_out_1 = nn.Sequential(group_norm(channels[1]), nn.SiLU(inplace=True))
        self.conv_out = nn.Sequential(nn.Conv2d(channels[1] + 3, 3, 3, padding=1))

    def forward(self, texture_feats: Mapping[int, Tensor], inpfeat: Tensor, x_lq: Tensor,
                twm_disabled: frozenset[int] = frozenset(), offsets: dict[int, Tensor] | None = None) -> Tensor:
        x = super().forward(texture_feats, inpfeat, twm_disabled, offsets)
        return self.conv_out(torch.cat([self.conv_out_1(x), x_lq], dim=1))


class InpFeatConv(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class VQFRv1(nn.Module):
    """VQFR v1. ``restore(x)`` gives the main branch (the paper's result, ``test_which:
    main_branch``); ``branch='texture'`` the VQGAN texture decoder. Input: B x 3 x H x W RGB in
    [-1, 1], H and W multiples of 32. Output: raw, unclamped.

    TWMs sit at all six levels (32, 16, 8, 4, 2, 1). The codebook (``fix_keys``, default
    ``['embedding']``) is frozen (requires_grad=False) as in the official code.
    """

    def __init__(self, base_channels: int = 128, proj_patch_size: int = 32,
                 resolution_scale_rates: Sequence[int] = (1, 2, 2, 2, 2, 2),
                 channel_multipliers: Sequence[int] = (1, 1, 2, 2, 2, 4), encoder_num_blocks: int = 2,
                 decoder_num_blocks: int = 3, quant_level: Sequence[str] = ("Level_32",),
                 inpfeat_extraction_opt: Mapping[str, int] | None = None, align_opt: Mapping | None = None,
                 align_from_patch: int = 32, quantizer_opt: Mapping | None = None,
                 fix_keys: Iterable[str] = ("embedding",)):
        super().__init__()
        channels = _level_channels(base_channels, channel_multipliers)
        top = max(channels)
        if top != proj_patch_size or align_from_patch != top or list(quant_level) != [level_name(top)]:
            raise ValueError(f"supported layout: proj_patch_size = align_from_patch = {top} and quant_level = "
                             f"[{level_name(top)!r}] (the coarsest level)")
        self.patch_size = top
        enc_rates = {2 ** i: r for i, r in enumerate(resolution_scale_rates)}
        dec_rates = {2 ** i: r for i, r in enumerate(reversed(resolution_scale_rates))}
        inpfeat_extraction_opt = inpfeat_extraction_opt or {"in_dim": 3, "out_dim": 32}
        quantizer_opt = quantizer_opt or DEFAULT_QUANTIZER_OPT

        self.inpfeat_extraction = InpFeatConv(**inpfeat_extraction_opt)
        self.encoder = VQGANEncoderV1(channels, enc_rates, encoder_num_blocks)
        self.decoder = VQGANDecoderV1(channels, dec_rates, decoder_num_blocks)
        self.main_decoder = MainDecoderV1(channels, dec_rates, align_opt or DEFAULT_ALIGN_OPT)
        self.quantizer = LevelQuantizers(quantizer_opt)
        self.twm_levels = self.main_decoder.levels
        for name, param in self.named_parameters():
            if any(key in name for key in fix_keys):
                param.requires_grad_(False)

    def _check_input(self, x: Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VQFRv1 expects a B x 3 x H x W tensor, got shape {tuple(x.shape)}")
        if x.shape[-2] % self.patch_size or x.shape[-1] % self.patch_size:
            raise ValueError(f"VQFRv1 needs H and W that are multiples of {self.patch_size}, "
                             f"got {x.shape[-2]}x{x.shape[-1]}")

    def forward(self, x: Tensor, branches: Iterable[str] = ("texture", "main"), twm_disabled: Iterable[int] = (),
                return_offsets: bool = False) -> dict[str, Tensor | dict[int, Tensor]]:
        """One pass computing only what ``branches`` ask for. Keys (official names): ``dec``
        (texture branch), ``main_dec`` (main branch), ``codes`` (B x H/32 x W/32), ``enc_Level_32``
        (encoder output), ``z_conv`` (quant_conv output), ``offsets`` (level -> DCN offsets
        applied, B x 72 x h x w, with ``return_offsets`` and the main branch)."""
        self._check_input(x)
        branches = set(branches)
        if not branches or branches - {"texture", "main"}:
            raise ValueError(f"branches must be a non-empty subset of ('texture', 'main'), got {sorted(branches)}")
        twm_disabled = parse_levels(twm_disabled, self.twm_levels)
        (top_name, quantizer), = self.quantizer.quantize_dict.items()
        enc = self.encoder(x)
        quant, codes, z_conv = quantizer(enc)
        out: dict[str, Tensor | dict[int, Tensor]] = {f"enc_{top_name}": enc, "z_conv": z_conv, "codes": codes}
        feats = self.decoder.features(quant)
        if "texture" in branches:
            out["dec"] = self.decoder.conv_out(feats[1])
        if "main" in branches:
            offsets = {} if return_offsets else None
            out["main_dec"] = self.main_decoder(feats, self.inpfeat_extraction(x), x, twm_disabled, offsets)
            if offsets is not None:
                out["offsets"] = offsets
        return out

    def restore(self, x: Tensor, branch: str = "main", twm_disabled: Iterable[int] = (),
                return_offsets: bool = False) -> Tensor | tuple[Tensor, dict[int, Tensor]]:
        """Restored image (raw output). ``branch``: 'main' (default, the paper's) or 'texture'.
        ``twm_disabled``: TWM levels whose DCN offsets are forced to zero (see
        :class:`vqfr.archs.blocks.TextureWarpingModule`). ``return_offsets``: also return level ->
        DCN offsets (main branch only)."""
        if branch not in ("main", "texture"):
            raise ValueError(f"branch must be 'main' or 'texture', got {branch!r}")
        if return_offsets and branch != "main":
            raise ValueError("offsets exist only on the main branch")
        out = self(x, branches=(branch,), twm_disabled=twm_disabled, return_offsets=return_offsets)
        image = out["main_dec" if branch == "main" else "dec"]
        return (image, out["offsets"]) if return_offsets else image
