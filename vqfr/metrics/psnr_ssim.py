"""PSNR and SSIM as TencentARC/VQFR ``metric_paper/calculate_psnr_ssim.py`` computes them.

Paper protocol (the script's defaults): images read as float32 in [0, 1]; **mean/std correction
always on** (``--correct_mean_var`` is ``store_true`` with ``default=True``): per channel, twice,
restored = restored - mean + gt_mean, then restored = restored / std * gt_std (population std,
float32, no clipping); RGB channels (``test_y_channel=False``), ``crop_border=0``; PSNR over all
pixels and channels in float64 (``inf`` for identical images); SSIM = mean over channels of the
MATLAB-style SSIM (11x11 Gaussian, sigma 1.5, "valid" region, C1=(0.01*255)^2, C2=(0.03*255)^2);
reported value = arithmetic mean over pairs (one identical pair makes the PSNR mean ``inf``, as
in the official script).

Both metrics start from the same corrected image. ``prepared_pair`` computes it once per batch:
a one-entry cache keyed by the identity (weak references) and version counters of the two input
tensors and the options, so PSNR and SSIM updated from the same decoded batch share the work.
"""
from __future__ import annotations

import math
import weakref
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from vqfr.metrics.base import (Metric, MetricResult, check_images, ordered_rows,
                               require_side)
from vqfr.metrics.color import bt601_y, u8_to_unit_float

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2


