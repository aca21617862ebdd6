"""Metrics: ``create_metric(name, **options)`` builds one; see ``base.Metric`` for the protocol."""
from vqfr.metrics.base import Metric, MetricResult
from vqfr.metrics.registry import METRICS, available_metrics, create_metric, register_metric

__all__ = ["Metric", "MetricResult", "METRICS", "available_metrics", "create_metric",
           "register_metric"]
