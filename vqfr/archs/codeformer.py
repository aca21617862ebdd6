"""CodeFormer (Zhou et al., "Towards Robust Blind Face Restoration with Codebook Lookup
Transformer", NeurIPS 2022).

A VQGAN encoder, a transformer that predicts codebook indices for the 16x16 latent, the VQGAN
generator decoding the looked-up codes, and controllable feature fusion (fidelity weight w) from
encoder skips into the generator. Names and layout follow sczhou/CodeFormer
``basicsr/archs/codeformer_arch.py`` so the official ``codeformer.pth`` loads strictly; the
defaults are the arguments of ``inference_codeformer.py``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqfr.archs.vqgan import Codebook, VQGANEncoder, VQGANGenerator, res_block


def adaptive_instance_norm(content: Tensor, style: Tensor, eps: float = 1e-5) -> Tensor:
    """Give ``content`` the per-channel mean and std of ``style`` (unbiased variance + eps)."""
    def mean_std(feat: Tensor) -> tuple[Tensor, Tensor]:
        flat = feat.flatten(2)
        return flat.mean(2)[..., None, None], (flat.var(2) + eps).sqrt()[..., None, None]

    content_mean, content_std = mean_std(content)
    style_mean, style_std = mean_std(style)
    return (content - content_mean) / content_std * style_std + style_mean


class TransformerSALayer(nn.Module):
    """Pre-norm self-attention + GELU MLP; the position embedding is added to queries and keys only."""

    def __init__(self, embed_dim: int, nhead: int = 8, dim_mlp: int = 2048):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(embed_dim, nhead)
        self.linear1 = nn.Linear(embed_dim, dim_mlp)
        self.linear2 = nn.Linear(dim_mlp, embed_dim)
        self.norm1 = nn.LayerNorm(embed_dim)  # eps 1e-5 as in the official code
        self.norm2 = nn.LayerNorm(embed_dim)

    def forward(self, tokens: Tensor, pos: Tensor) -> Tensor:
        """tokens: L x B x C (sequence first), pos: L x 1 x C."""
        normed = self.norm1(tokens)
        query_key = normed + pos
        tokens = tokens + self.self_attn(query_key, query_key, normed, need_weights=False)[0]
        return tokens + self.linear2(F.gelu(self.linear1(self.norm2(tokens))))


class FuseSFTBlock(nn.Module):
    """Controllable feature transformation: dec + w * (dec * scale + shift), with scale and shift
    predicted from the concatenated encoder and decoder features."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.encode_enc = res_block(2 * in_channels, out_channels)
        self.scale = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.shift = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.LeakyReLU(0.2),
                                   nn.Conv2d(out_channels, out_channels, 3, padding=1))

    def forward(self, enc_feat: Tensor, dec_feat: Tensor, w: float) -> Tensor:
        enc_feat = self.encode_enc(torch.cat([enc_feat, dec_feat], dim=1))
        return dec_feat + w * (dec_feat * self.scale(enc_feat) + self.shift(enc_feat))


@dataclass
class CodeFormerPass:
    """Everything one encoder + transformer pass yields, and the images for each fidelity weight."""
    outputs: dict[float, Tensor]  # w -> B x 3 x 512 x 512, raw
    logits: Tensor                # B x 256 x codebook_size
    lq_feat: Tensor               # encoder output, B x 256 x 16 x 16
    codes: Tensor                 # B x 256 int64, token = row * 16 + col
    quant_feat: Tensor            # looked-up codebook features (after AdaIN if enabled)


