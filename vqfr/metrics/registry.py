"""Name -> metric class registry (pyiqa style). Metric modules are imported lazily, so building
``psnr`` does not import the LPIPS or Inception networks."""
from __future__ import annotations

import importlib
from typing import Any

from vqfr.metrics.base import Metric

# name -> "module:Class". Each metric module is one file under vqfr/metrics/.
METRICS: dict[str, str] = {}


def register_metric(name: str, target: str) -> None:
    METRICS[name] = target


def available_metrics() -> list[str]:
    return sorted(METRICS)


def metric_class(name: str) -> type[Metric]:
    if name.startswith("pyiqa:"):
        module = importlib.import_module("vqfr.metrics.pyiqa_bridge")
        return module.PyiqaMetric
    try:
        target = METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; available: {', '.join(available_metrics())} "
                       "(or pyiqa:NAME with the [iqa] extra)") from None
    module_name, cls_name = target.split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def create_metric(name: str, **options: Any) -> Metric:
    cls = metric_class(name)
    if name.startswith("pyiqa:"):
        return cls(name.split(":", 1)[1], **options)
    return cls(**options)


# The suite's metrics (module paths; the files are written by the metric modules' authors).
for _name, _target in {
    "psnr": "vqfr.metrics.psnr_ssim:PSNR",
    "ssim": "vqfr.metrics.psnr_ssim:SSIM",
    "lpips": "vqfr.metrics.lpips_vgg:LPIPS",
    "niqe": "vqfr.metrics.niqe:NIQE",
    "fid": "vqfr.metrics.fid:FID",
    "deg": "vqfr.metrics.identity:Deg",
    "ids": "vqfr.metrics.identity:IDS",
}.items():
    register_metric(_name, _target)
