"""Result files of one (dataset, method): ``per_image.csv`` and ``summary.json`` (schema
``vqfr-eval/summary/1``, see the design notes), and the results table across methods."""
from __future__ import annotations

import csv
import io
import math
import platform
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from vqfr.metrics.base import MetricResult
from vqfr.run.cache import atomic_write_bytes, atomic_write_json

SUMMARY_SCHEMA = "vqfr-eval/summary/1"


def json_number(value: Any) -> Any:
    """JSON has no inf/nan: they are written as the strings "inf", "-inf", "nan" (as the
    reference metric files do), everything else as is."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def write_per_image_csv(path: Path, stems: list[str], results: dict[str, MetricResult]) -> None:
    """Columns: name, index, then one per metric with a per-image value (FID has none)."""
    columns = [name for name, r in results.items() if r.per_image is not None]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "index", *columns])
    for index, stem in enumerate(stems):
        row = [stem, index]
        for name in columns:
            value = results[name].per_image.get(index)
            row.append("" if value is None else repr(float(value)))
        writer.writerow(row)
    atomic_write_bytes(path, buffer.getvalue().encode())


def runtime_versions() -> dict[str, str]:
    import torch
    import torchvision

    from vqfr import __version__

    return {"vqfr_eval": __version__, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version()}


def command_line() -> str:
    return " ".join(["vqfr-eval", *sys.argv[1:]]) if sys.argv else "vqfr-eval"


def metric_info(metrics: dict[str, Any], results: dict[str, MetricResult]) -> dict[str, Any]:
    info = {}
    for name, metric in metrics.items():
        result = results[name]
        count = len(result.per_image) if result.per_image is not None else result.extra.get(
            "count")
        info[name] = {"name": metric.name, "lower_is_better": bool(metric.lower_is_better),
                      "options": metric.options(), "count": count,
                      "extra": {k: json_number(v) for k, v in result.extra.items()}}
    return info


def conversion_summary(conversions: dict[str, list[str]], root: Path | None = None
                       ) -> dict[str, dict[str, Any]]:
    """{file: reading notes} -> {note: {"count", "files"}}; files under ``root`` (the dataset's
    folder) are named relative to it."""
    grouped: dict[str, list[str]] = {}
    for file, notes in conversions.items():
        name = Path(file)
        if root is not None and name.is_relative_to(root):
            name = name.relative_to(root)
        for note in notes:
            grouped.setdefault(note, []).append(name.as_posix())
    return {note: {"count": len(files), "files": sorted(files)}
            for note, files in sorted(grouped.items())}


def write_summary(path: Path, *, dataset: dict, method: dict, results: dict[str, MetricResult],
                  metrics: dict[str, Any], counts: dict, provenance: dict,
                  conversions: dict[str, dict] | None = None,
                  skipped_metrics: dict[str, str] | None = None) -> dict:
    summary = {"schema": SUMMARY_SCHEMA, "dataset": dataset, "method": method,
               "metrics": {name: json_number(float(r.value)) for name, r in results.items()},
               "metric_info": metric_info(metrics, results), "counts": counts,
               "provenance": provenance}
    if conversions is not None:
        summary["conversions"] = conversions
    if skipped_metrics:
        summary["skipped_metrics"] = skipped_metrics
    atomic_write_json(path, summary)
    return summary


def results_table(summaries: list[dict]) -> pd.DataFrame:
    """One row per method, one column per metric, headed ``name ↓`` or ``name ↑``."""
    rows, headers = {}, {}
    for summary in summaries:
        label = summary["method"].get("label") or summary["method"]["name"]
        rows[label] = summary["metrics"]
        for name, info in summary["metric_info"].items():
            headers[name] = f"{name} {'↓' if info['lower_is_better'] else '↑'}"
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(headers))
    table = table.apply(pd.to_numeric, errors="coerce")
    table.columns = [headers[c] for c in table.columns]
    table.index.name = "method"
    return table


def format_table(table: pd.DataFrame, dataset: str) -> str:
    return f"{dataset}\n{table.to_string(float_format=lambda v: f'{v:.4f}')}"
