"""Metrics: ``create_metric(name, **options)`` builds one; see ``base.Metric`` for the protocol
and ``MetricCollection`` for several metrics updated in one pass.

The names below are imported on first use, so the numpy-only modules of this package
(``frechet``, ``mmd``) can be imported without torch (``vqfr.stats`` does)."""
from __future__ import annotations

import importlib

_EXPORTS = {"Metric": "base", "MetricResult": "base", "MetricCollection": "collection",
            "METRICS": "registry", "available_metrics": "registry",
            "create_metric": "registry", "register_metric": "registry"}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vqfr.metrics.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vqfr.metrics' has no attribute {name!r}")
