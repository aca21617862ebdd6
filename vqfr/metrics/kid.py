"""KID (Kernel Inception Distance), an extra metric beside FID: unbiased at any N, with its own
standard error (``vqfr.metrics.mmd``).

Same features as FID (pool3 of the FID Inception, the same preprocessing; inside a run they are
computed once for both) and the same states. KID compares feature *rows*, so its reference is a
set of images: ``gt`` (default: the dataset's own ground truth, paired image by image) or a
folder; a statistics file (FID's FFHQ default) has no rows and is refused.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from vqfr.errors import VqfrError
from vqfr.metrics.base import MetricResult
from vqfr.metrics.fid import FID
from vqfr.metrics.mmd import kid
from vqfr.metrics.weights import Weights


class KID(FID):
    name: ClassVar[str] = "kid"
    lower_is_better: ClassVar[bool] = True
    needs_reference: ClassVar[bool] = True   # the default reference is the ground truth

    @classmethod
    def required_assets(cls, options: dict[str, Any]) -> tuple[str, ...]:
        return (cls.asset,)             # never FID's statistics file

    def __init__(self, reference: str | Path | None = "gt", weights: Weights = None,
                 device: str | torch.device = "cpu", assets: Mapping[str, str] | None = None,
                 batch_size: int = 16, model: torch.nn.Module | None = None) -> None:
        reference = "gt" if reference is None else reference
        if reference != "gt" and not Path(reference).is_dir():
            raise VqfrError(f"KID reference {reference}: expected 'gt' or a folder of images "
                            "(KID compares feature rows; a statistics file has none)")
        super().__init__(reference, weights, device, assets, batch_size, model)

    def compute(self) -> MetricResult:
        features = self.ordered_features()
        reference = self.reference_features()
        extra: dict[str, Any] = {"count": len(features), "reference_count": len(reference)}
        if min(len(features), len(reference)) < 3:     # the jackknife leaves two out of three
            warnings.warn(f"kid needs at least 3 images on each side, got {len(features)} "
                          f"restored and {len(reference)} reference: no value", stacklevel=2)
            return MetricResult(value=math.nan, extra=extra)
        estimate = kid(features, reference, paired=self.reference == "gt")
        extra["standard_error"] = estimate.standard_error
        return MetricResult(value=estimate.value, per_image=None, extra=extra)

    def options(self) -> dict[str, Any]:
        return {"reference": str(self.reference),
                "input": "[-1,1] bilinear 299 (align_corners=False)", "features": "pool3",
                "kernel": "(x.y/2048 + 1)^3", "estimator": "unbiased MMD^2 over all pairs",
                "standard_error": "jackknife"}
