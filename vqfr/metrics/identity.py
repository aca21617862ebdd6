"""Identity metrics from ArcFace embeddings: Deg. (VQFR / GFPGAN papers) and IDS (CodeFormer).

Protocol of TencentARC/VQFR ``metric_paper/calculate_cos_dist.py``: each image is read with
``cv2.imread(path, 0)`` (libpng's grey conversion for a PNG, ``png_gray`` below; libjpeg's own
luma for a JPEG, which the loader decodes from the file: ``FileGray``), resized to 128 x 128 with ``cv2.resize(INTER_LINEAR)`` on uint8, scaled
by (x - 127.5) / 127.5 and fed to ArcFace ResNet-Face-18 in eval mode, each pair as one batch
[gt, restored]. cos = dot / (norm * norm) in numpy float32; Deg = arccos(cos) / pi * 180; pairs
under 1 degree count as "identical" and are left out of the mean. IDS is the cosine itself.

``Deg`` and ``IDS`` built with the same weights on the same device share one network, and inside
a ``MetricCollection`` one batch's embeddings are computed once for both (the per-batch ``cache``).
"""
from __future__ import annotations

import math
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from vqfr.archs.arcface import ResNetArcFace
from vqfr.metrics.base import FileGray, Metric, MetricResult, check_images, ordered_rows
from vqfr.metrics.weights import Weights, metric_state_dict

# libpng's png_set_rgb_to_gray(png, 1, 0.299, 0.587) as OpenCV's PNG decoder calls it for
# IMREAD_GRAYSCALE: coefficients truncated to 1/32768 (29900 * 32768 // 100000 = 9797, ...), blue
# = 32768 - red - green, and the weighted sum shifted right by 15 without rounding. This differs
# from cv2.cvtColor (9798/19235/3735, rounded) on about half the pixels.
_PNG_GRAY_RGB = (9797, 19234, 32768 - 9797 - 19234)
ARCFACE_SIZE = 128


def png_gray(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 B x 3 x H x W RGB -> uint8 B x H x W, bit-exact with ``cv2.imread(png, 0)``."""
    r, g, b = rgb.to(torch.int32).unbind(1)
    red, green, blue = _PNG_GRAY_RGB
    return ((red * r + green * g + blue * b) >> 15).to(torch.uint8)


def official_gray(rgb: torch.Tensor, file_gray: list | None = None) -> torch.Tensor:
    """uint8 B x 3 x H x W RGB -> uint8 B x H x W as ``cv2.imread(path, 0)`` reads each file:
    ``png_gray`` of the pixels, or the file's own grey decode where ``file_gray`` has one."""
    gray = png_gray(rgb)
    for i, decoded in enumerate(file_gray or ()):
        if decoded is not None:
            gray[i] = torch.as_tensor(decoded, device=gray.device)
    return gray


def arcface_input(gray: torch.Tensor) -> torch.Tensor:
    """uint8 B x H x W grey -> float32 B x 1 x 128 x 128 in [-1, 1]: ``cv2.resize(INTER_LINEAR)``
    on the uint8 image (OpenCV's fixed-point rounding matters: ~0.03 deg), then (x-127.5)/127.5."""
    small = np.stack([cv2.resize(img, (ARCFACE_SIZE, ARCFACE_SIZE), interpolation=cv2.INTER_LINEAR)
                      for img in gray.cpu().numpy()])
    x = torch.from_numpy(small).float().unsqueeze(1)
    return (x - 127.5) / 127.5


def cosine_float32(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise ``np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))`` on float32 rows, the
    official ``cosin_metric`` call per pair (same BLAS routines, so the same rounding)."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return np.array([np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)) for x, y in zip(a, b)],
                    dtype=np.float32)


def angle_degrees(cos: np.ndarray) -> np.ndarray:
    """``np.arccos(cos) / math.pi * 180`` in float32. Clipping to [-1, 1] only matters for
    identical images whose float32 cosine rounds above 1, where the official code yields NaN."""
    return (np.arccos(np.clip(cos, -1.0, 1.0)) / math.pi * 180).astype(np.float32)


def load_arcface(weights: Weights = None, assets: Mapping[str, str] | None = None) -> ResNetArcFace:
    """ResNetArcFace loaded strictly from ``resnet18_110.pth`` (``module.`` prefix stripped)."""
    from vqfr.zoo.checkpoint import load_into

    model = ResNetArcFace()
    load_into(model, *metric_state_dict(IdentityEmbedder.asset, weights, assets))
    return model.eval().requires_grad_(False)


