"""Colour conversions shared by the metrics, with the official code's number formats.

The official metric code (BasicSR-style ``bgr2ycbcr(img, y_only=True)`` on a float32 [0, 1]
image) computes the MATLAB BT.601 luma in float64 (``np.dot`` with a Python list promotes),
divides by 255 and casts back to float32; callers then multiply by 255 in float32. Reproducing
those casts matters: NIQE rounds the result to integers and SSIM/PSNR see it directly.
"""
from __future__ import annotations

import torch

# MATLAB rgb2ycbcr, Y row (ITU-R BT.601, studio range 16..235), for R, G, B in [0, 1].
BT601_Y_WEIGHTS = (65.481, 128.553, 24.966)
BT601_Y_OFFSET = 16.0


def u8_to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1] (``img.astype(np.float32) / 255.``)."""
    return images.to(torch.float32) / 255.0


def u8_to_minus1_1(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 -> [-1, 1] as the official FID and LPIPS scripts: x / 255, then
    ``normalize(mean=0.5, std=0.5)``."""
    return (images.to(dtype) / 255.0 - 0.5) / 0.5


def bt601_y(rgb01: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """MATLAB BT.601 Y of float32 RGB in [0, 1] along ``dim``, on the [16, 235] scale, float32.

    Same arithmetic as the official ``bgr2ycbcr(img, y_only=True) * 255``: float64 weighted sum
    in B, G, R order plus 16, /255, cast to float32, then *255 in float32. The channel dimension
    is kept (size 1)."""
    r, g, b = (c.to(torch.float64) for c in rgb01.unbind(dim))
    weight_r, weight_g, weight_b = BT601_Y_WEIGHTS
    y = b * weight_b + g * weight_g + r * weight_r + BT601_Y_OFFSET
    return ((y / 255.0).to(torch.float32) * 255.0).unsqueeze(dim)