class CodeFormer(nn.Module):
    """CodeFormer. Input B x 3 x 512 x 512 RGB in [-1, 1].

    Fidelity weight w: fusion runs only for w > 0; w = 0 decodes the codebook features alone.

    Grey inputs: the official aligned-face script (``inference_codeformer.py --has_aligned``)
    tests each input with facelib ``is_gray`` (mean over the three channel-pair differences of
    their variance <= threshold, on the uint8 image, threshold 10) and, for grey inputs, replaces
    the restored face by its grey version recoloured with the input's channel statistics (see
    ``official_gray_output``). ``gray_threshold`` mirrors that (default 10 as in the script;
    None disables it). Grey images come back already quantised to uint8 levels, so the usual
    uint8 conversion gives exactly the official pixels; other images come back raw.
    """

    input_size = 512
    latent_hw = 16
    # official fuse_encoder_block / fuse_generator_block: block index whose output is tapped/fused
    encoder_taps: ClassVar[dict[int, int]] = {512: 2, 256: 5, 128: 8, 64: 11, 32: 14}
    generator_taps: ClassVar[dict[int, int]] = {512: 21, 256: 18, 128: 15, 64: 12, 32: 9}
    skip_channels: ClassVar[dict[int, int]] = {512: 64, 256: 128, 128: 128, 64: 256, 32: 256}

    def __init__(self, dim_embd: int = 512, n_head: int = 8, n_layers: int = 9, codebook_size: int = 1024,
                 latent_size: int = 256, connect_list: Sequence[str] = ("32", "64", "128", "256")):
        super().__init__()
        self.connect_list = tuple(str(size) for size in connect_list)
        self.encoder = VQGANEncoder()
        self.quantize = Codebook(codebook_size, 256)
        self.generator = VQGANGenerator()
        self.position_emb = nn.Parameter(torch.zeros(latent_size, dim_embd))
        self.feat_emb = nn.Linear(256, dim_embd)
        self.ft_layers = nn.Sequential(*(TransformerSALayer(dim_embd, n_head, dim_embd * 2) for _ in range(n_layers)))
        self.idx_pred_layer = nn.Sequential(nn.LayerNorm(dim_embd), nn.Linear(dim_embd, codebook_size, bias=False))
        self.fuse_convs_dict = nn.ModuleDict(
            {size: FuseSFTBlock(self.skip_channels[int(size)], self.skip_channels[int(size)])
             for size in self.connect_list})

    # -- stages ---------------------------------------------------------------------------
    def encode(self, x: Tensor) -> tuple[Tensor, dict[int, Tensor]]:
        """lq_feat (B x 256 x 16 x 16) and the encoder skips the fusion uses, keyed by size."""
        taps = {self.encoder_taps[int(size)] for size in self.connect_list}
        skips = {}
        for i, block in enumerate(self.encoder.blocks):
            x = block(x)
            if i in taps:
                skips[x.shape[-1]] = x
        return x, skips

    def predict_logits(self, lq_feat: Tensor) -> Tensor:
        """Code logits, B x (16*16) x codebook_size."""
        tokens = self.feat_emb(lq_feat.flatten(2).permute(2, 0, 1))  # (hw) x B x C
        pos = self.position_emb.unsqueeze(1)
        for layer in self.ft_layers:
            tokens = layer(tokens, pos)
        return self.idx_pred_layer(tokens).permute(1, 0, 2)

    @staticmethod
    def select_codes(logits: Tensor) -> Tensor:
        # the official top-1 of the softmax (not an argmax of the logits), B x (16*16)
        return torch.topk(F.softmax(logits, dim=2), 1, dim=2).indices.squeeze(2)

    def code_features(self, codes: Tensor, lq_feat: Tensor, adain: bool = True) -> Tensor:
        quant_feat = self.quantize.lookup(codes, self.latent_hw, self.latent_hw)
        return adaptive_instance_norm(quant_feat, lq_feat) if adain else quant_feat

    def generate(self, quant_feat: Tensor, skips: dict[int, Tensor], weights: Sequence[float]) -> list[Tensor]:
        """Decode once per fidelity weight; blocks before the first fusion are run once."""
        fuse_after = {self.generator_taps[int(size)]: size for size in self.connect_list}
        first = min(fuse_after)
        shared = quant_feat
        for block in self.generator.blocks[:first]:
            shared = block(shared)
        outputs = []
        for w in weights:
            x = shared
            for i in range(first, len(self.generator.blocks)):
                x = self.generator.blocks[i](x)
                if w > 0 and i in fuse_after:
                    size = fuse_after[i]
                    x = self.fuse_convs_dict[size](skips[int(size)], x, w)
            outputs.append(x)
        return outputs

    # -- entry points ---------------------------------------------------------------------
    def forward_sweep(self, x: Tensor, weights: Sequence[float], adain: bool = True) -> CodeFormerPass:
        """One encoder + transformer pass, decoded for each fidelity weight."""
        self._check_input(x)
        lq_feat, skips = self.encode(x)
        logits = self.predict_logits(lq_feat)
        codes = self.select_codes(logits)
        quant_feat = self.code_features(codes, lq_feat, adain)
        images = self.generate(quant_feat, skips, weights)
        return CodeFormerPass(dict(zip(map(float, weights), images)), logits, lq_feat, codes, quant_feat)

    def forward(self, x: Tensor, w: float = 0.5, adain: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """Official ``forward`` at inference: (image, logits, lq_feat)."""
        result = self.forward_sweep(x, (w,), adain)
        return result.outputs[float(w)], result.logits, result.lq_feat

    def restore_fidelity_sweep(self, x: Tensor, weights: Sequence[float],
                               gray_threshold: float | None = 10.0) -> dict[float, Tensor]:
        """{w: restored B x 3 x 512 x 512} for several fidelity weights at the cost of one encoder
        and transformer pass. Raw, unclamped outputs except for grey inputs (see class doc)."""
        outputs = self.forward_sweep(x, weights).outputs
        if gray_threshold is not None:
            gray = official_is_gray(x, gray_threshold)
            if gray.any():
                outputs = {w: torch.where(gray[:, None, None, None], official_gray_output(y, x), y)
                           for w, y in outputs.items()}
        return outputs

    def restore(self, x: Tensor, fidelity_weight: float = 0.5, gray_threshold: float | None = 10.0) -> Tensor:
        return self.restore_fidelity_sweep(x, (fidelity_weight,), gray_threshold)[float(fidelity_weight)]

    def _check_input(self, x: Tensor) -> None:
        size = self.input_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, size, size):
            raise ValueError(f"CodeFormer takes B x 3 x {size} x {size} aligned faces (its transformer has "
                             f"position embeddings for a 16x16 latent only); got {tuple(x.shape)}. "
                             f"Resize the faces to {size}x{size}.")