class IdentityEmbedder:
    """The ArcFace network plus the official preprocessing; one instance per (weights, device,
    dtype), shared by every identity metric that asks for it through ``shared()``."""

    asset: ClassVar[str] = "arcface-resnet18"
    _instances: ClassVar[weakref.WeakValueDictionary] = weakref.WeakValueDictionary()

    def __init__(self, weights: Weights = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32,
                 assets: Mapping[str, str] | None = None) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.net = load_arcface(weights, assets).to(self.device, dtype)

    @classmethod
    def shared(cls, weights: Weights = None, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32,
               assets: Mapping[str, str] | None = None) -> IdentityEmbedder:
        if isinstance(weights, Mapping):
            source: Any = id(weights)
        elif weights is not None:
            source = str(Path(weights).resolve())
        else:
            source = tuple(sorted((assets or {}).items()))
        key = (source, str(torch.device(device)), dtype)
        embedder = cls._instances.get(key)
        if embedder is None:
            embedder = cls(weights, device, dtype, assets)
            # a state dict given in memory stays referenced, so its id() cannot be reused
            embedder.source = weights if isinstance(weights, Mapping) else source
            cls._instances[key] = embedder
        return embedder

    @torch.inference_mode()
    def embed(self, gray: torch.Tensor) -> np.ndarray:
        """uint8 B x H x W grey -> float32 numpy B x 512 raw embeddings."""
        x = arcface_input(gray).to(self.device, self.dtype)
        return self.net(x).float().cpu().numpy()

    def pair_cosines(self, restored: torch.Tensor, reference: torch.Tensor,
                     cache: dict | None = None, file_gray: FileGray | None = None) -> np.ndarray:
        """Float32 cosine per pair. The whole batch goes through the network at once: in eval
        mode this equals the official per-pair [gt, restored] batches up to float rounding.
        ``file_gray``: the files' own grey decodes (JPEG), used in place of ``png_gray``."""
        key = ("arcface-cosines", id(self))
        if cache is not None and key in cache:
            return cache[key]
        batch = reference.shape[0]
        decoded = [*file_gray.reference, *file_gray.restored] if file_gray else None
        embeddings = self.embed(official_gray(torch.cat([reference, restored]), decoded))
        cos = cosine_float32(embeddings[:batch], embeddings[batch:])
        if cache is not None:
            cache[key] = cos
        return cos


class _IdentityMetric(Metric):
    needs_reference: ClassVar[bool] = True
    asset: ClassVar[str] = IdentityEmbedder.asset

    def __init__(self, weights: Weights = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32,
                 assets: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.embedder = IdentityEmbedder.shared(weights, device, dtype, assets)
        self.add_state("index", torch.zeros(0, dtype=torch.long), reduce="cat")
        self.add_state("values", torch.zeros(0, dtype=torch.float32), reduce="cat")

    def per_pair(self, cos: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def update(self, restored: torch.Tensor, reference: torch.Tensor | None = None,
               index: torch.Tensor | None = None, cache: dict | None = None,
               file_gray: FileGray | None = None) -> None:
        """``cache``: a dict shared by the metrics updated on the same batch (MetricCollection
        passes one), so Deg and IDS compute the embeddings once. ``file_gray``: the images'
        own grey decodes where their files are not PNGs (the runner reads them)."""
        if reference is None:
            raise ValueError(f"{self.name} needs the reference (ground-truth) images")
        if index is None:
            raise ValueError(f"{self.name}: update() needs the global image indices")
        check_images(restored, reference, self.name)
        values = self.per_pair(self.embedder.pair_cosines(restored, reference, cache, file_gray))
        self.index = torch.cat([self.index, index.detach().cpu().long()])
        self.values = torch.cat([self.values, torch.from_numpy(values)])

    def _rows(self) -> tuple[torch.Tensor, torch.Tensor]:
        return ordered_rows(self.index, self.values)


class Deg(_IdentityMetric):
    """Identity angle in degrees between restored and GT ArcFace embeddings (lower is better)."""

    name: ClassVar[str] = "deg"
    lower_is_better: ClassVar[bool] = True
    IDENTICAL_BELOW = 1.0  # degrees; calculate_cos_dist.py: "almost identical to original"

    def __init__(self, weights: Weights = None, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, assets: Mapping[str, str] | None = None,
                 exclude_identical: bool = True) -> None:
        super().__init__(weights, device, dtype, assets)
        self.exclude_identical = exclude_identical

    def per_pair(self, cos: np.ndarray) -> np.ndarray:
        return angle_degrees(cos)

    def compute(self) -> MetricResult:
        index, values = self._rows()
        angles = values.double()
        identical = angles < self.IDENTICAL_BELOW
        kept = angles[~identical]
        mean_all = float(angles.mean()) if len(angles) else float("nan")
        mean_kept = float(kept.mean()) if len(kept) else float("nan")
        return MetricResult(
            value=mean_kept if self.exclude_identical else mean_all,
            per_image=dict(zip(index.tolist(), angles.tolist())),
            extra={"count": len(angles), "identical_count": int(identical.sum()),
                   "mean_excluding_identical": mean_kept, "mean_including_identical": mean_all})

    def options(self) -> dict[str, Any]:
        return {"gray": "cv2.imread(path, 0)", "size": ARCFACE_SIZE,
                "resize": "INTER_LINEAR uint8", "exclude_identical": self.exclude_identical,
                "identical_below_deg": self.IDENTICAL_BELOW}


class IDS(_IdentityMetric):
    """Identity score (CodeFormer): cosine similarity of the ArcFace embeddings (higher is
    better), mean over all pairs."""

    name: ClassVar[str] = "ids"
    lower_is_better: ClassVar[bool] = False

    def per_pair(self, cos: np.ndarray) -> np.ndarray:
        return cos

    def compute(self) -> MetricResult:
        index, values = self._rows()
        cos = values.double()
        return MetricResult(value=float(cos.mean()) if len(cos) else float("nan"),
                            per_image=dict(zip(index.tolist(), cos.tolist())),
                            extra={"count": len(cos)})

    def options(self) -> dict[str, Any]:
        return {"gray": "cv2.imread(path, 0)", "size": ARCFACE_SIZE,
                "resize": "INTER_LINEAR uint8"}
