"""Several metrics updated from one decoded batch (torchmetrics' MetricCollection, one pass).

    metrics = MetricCollection(["psnr", "ssim", "lpips", "deg", "ids", "pyiqa:musiq"],
                               device="cuda", options={"deg": {"exclude_identical": True}},
                               assets={"arcface-resnet18": "/data/resnet18_110.pth"})
    for restored, gt, index in batches:
        metrics.update(restored, gt, index)
    metrics.sync()                      # no-op unless torch.distributed is initialised
    results = metrics.compute()         # {name: MetricResult}

Shared preprocessing: every ``update`` call makes one fresh ``cache`` dict and hands it to each
metric whose ``update`` accepts a ``cache`` keyword. Metrics store what others can reuse for the
same batch there under a key of their own (e.g. Deg and IDS: the ArcFace embeddings; PSNR and SSIM:
the mean/variance-corrected images), so it is computed once per batch.

Images as their files hold them: ``update(..., file_gray=FileGray(...))`` hands each file's own
grey decode (JPEG luma) to the metrics whose ``update`` takes ``file_gray`` (Deg., IDS), where
the official script reads the file in grey (see ``vqfr.data.images.read_image_and_gray``).

Unpaired data (no ground truth): build with ``paired=False``; full-reference metrics are then
skipped, each with its reason in ``skipped`` (or refused with ``on_unpaired="error"``).
"""
from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from vqfr.errors import VqfrError
from vqfr.metrics.base import FileGray, Metric, MetricResult
from vqfr.metrics.registry import create_metric, metric_class


def _accepts(function: Any, parameter: str) -> bool:
    return parameter in inspect.signature(function).parameters


def reads_file_gray(metric: Metric) -> bool:
    """Whether ``metric`` uses the files' own grey decodes (``update(..., file_gray=...)``)."""
    return _accepts(metric.update, "file_gray")


class MetricCollection:
    """``metrics``: names (see ``vqfr.metrics.available_metrics()``, or ``pyiqa:NAME``) or ready
    ``Metric`` objects, or a mapping label -> either (one metric under several protocols: the
    labels key everything, results included). ``options``: per-metric constructor options by
    label (= the name unless a mapping gives labels). ``device`` is given
    to every metric that takes one; ``assets`` (asset name -> path, the ``--asset`` overrides)
    to every metric that takes ``assets``, else as ``weights`` to one whose ``asset`` is listed."""

    def __init__(self, metrics: Iterable[str | Metric] | Mapping[str, str | Metric], *,
                 device: str | torch.device = "cpu",
                 options: Mapping[str, Mapping[str, Any]] | None = None,
                 assets: Mapping[str, str | Path] | None = None, paired: bool = True,
                 on_unpaired: str = "skip") -> None:
        if on_unpaired not in ("skip", "error"):
            raise ValueError(f"on_unpaired must be 'skip' or 'error', got {on_unpaired!r}")
        options = dict(options or {})
        self.paired = paired
        self.metrics: dict[str, Metric] = {}
        self.skipped: dict[str, str] = {}
        labelled = (metrics.items() if isinstance(metrics, Mapping) else
                    ((m if isinstance(m, str) else m.name, m) for m in metrics))
        for label, item in labelled:
            name = item if isinstance(item, str) else item.name
            if label in self.metrics or label in self.skipped:
                raise ValueError(f"metric {label!r} listed twice")
            needs_reference = (item.needs_reference if isinstance(item, Metric)
                               else self._needs_reference(name))
            if needs_reference and not paired:
                if on_unpaired == "error":
                    raise VqfrError(f"metric {name!r} compares with ground-truth images, but the "
                                    "dataset has none; choose no-reference metrics (niqe, fid, "
                                    "pyiqa:NAME)")
                self.skipped[label] = "full-reference metric; the dataset has no ground truth"
                continue
            if isinstance(item, str):
                item = self._build(name, options.pop(label, {}), device, assets)
            self.metrics[label] = item
        unused = set(options) - set(self.skipped)
        if unused:
            raise ValueError(f"options given for metrics not in the collection: {sorted(unused)}")
        self._takes_cache = {name: _accepts(m.update, "cache") for name, m in self.metrics.items()}
        self._takes_gray = {name: reads_file_gray(m) for name, m in self.metrics.items()}

    @staticmethod
    def _needs_reference(name: str) -> bool:
        cls = metric_class(name)
        if name.startswith("pyiqa:"):
            return cls.is_full_reference(name.split(":", 1)[1])
        return cls.needs_reference

    @staticmethod
    def _build(name: str, options: Mapping[str, Any], device: str | torch.device,
               assets: Mapping[str, str | Path] | None) -> Metric:
        cls = metric_class(name)
        kwargs = dict(options)
        if _accepts(cls, "device"):
            kwargs.setdefault("device", device)
        if assets:
            if _accepts(cls, "assets"):
                kwargs.setdefault("assets", dict(assets))
            elif cls.asset in assets:
                kwargs.setdefault("weights", assets[cls.asset])
        return create_metric(name, **kwargs)

    # -- the one pass -----------------------------------------------------------------------
    def update(self, restored: torch.Tensor, reference: torch.Tensor | None = None,
               index: torch.Tensor | None = None, file_gray: FileGray | None = None) -> None:
        if reference is None:
            full_reference = [n for n, m in self.metrics.items() if m.needs_reference]
            if full_reference:
                raise ValueError(f"no reference images given, but {full_reference} need them "
                                 "(build the collection with paired=False for unpaired data)")
        cache: dict[Any, Any] = {}
        for name, metric in self.metrics.items():
            extra: dict[str, Any] = {"cache": cache} if self._takes_cache[name] else {}
            if file_gray is not None and self._takes_gray[name]:
                extra["file_gray"] = file_gray
            metric.update(restored, reference, index, **extra)

    def sync(self, group: Any = None) -> None:
        for metric in self.metrics.values():
            metric.sync(group)

    def compute(self) -> dict[str, MetricResult]:
        return {name: metric.compute() for name, metric in self.metrics.items()}

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()

    # -- what is recorded with the numbers ---------------------------------------------------
    @property
    def lower_is_better(self) -> dict[str, bool]:
        return {name: bool(m.lower_is_better) for name, m in self.metrics.items()}

    def options(self) -> dict[str, dict[str, Any]]:
        return {name: m.options() for name, m in self.metrics.items()}

    def __getitem__(self, name: str) -> Metric:
        return self.metrics[name]

    def __iter__(self):
        return iter(self.metrics)

    def __len__(self) -> int:
        return len(self.metrics)

    def __repr__(self) -> str:
        return f"MetricCollection({list(self.metrics)}, skipped={list(self.skipped)})"