def _to_uint8_levels(x: Tensor) -> Tensor:
    """[-1, 1] model-space tensor -> uint8 levels held as floats (basicsr tensor2img, min_max=(-1, 1))."""
    return ((x.clamp(-1, 1) + 1) / 2 * 255).round()


def official_is_gray(x: Tensor, threshold: float = 10.0) -> Tensor:
    """facelib ``is_gray`` on the uint8 image behind each normalised input; B bools."""
    r, g, b = _to_uint8_levels(x.float()).double().unbind(1)
    spread = sum((p - q).flatten(1).var(1, unbiased=False) for p, q in ((r, g), (g, b), (b, r))) / 3
    return spread <= threshold


def official_gray_output(y: Tensor, x: Tensor) -> Tensor:
    """What the official script saves for a grey input ``x`` restored to ``y``, in model space.

    facelib ``add_restored_face(restored, input)``: the uint8 restored face goes grey
    (``bgr2gray``: 0.2989 R + 0.587 G + 0.114 B, float64), then takes each input channel's mean
    and std (``adain_npy``, population variance + 1e-5; if the result leaves [0, 256) the std is
    shrunk so that it fits), and ``cv2.imwrite`` rounds it to uint8. Computed in BGR channel
    order, as the official arg-min/arg-max pick the first channel on ties.
    """
    restored = _to_uint8_levels(y.float()).double().flip(1)
    style = _to_uint8_levels(x.float()).double().flip(1)
    b, g, r = restored.unbind(1)
    gray = (0.2989 * r + 0.5870 * g + 0.1140 * b).unsqueeze(1).expand(-1, 3, -1, -1)

    def mean_std(feat: Tensor) -> tuple[Tensor, Tensor]:
        flat = feat.flatten(2)
        return flat.mean(2), (flat.var(2, unbiased=False) + 1e-5).sqrt()

    style_mean, style_std = mean_std(style)
    gray_mean, gray_std = mean_std(gray)
    normalized = (gray - gray_mean[..., None, None]) / gray_std[..., None, None]
    result = normalized * style_std[..., None, None] + style_mean[..., None, None]
    channel_min, channel_max = result.flatten(2).amin(2), result.flatten(2).amax(2)
    i_min, i_max = channel_min.argmin(1, keepdim=True), channel_max.argmax(1, keepdim=True)
    v_min, v_max = channel_min.gather(1, i_min), channel_max.gather(1, i_max)
    mean_min, mean_max = style_mean.gather(1, i_min), style_mean.gather(1, i_max)
    bit_range = 256  # 8-bit content: the grey of uint8 levels is below 256
    ratio = torch.minimum(mean_min / (mean_min - v_min), (bit_range - 1e-12 - mean_max) / (v_max - mean_max))
    style_std = torch.where((v_max > bit_range) | (v_min < 0), style_std * ratio, style_std)
    result = normalized * style_std[..., None, None] + style_mean[..., None, None]
    levels = result.round().clamp(0, 255)  # cv2.imwrite of a float64 image: saturate_cast to uint8
    return (levels.flip(1) / 127.5 - 1).to(y.dtype)
