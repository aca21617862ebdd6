"""NIQE as TencentARC/VQFR ``metric_paper/calculate_niqe.py`` computes it (``vqfr/metrics/niqe.py``,
BasicSR's port of the MATLAB release), batched.

Protocol: BT.601 Y (float32 arithmetic, see ``vqfr.metrics.color``) rounded to integers; image
cropped to a multiple of 96; two scales (the second a MATLAB bicubic ``imresize(., 0.5)`` with
antialiasing); MSCN = (I - mu) / (sigma + 1) with the 7x7 window of the parameter file and
edge-replicating borders; 96x96 blocks (48x48 at scale 2), no overlap, taken column by column;
18 AGGD features per block and scale; score = Mahalanobis-like distance of the blocks' mean
feature to the pristine model with the averaged covariances (pinv). Lower is better.

Options (recorded in ``options()``):
- ``convert_to``: ``"y"`` (default, the paper: BT.601 Y as above) or ``"gray"``: the luma
  0.299 R + 0.587 G + 0.114 B in float32 on [0, 1], times 255, rounded, as pyiqa's ``niqe``
  (its default ``color_space='yiq'``) and, up to rounding, MATLAB's ``niqe`` (``rgb2gray``,
  weights 0.298936 / 0.587043 / 0.114021: 0.18 % of the public faces' pixels round one level
  apart). With the same parameters, ``gray`` is within 0.09 per image (mean 0.008) of pyiqa's
  values on the 72 public reference images (pyiqa computes in float64); ``y`` is 0.69 away.
- ``mode``: ``"official"`` (default, CPU): the MSCN images are computed with scipy in float32
  exactly as the official code. ``"torch"``: the same float32 MSCN with float64 accumulation
  in torch, on the metric's device (GPU friendly, batched). The float32 matters: sigma =
  sqrt(|E[I^2] - mu^2|) cancels catastrophically in flat regions, and the AGGD shape is an
  argmin on a 0.001 grid, so a float64 MSCN moved a textured image with a flat area by 3.5
  (faces: up to 0.15 per image, 0.013 on a set mean). Everything after the MSCN is shared by both modes and
  vectorised over all blocks of a batch (``vqfr.metrics.niqe_features``): per image within
  6e-4 of the official code (the reference set; most images within 1e-5), and the two modes
  within 1e-7 of each other on CPU (faces, and synthetic flat and textured images; tested).
- ``crop_border``: pixels cut from each edge first (official default 0).

An image with fewer than two blocks of finite features (all flat: a constant or purely linear
image) has no NIQE: the official script stops there with a LinAlgError; here its value is NaN.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from vqfr.errors import VqfrError
from vqfr.metrics.base import (Metric, MetricResult, check_images, ordered_rows, read_npz,
                               require_side)
from vqfr.metrics.color import bt601_y, u8_to_unit_float
from vqfr.metrics.niqe_features import aggd_block_features, imresize_half, split_blocks

BLOCK_SIZE = 96


def load_niqe_params(path: str | Path | None = None,
                     assets: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """``mu_pris_param`` (1, 36), ``cov_pris_param`` (36, 36), ``gaussian_window`` (7, 7)."""
    if path is None:
        from vqfr.zoo import resolve_asset

        path = resolve_asset(NIQE.asset, assets).path
    keys = ("mu_pris_param", "cov_pris_param", "gaussian_window")
    arrays = read_npz(path, "a NIQE parameter file", keys)
    params = {k: np.asarray(arrays[k], dtype=np.float64) for k in keys}
    if params["mu_pris_param"].size != 36 or params["cov_pris_param"].shape != (36, 36):
        raise VqfrError(f"{path}: not a NIQE parameter file (expected a 36-d pristine model, got "
                        f"mu {params['mu_pris_param'].shape}, cov "
                        f"{params['cov_pris_param'].shape})")
    return params


CONVERSIONS = ("y", "gray")
GRAY_WEIGHTS = (0.299, 0.587, 0.114)   # pyiqa's rgb2yiq Y row (MATLAB rgb2gray up to rounding)


def niqe_luma(images: torch.Tensor, convert_to: str = "y") -> torch.Tensor:
    """uint8 RGB B x 3 x H x W -> rounded luma, B x H x W float32: the official BT.601 Y
    (``"y"``), or pyiqa's float32 gray (``"gray"``)."""
    rgb01 = u8_to_unit_float(images)
    if convert_to == "y":
        luma = bt601_y(rgb01).squeeze(1)
    else:
        weights = torch.tensor(GRAY_WEIGHTS, dtype=torch.float32, device=images.device)
        luma = torch.matmul(rgb01.permute(0, 2, 3, 1), weights) * 255.0
    return torch.round(luma)


def _mscn_official(image: np.ndarray, window_1d: np.ndarray) -> np.ndarray:
    """Official float32 MSCN of one H x W image. The official 2D ``scipy.ndimage.convolve``
    (float64 accumulation, float32 output, 'nearest' borders) is replaced by two 1D passes in
    float64 with the window's separable factor: the window is an outer product (to 6e-17) and
    the float32 results are bit-identical on the reference faces, at less than half the cost."""
    from scipy.ndimage import correlate1d

    def blur(x: np.ndarray) -> np.ndarray:
        x = correlate1d(x.astype(np.float64), window_1d, axis=0, mode="nearest")
        return correlate1d(x, window_1d, axis=1, mode="nearest").astype(np.float32)

    mu = blur(image)
    sigma = np.sqrt(np.abs(blur(np.square(image)) - np.square(mu)))
    return (image - mu) / (sigma + 1)


