"""Metrics: ``create_metric(name, **options)`` builds one; see ``base.Metric`` for the protocol
and ``MetricCollection`` for several metrics updated in one pass."""
from vqfr.metrics.base import Metric, MetricResult
from vqfr.metrics.collection import MetricCollection
from vqfr.metrics.registry import METRICS, available_metrics, create_metric, register_metric

__all__ = ["Metric", "MetricCollection", "MetricResult", "METRICS", "available_metrics",
           "create_metric", "register_metric"]
