"""Modulated deformable convolution (DCNv2), as the TWMs use it.

``torchvision.ops.deform_conv2d`` is the reference: the official VQFR code calls it, and our
goldens are bit-identical with it. Its CPU kernel, however, samples the columns in one thread,
pixel by pixel, and zero-fills a columns buffer of C*9*H*W floats (1.2 GB for one 512x512 image at
level 1): it took 38 % of a VQFR v1 forward at 512 on 2 cores. :func:`deform_conv2d` computes the
same thing for CPU inference with whole-tensor ops, a band of output rows at a time:

- the sampling position of tap k is ``(row - pad + i) + offset_y`` (the integer part first, then
  the float offset, as torchvision adds them);
- the four bilinear corners are gathered from a copy of the input with a one-pixel zero border,
  every corner index clamped into it, so a corner outside the image reads 0 exactly as
  torchvision's bounds checks give 0 (a position at or beyond -1 / H reads four zeros);
- the column is ``mask * (((w1*v1 + w2*v2) + w3*v3) + w4*v4)``, torchvision's expression in its
  order (no fused multiply-add: ``addcmul_`` would round differently);
- columns are laid out (channel, tap) x pixels as torchvision's, and multiplied by the weight
  flattened the same way, so the matrix product adds in the same order.

The output equals torchvision's bit for bit (``tests/test_deform.py``) and is about 4x faster on
2 CPU cores. CUDA, autograd, half precision and strided/dilated/grouped convolutions go to
torchvision, as does everything inside :func:`torchvision_kernel` (the official code's way, for
benchmarks that compare with it).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import deform_conv2d as torchvision_deform_conv2d

# Elements of one band of sampled columns (C*9*rows*W floats): 4 MB keeps the band's temporaries
# in cache; larger bands measured slower on 2 cores, smaller ones pay per-band overhead.
COLUMN_BAND_ELEMENTS = 1 << 20
# A band has at least this many output pixels: the CPU matrix product takes another path, which
# adds in another order, for products with fewer than 12 columns.
MIN_BAND_PIXELS = 64

_force_torchvision = False


@contextlib.contextmanager
def torchvision_kernel() -> Iterator[None]:
    """Within this block :func:`deform_conv2d` always calls torchvision's kernel."""
    global _force_torchvision
    previous, _force_torchvision = _force_torchvision, True
    try:
        yield
    finally:
        _force_torchvision = previous


def deform_conv2d(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None,
                  padding: int, mask: Tensor) -> Tensor:
    """``torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=padding, mask=mask)``
    with stride 1 and dilation 1."""
    tensors = (x, offset, weight, mask) + ((bias,) if bias is not None else ())
    if (_force_torchvision or x.device.type != "cpu"
            or x.dtype not in (torch.float32, torch.float64)
            or any(t.dtype != x.dtype for t in tensors)
            or (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
            or weight.shape[1] != x.shape[1]):
        return torchvision_deform_conv2d(x, offset, weight, bias, padding=padding, mask=mask)
    return _deform_conv2d_cpu(x, offset, weight, bias, padding, mask)


def _deform_conv2d_cpu(x: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None,
                       padding: int, mask: Tensor) -> Tensor:
    batch, channels, height, width = x.shape
    out_channels, _, kernel_h, kernel_w = weight.shape
    taps = kernel_h * kernel_w
    out_h = height + 2 * padding - kernel_h + 1
    out_w = width + 2 * padding - kernel_w + 1
    groups = offset.shape[1] // (2 * taps)
    if (offset.shape != (batch, 2 * groups * taps, out_h, out_w) or channels % groups
            or mask.shape != (batch, groups * taps, out_h, out_w)):
        return torchvision_deform_conv2d(x, offset, weight, bias, padding=padding, mask=mask)
    group_channels = channels // groups

    offset = offset.reshape(batch, groups, taps, 2, out_h, out_w)
    mask = mask.reshape(batch, groups, taps, out_h, out_w)
    tap_row = torch.arange(kernel_h).repeat_interleave(kernel_w).view(taps, 1, 1)
    tap_col = torch.arange(kernel_w).repeat(kernel_h).view(taps, 1, 1)
    columns_of = (torch.arange(out_w).view(1, 1, -1) - padding + tap_col).to(x.dtype)
    padded_w = width + 2
    bordered = F.pad(x, (1, 1, 1, 1)).reshape(batch, groups, group_channels, -1)
    flat_weight = weight.reshape(out_channels, channels * taps)
    out = torch.empty(batch, out_channels, out_h, out_w, dtype=x.dtype)
    band = max(1, -(-MIN_BAND_PIXELS // out_w), COLUMN_BAND_ELEMENTS // (channels * taps * out_w))

    for b in range(batch):
        for top in range(0, out_h, band):
            bottom = min(out_h, top + band)
            rows_of = (torch.arange(top, bottom).view(1, -1, 1) - padding + tap_row).to(x.dtype)
            y = rows_of + offset[b, :, :, 0, top:bottom]          # groups x taps x rows x out_w
            xs = columns_of + offset[b, :, :, 1, top:bottom]
            y_low, x_low = torch.floor(y), torch.floor(xs)
            dy, dx = y - y_low, xs - x_low
            wy, wx = 1 - dy, 1 - dx
            # Row/column in the bordered copy; anything outside the image lands on the border.
            row_low = (y_low.clamp(-1, height) + 1).long()
            row_high = ((y_low + 1).clamp(-1, height) + 1).long()
            col_low = (x_low.clamp(-1, width) + 1).long()
            col_high = ((x_low + 1).clamp(-1, width) + 1).long()
            source = bordered[b]
            values = None
            for corner_weight, rows, cols in ((wy * wx, row_low, col_low),
                                              (wy * dx, row_low, col_high),
                                              (dy * wx, row_high, col_low),
                                              (dy * dx, row_high, col_high)):
                index = (rows * padded_w + cols).view(groups, 1, -1)
                corner = torch.gather(source, 2, index.expand(groups, group_channels, -1))
                corner = corner.view(groups, group_channels, taps, bottom - top, out_w)
                term = corner.mul_(corner_weight.unsqueeze(1))
                values = term if values is None else values.add_(term)
            columns = values.mul_(mask[b, :, :, top:bottom].unsqueeze(1))
            out[b, :, top:bottom] = (flat_weight @ columns.view(channels * taps, -1)).view(
                out_channels, bottom - top, out_w)
    # torchvision adds a zero bias when none is given (which turns -0.0 into 0.0).
    return out + (0.0 if bias is None else bias.view(1, -1, 1, 1))