def separable_factor(window: np.ndarray) -> np.ndarray:
    """u with outer(u, u) == window for the (symmetric, normalised) NIQE Gaussian window."""
    factor = window.sum(axis=1) / np.sqrt(window.sum())
    if not np.allclose(np.outer(factor, factor), window, rtol=0, atol=1e-12):
        raise ValueError("the NIQE window is not separable; expected the official 7x7 Gaussian")
    return factor


def _mscn_torch(images: torch.Tensor, window_1d: torch.Tensor) -> torch.Tensor:
    """``_mscn_official`` in torch on any device: the same float32 values and float64
    accumulations, so that flat regions cancel as the official code does (a float64 MSCN there
    gives sigma = 0 where float32 gives rounding noise of ~0.05, which moved a textured image with
    flat areas by 3.5). B x H x W float32 in, float32 out; edge replication as 'nearest'."""
    pad = window_1d.numel() // 2
    column, row = window_1d.view(1, 1, -1, 1), window_1d.view(1, 1, 1, -1)

    def blur(x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x.unsqueeze(1).to(torch.float64), (pad, pad, pad, pad), mode="replicate")
        return F.conv2d(F.conv2d(x, column), row).squeeze(1).to(torch.float32)

    images = images.to(torch.float32)
    mu = blur(images)
    sigma = (blur(images * images) - mu * mu).abs().sqrt()
    return (images - mu) / (sigma + 1)


def niqe_scores(features: torch.Tensor, mu_pris: np.ndarray, cov_pris: np.ndarray) -> list[float]:
    """B x N_blocks x 36 features -> one NIQE score per image (official Eq. 10, numpy float64)."""
    scores = []
    for feats in features.double().cpu().numpy():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # as the official script
            finite = feats[~np.isnan(feats).any(axis=1)]
            if len(finite) < 2:   # (nearly) every block flat: the official pinv fails here
                scores.append(math.nan)
                continue
            mu = np.nanmean(feats, axis=0)
            cov = np.cov(finite, rowvar=False)
            inv = np.linalg.pinv((cov_pris + cov) / 2)
            diff = mu_pris - mu
            scores.append(float(np.squeeze(np.sqrt(np.matmul(np.matmul(diff, inv), diff.T)))))
    return scores


class NIQE(Metric):
    name: ClassVar[str] = "niqe"
    lower_is_better: ClassVar[bool] = True
    needs_reference: ClassVar[bool] = False
    asset: ClassVar[str] = "niqe-params"

    def __init__(self, mode: Literal["official", "torch"] = "official", crop_border: int = 0,
                 convert_to: Literal["y", "gray"] = "y", weights: str | Path | None = None,
                 device: str | torch.device = "cpu",
                 assets: Mapping[str, str] | None = None) -> None:
        super().__init__()
        if mode not in ("official", "torch"):
            raise ValueError(f"niqe mode must be 'official' or 'torch', got {mode!r}")
        if convert_to not in CONVERSIONS:
            raise ValueError(f"niqe convert_to must be one of {', '.join(CONVERSIONS)}, "
                             f"got {convert_to!r}")
        self.mode = mode
        self.convert_to = convert_to
        self.crop_border = int(crop_border)
        self.device = torch.device("cpu") if mode == "official" else torch.device(device)
        params = load_niqe_params(weights, assets)
        self.mu_pris, self.cov_pris = params["mu_pris_param"], params["cov_pris_param"]
        self.window = params["gaussian_window"]
        self.window_1d = separable_factor(self.window)
        self.add_state("index", torch.zeros(0, dtype=torch.long), reduce="cat")
        self.add_state("values", torch.zeros(0, dtype=torch.float64), reduce="cat")

    @torch.inference_mode()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """B x N_blocks x 36 NIQE block features of uint8 RGB images (blocks in official order)."""
        check_images(images, None, self.name)
        height, width = images.shape[-2:]
        b = self.crop_border
        require_side(self.name, height, width, BLOCK_SIZE, " (one block)", b)
        luma = niqe_luma(images.to(self.device), self.convert_to)
        if b:
            luma = luma[:, b:-b, b:-b]
        h, w = luma.shape[-2:]
        luma = luma[:, : h // BLOCK_SIZE * BLOCK_SIZE, : w // BLOCK_SIZE * BLOCK_SIZE]
        per_scale = []
        for scale in (1, 2):
            if self.mode == "official":
                mscn = torch.from_numpy(np.stack([_mscn_official(img, self.window_1d)
                                                  for img in luma.numpy()]))
            else:
                mscn = _mscn_torch(luma, torch.as_tensor(self.window_1d, device=self.device))
            per_scale.append(aggd_block_features(split_blocks(mscn, BLOCK_SIZE // scale)))
            if scale == 1:
                luma = imresize_half(luma / 255.0) * 255.0  # float32 as the official
        return torch.cat(per_scale, dim=-1)

    def per_image(self, images: torch.Tensor) -> list[float]:
        return niqe_scores(self.features(images), self.mu_pris, self.cov_pris)

    def update(self, restored: torch.Tensor, reference: torch.Tensor | None = None,
               index: torch.Tensor | None = None) -> None:
        if index is None:
            raise ValueError("niqe: update() needs the global image indices")
        values = torch.tensor(self.per_image(restored), dtype=torch.float64)
        self.index = torch.cat([self.index, index.detach().cpu().long()])
        self.values = torch.cat([self.values, values])

    def compute(self) -> MetricResult:
        index, values = ordered_rows(self.index, self.values)
        value = float(values.mean()) if len(values) else math.nan
        return MetricResult(value=value, per_image=dict(zip(index.tolist(), values.tolist())),
                            extra={"count": len(values)})

    def options(self) -> dict[str, Any]:
        return {"mode": self.mode, "convert_to": self.convert_to, "crop_border": self.crop_border,
                "block_size": BLOCK_SIZE}