def correct_mean_var(restored: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The official per-channel mean/std matching of ``restored`` to ``reference`` (float32
    B x C x H x W in [0, 1]), done twice as the script does, all in float32 as numpy does
    there (torch's float32 reductions differ from numpy's pairwise sums by ~1e-7 relative:
    ~1e-6 dB of PSNR, far below the 1e-4 dB tolerance)."""
    def mean_std(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        var, mean = torch.var_mean(x, dim=(-2, -1), correction=0, keepdim=True)
        return mean, var.sqrt()

    target_mean, target_std = mean_std(reference)
    out = restored
    for _ in range(2):
        out = out - mean_std(out)[0] + target_mean
        out = out / mean_std(out)[1] * target_std
    return out


_cache: dict[str, Any] = {}


def prepared_pair(restored: torch.Tensor, reference: torch.Tensor, correct: bool,
                  y_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(restored, reference) as the official script hands them to calculate_psnr/ssim: float32
    on the [0, 255] scale, mean/var corrected if asked, Y (B x 1 x H x W) or RGB."""
    key = (correct, y_channel, restored._version, reference._version)
    if (_cache.get("key") == key and _cache["restored"]() is restored
            and _cache["reference"]() is reference):
        return _cache["value"]
    x = u8_to_unit_float(restored)
    y = u8_to_unit_float(reference)
    if correct:
        x = correct_mean_var(x, y)
    if y_channel:
        value = bt601_y(x), bt601_y(y)
    else:
        value = x * 255.0, y * 255.0
    _cache.update(key=key, restored=weakref.ref(restored), reference=weakref.ref(reference),
                  value=value)
    return value


def _crop(x: torch.Tensor, border: int) -> torch.Tensor:
    return x[..., border:-border, border:-border] if border else x


def psnr(restored: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR [B] of [0, 255]-scale images, float64 (inf where identical)."""
    mse = (restored.to(torch.float64) - reference.to(torch.float64)).square().flatten(1).mean(1)
    return 20.0 * torch.log10(255.0 / mse.sqrt())


def _gaussian_1d() -> torch.Tensor:
    """cv2.getGaussianKernel(11, 1.5) (computed in float64 for sizes > 7, normalised)."""
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    kernel = torch.exp(-0.5 / (SSIM_SIGMA * SSIM_SIGMA) * x * x)
    return kernel / kernel.sum()


def _ssim_mean(mu1, mu2, xx, yy, xy):
    """Mean of the SSIM map over the last two dims, from the filtered moments (numpy arrays or
    tensors alike)."""
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq, sigma2_sq, sigma12 = xx - mu1_sq, yy - mu2_sq, xy - mu1_mu2
    ssim_map = ((2 * mu1_mu2 + SSIM_C1) * (2 * sigma12 + SSIM_C2)) / (
        (mu1_sq + mu2_sq + SSIM_C1) * (sigma1_sq + sigma2_sq + SSIM_C2))
    return ssim_map.mean(axis=(-2, -1))


def _ssim_maps_cpu(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-map SSIM of N x H x W float64 arrays with OpenCV's separable filter, one map at a
    time so the temporaries stay in cache (~30x faster than torch's float64 convolution)."""
    k = _gaussian_1d().numpy()
    half = SSIM_WINDOW // 2

    def blur(m: np.ndarray) -> np.ndarray:
        return cv2.sepFilter2D(m, -1, k, k)[half:-half, half:-half]

    return np.array([_ssim_mean(blur(a), blur(b), blur(a * a), blur(b * b), blur(a * b))
                     for a, b in zip(x, y)])


def _ssim_maps_torch(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    kernel = _gaussian_1d().to(x.device)
    stack = torch.stack([x, y, x * x, y * y, x * y]).flatten(0, 1).unsqueeze(1)
    stack = F.conv2d(F.conv2d(stack, kernel.view(1, 1, -1, 1)), kernel.view(1, 1, 1, -1))
    return _ssim_mean(*stack.squeeze(1).unflatten(0, (5, x.shape[0])).unbind(0))


def ssim(restored: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM [B] of [0, 255]-scale B x C x H x W images: MATLAB-style SSIM per channel
    ("valid" 11x11 Gaussian filtering in float64), averaged over channels."""
    b, c, h, w = restored.shape
    x = restored.to(torch.float64).reshape(b * c, h, w)
    y = reference.to(torch.float64).reshape(b * c, h, w)
    if x.device.type == "cpu":
        per_map = torch.from_numpy(_ssim_maps_cpu(x.numpy(), y.numpy()))
    else:
        per_map = _ssim_maps_torch(x, y)
    return per_map.view(b, c).mean(1)


class _PairMetric(Metric):
    """Shared options, states and reduction of PSNR and SSIM."""

    lower_is_better: ClassVar[bool] = False
    needs_reference: ClassVar[bool] = True

    def __init__(self, test_y_channel: bool = False, crop_border: int = 0,
                 correct_mean_var: bool = True, device: str | torch.device = "cpu") -> None:
        super().__init__()
        if crop_border < 0:
            raise ValueError(f"crop_border must be >= 0, got {crop_border}")
        self.test_y_channel = bool(test_y_channel)
        self.crop_border = int(crop_border)
        self.correct_mean_var = bool(correct_mean_var)
        self.device = torch.device(device)
        self.add_state("index", torch.zeros(0, dtype=torch.long), reduce="cat")
        self.add_state("values", torch.zeros(0, dtype=torch.float64), reduce="cat")

    # the smallest side left after the crop: SSIM's 11 x 11 window needs one valid position
    min_side: ClassVar[int] = 1
    min_side_why: ClassVar[str] = ""

    def _per_image(self, restored: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def per_image(self, restored: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """Per-pair values [B] (float64) for uint8 RGB batches."""
        check_images(restored, reference, self.name)
        require_side(self.name, *restored.shape[-2:], self.min_side, self.min_side_why,
                     self.crop_border)
        x, y = prepared_pair(restored.to(self.device), reference.to(self.device),
                             self.correct_mean_var, self.test_y_channel)
        return self._per_image(_crop(x, self.crop_border), _crop(y, self.crop_border))

    def update(self, restored: torch.Tensor, reference: torch.Tensor | None = None,
               index: torch.Tensor | None = None) -> None:
        if reference is None:
            raise ValueError(f"{self.name} needs the reference (ground-truth) images")
        if index is None:
            raise ValueError(f"{self.name}: update() needs the global image indices")
        values = self.per_image(restored, reference)
        self.index = torch.cat([self.index, index.detach().cpu().long()])
        self.values = torch.cat([self.values, values.detach().cpu().double()])

    def compute(self) -> MetricResult:
        index, values = ordered_rows(self.index, self.values)
        per_image = dict(zip(index.tolist(), values.tolist()))
        # Arithmetic mean as the official script (sum / len): one inf pair gives inf.
        value = float(values.sum() / len(values)) if len(values) else math.nan
        extra = {"count": len(values), "infinite": int(torch.isinf(values).sum())}
        return MetricResult(value=value, per_image=per_image, extra=extra)

    def options(self) -> dict[str, Any]:
        return {"test_y_channel": self.test_y_channel, "crop_border": self.crop_border,
                "correct_mean_var": self.correct_mean_var}


class PSNR(_PairMetric):
    name: ClassVar[str] = "psnr"

    def _per_image(self, restored: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return psnr(restored, reference)


class SSIM(_PairMetric):
    name: ClassVar[str] = "ssim"
    min_side: ClassVar[int] = 11
    min_side_why: ClassVar[str] = " (its Gaussian window)"

    def _per_image(self, restored: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return ssim(restored, reference)
