"""VQFR v2 (the 2022.10 release): VQGAN v2 encoder, code prediction (LayerNorm + Linear over the
codebook), texture decoder, and a TWM main branch whose output is a residual on the finest
texture feature, scaled by ``fidelity_ratio``.

A reimplementation of ``VQFRv2`` from TencentARC/VQFR @ 239c77a7 (``vqfrv2_arch.py``,
``vqganv2_arch.py``, ``quantizer_arch.py``); module names and state-dict order are the official
ones, so ``VQFR_v2.pth`` (weights under ``params``) loads with ``strict=True``. The default
arguments are ``network_sr`` of ``options/test/VQFR/test_vqfr_v2.yml``.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

from vqfr.archs.blocks import (
    AttnBlock,
    Downsample,
    ResnetBlock,
    Upsample,
    WarpingMainDecoder,
    group_norm,
    parse_levels,
)

DEFAULT_QUANTIZER_OPT = {"type": "L2VectorQuantizer", "num_code": 1024, "code_dim": 256, "spatial_size": [16, 16]}


def _resnet(in_channels: int, out_channels: int) -> ResnetBlock:
    return ResnetBlock(in_channels, out_channels, shortcut_name="residual_func")


def _level_blocks(channels_in: int, channels: int, num_blocks: int, attention: bool) -> list[nn.Module]:
    blocks: list[nn.Module] = []
    for i in range(num_blocks):
        blocks.append(_resnet(channels_in if i == 0 else channels, channels))
        if attention:
            blocks.append(AttnBlock(channels))
    return blocks


def _mid_blocks(channels: int, attention: bool) -> nn.Sequential:
    middle = [AttnBlock(channels)] if attention else []
    return nn.Sequential(_resnet(channels, channels), *middle, _resnet(channels, channels))


class VQGANEncoderV2(nn.Module):
    """conv_in; per level: [Downsample], ResnetBlocks (attention after each at the coarsest level);
    mid blocks; GN -> SiLU -> conv3x3 to ``code_dim``."""

    def __init__(self, base_channels: int, channel_multipliers: Sequence[int], num_blocks: int,
                 use_attention: bool, code_dim: int):
        super().__init__()
        chans = [base_channels * m for m in channel_multipliers]
        last = len(chans) - 1
        self.conv_in = nn.Conv2d(3, chans[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for i, channels in enumerate(chans):
            previous = chans[max(i - 1, 0)]
            down = [Downsample(previous)] if i else []
            self.blocks.append(nn.Sequential(
                *down, *_level_blocks(previous, channels, num_blocks, use_attention and i == last)))
        self.mid_blocks = _mid_blocks(chans[-1], use_attention)
        self.conv_out = nn.Sequential(group_norm(chans[-1]), nn.SiLU(inplace=True),
                                      nn.Conv2d(chans[-1], code_dim, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        for blocks in self.blocks:
            x = blocks(x)
        return self.conv_out(self.mid_blocks(x))


class VQGANDecoderV2(nn.Module):
    """conv_in; mid blocks; per level (coarse to fine): [Upsample], ResnetBlocks (attention at the
    coarsest level); conv_out = GN -> SiLU -> conv3x3. The level features feed the main branch."""

    def __init__(self, base_channels: int, channel_multipliers: Sequence[int], num_blocks: int,
                 use_attention: bool, code_dim: int):
        super().__init__()
        chans = [base_channels * m for m in channel_multipliers]
        last = len(chans) - 1
        self.levels = [2 ** i for i in reversed(range(len(chans)))]
        self.conv_in = nn.Conv2d(code_dim, chans[-1], 3, padding=1)
        self.blocks = nn.ModuleList()  # registered before mid_blocks: the official state-dict order
        self.mid_blocks = _mid_blocks(chans[-1], use_attention)
        for i in reversed(range(len(chans))):
            previous = chans[min(i + 1, last)]
            up = [Upsample(previous)] if i != last else []
            self.blocks.append(nn.Sequential(
                *up, *_level_blocks(previous, chans[i], num_blocks, use_attention and i == last)))
        self.conv_out = nn.Sequential(group_norm(chans[0]), nn.SiLU(inplace=True), nn.Conv2d(chans[0], 3, 3, padding=1))

    def features(self, x: Tensor) -> dict[int, Tensor]:
        x = self.mid_blocks(self.conv_in(x))
        feats = {}
        for level, blocks in zip(self.levels, self.blocks):
            x = feats[level] = blocks(x)
        return feats


class CodebookLookup(nn.Module):
    """The codebook; v2 predicts the indices, so only the lookup runs at inference. ``usage``
    (non-persistent, as in the official code) counts how often each code was picked in eval mode."""

    def __init__(self, num_code: int, code_dim: int, spatial_size: Sequence[int]):
        super().__init__()
        self.spatial_size = tuple(spatial_size)
        self.embedding = nn.Embedding(num_code, code_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / num_code, 1.0 / num_code)
        self.register_buffer("usage", torch.zeros(num_code, dtype=torch.int), persistent=False)

    def get_feature(self, indices: Tensor) -> Tensor:
        """B x h x w indices -> B x code_dim x h x w code features."""
        if not self.training:
            flat = indices.flatten()
            self.usage.index_add_(0, flat, torch.ones_like(flat, dtype=self.usage.dtype))  # no host sync
        return self.embedding(indices).permute(0, 3, 1, 2)

    def codebook_usage(self) -> float:
        """Fraction of the codebook picked at least once since construction (or ``usage.zero_()``)."""
        return (self.usage > 0).float().mean().item()


class VQFRv2(nn.Module):
    """VQFR v2. ``restore(x, fidelity_ratio=r)`` = ``decoder.conv_out(texture_Level_1 + r * main)``:
    r = 0 (the yml / demo setting, and the default here) is the texture branch, r = 1 the official
    ``forward`` default. Input: B x 3 x 512 x W RGB in [-1, 1], W a multiple of 32 (the code
    reshape fixes 16 latent rows). Output: raw, unclamped. TWMs sit at all six levels
    (32, 16, 8, 4, 2, 1)."""

    def __init__(self, base_channels: int = 64, channel_multipliers: Sequence[int] = (1, 2, 2, 4, 4, 8),
                 num_enc_blocks: int = 2, use_enc_attention: bool = True, num_dec_blocks: int = 2,
                 use_dec_attention: bool = True, code_dim: int = 256, inpfeat_dim: int = 32,
                 code_selection_mode: str = "Predict", align_opt: Mapping[str, int] | None = None,
                 quantizer_opt: Mapping | None = None):
        super().__init__()
        align_opt = align_opt or {"cond_channels": 32, "deformable_groups": 4}
        quantizer_opt = dict(quantizer_opt or DEFAULT_QUANTIZER_OPT)
        if code_selection_mode != "Predict" or quantizer_opt.pop("type") != "L2VectorQuantizer":
            raise ValueError("supported v2 layout: code_selection_mode 'Predict' with an 'L2VectorQuantizer' codebook")
        if align_opt["cond_channels"] != inpfeat_dim:
            raise ValueError("align_opt cond_channels must equal inpfeat_dim")
        self.patch_size = 2 ** (len(channel_multipliers) - 1)
        self.encoder = VQGANEncoderV2(base_channels, channel_multipliers, num_enc_blocks, use_enc_attention, code_dim)
        self.feat2index = nn.Sequential(nn.LayerNorm(quantizer_opt["code_dim"]),
                                        nn.Linear(quantizer_opt["code_dim"], quantizer_opt["num_code"]))
        self.decoder = VQGANDecoderV2(base_channels, channel_multipliers, num_dec_blocks, use_dec_attention, code_dim)
        self.main_branch = WarpingMainDecoder(
            {2 ** i: base_channels * m for i, m in enumerate(channel_multipliers)},
            lambda cin, cout: nn.Sequential(nn.UpsamplingNearest2d(scale_factor=2), nn.Conv2d(cin, cout, 3, padding=1)),
            cond_channels=align_opt["cond_channels"], deformable_groups=align_opt["deformable_groups"],
            shortcut_name="residual_func", cond_conv=False)
        self.inpfeat_extraction = nn.Conv2d(3, inpfeat_dim, 3, padding=1)
        self.quantizer = CodebookLookup(**quantizer_opt)
        self.twm_levels = self.main_branch.levels

    def _check_input(self, x: Tensor) -> None:
        rows = self.quantizer.spatial_size[0] * self.patch_size
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VQFRv2 expects a B x 3 x H x W tensor, got shape {tuple(x.shape)}")
        if x.shape[-2] != rows or x.shape[-1] % self.patch_size:
            raise ValueError(f"VQFRv2 needs H = {rows} and W a multiple of {self.patch_size} (its code "
                             f"reshape fixes {self.quantizer.spatial_size[0]} latent rows), "
                             f"got {x.shape[-2]}x{x.shape[-1]}")

    def forward(self, x: Tensor, fidelity_ratios: Iterable[float] = (1.0,), twm_disabled: Iterable[int] = (),
                return_offsets: bool = False) -> dict[str, Tensor | dict]:
        """One encoder/texture pass, one main-branch pass, one ``conv_out`` per ratio. Keys
        (official names): ``texture_dec``, ``main_dec`` (ratio -> image), ``codes`` (B x 16 x W/32),
        ``enc_feat``, ``quant_logit`` (B x HW/1024 x num_code), ``offsets`` (level -> DCN offsets
        applied, B x 72 x h x w, with ``return_offsets``). The main branch runs only if a ratio
        is non-zero or offsets are asked for: at r = 0 the image is the texture image (the
        official conv_out(texture + 0 * main) equals it bit for bit)."""
        self._check_input(x)
        ratios = [float(r) for r in fidelity_ratios]
        twm_disabled = parse_levels(twm_disabled, self.twm_levels)
        enc_feat = self.encoder(x)
        b, _, h, w = enc_feat.shape
        quant_logit = self.feat2index(enc_feat.flatten(2).transpose(1, 2))
        with torch.autocast(x.device.type, enabled=False):  # pick codes in float32 under autocast
            codes = quant_logit.float().argmax(-1).view(b, h, w)
        feats = self.decoder.features(self.quantizer.get_feature(codes))
        texture = self.decoder.conv_out(feats[1])
        out: dict[str, Tensor | dict] = {"enc_feat": enc_feat, "quant_logit": quant_logit, "codes": codes,
                                         "texture_dec": texture, "main_dec": {}}
        if any(ratios) or return_offsets:
            offsets = {} if return_offsets else None
            residual = self.main_branch(feats, self.inpfeat_extraction(x), twm_disabled, offsets)
            if offsets is not None:
                out["offsets"] = offsets
        for r in ratios:
            out["main_dec"][r] = texture if r == 0 else self.decoder.conv_out(feats[1] + r * residual)
        return out

    def restore_fidelity_sweep(self, x: Tensor, ratios: Iterable[float], twm_disabled: Iterable[int] = ()
                               ) -> dict[float, Tensor]:
        """Restored images for several fidelity ratios from one pass (ratio -> raw output)."""
        return self(x, fidelity_ratios=ratios, twm_disabled=twm_disabled)["main_dec"]

    def restore(self, x: Tensor, fidelity_ratio: float = 0.0, twm_disabled: Iterable[int] = (),
                branch: str = "main", return_offsets: bool = False) -> Tensor | tuple[Tensor, dict[int, Tensor]]:
        """Restored image (raw output). ``branch='texture'`` is ``fidelity_ratio=0``.
        ``twm_disabled``: TWM levels whose DCN offsets are forced to zero (see
        :class:`vqfr.archs.blocks.TextureWarpingModule`; no effect at r = 0).
        ``return_offsets``: also return level -> DCN offsets."""
        if branch not in ("main", "texture"):
            raise ValueError(f"branch must be 'main' or 'texture', got {branch!r}")
        ratio = 0.0 if branch == "texture" else float(fidelity_ratio)
        out = self(x, fidelity_ratios=(ratio,), twm_disabled=twm_disabled, return_offsets=return_offsets)
        image = out["main_dec"][ratio]
        return (image, out["offsets"]) if return_offsets else image
