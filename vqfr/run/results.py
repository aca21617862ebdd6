"""Result files of one (dataset, method): ``per_image.csv`` and ``summary.json`` (schema
``vqfr-eval/summary/1``, see the design notes), and the results table across methods."""
from __future__ import annotations

import csv
import hashlib
import io
import math
import platform
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vqfr.metrics.base import MetricResult
from vqfr.run.cache import atomic_write_bytes, atomic_write_json
from vqfr.stats.fid import SMALL_N_BIAS_NOTE
from vqfr.stats.rows import ROWS_DIR

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


def metric_info(metrics: dict[str, Any], results: dict[str, MetricResult],
                rows: dict[str, dict] | None = None,
                stems: list[str] | None = None) -> dict[str, Any]:
    """Per metric: direction, options, count, extra numbers, where its feature rows are
    (``rows``: ``write_metric_rows``) and the images it has no value for (``unmeasured``:
    name -> reason; ``stems`` maps global indices to names)."""
    info = {}
    for name, metric in metrics.items():
        result = results[name]
        count = len(result.per_image) if result.per_image is not None else result.extra.get(
            "count")
        info[name] = {"name": metric.name, "lower_is_better": bool(metric.lower_is_better),
                      "options": metric.options(), "count": count,
                      "extra": {k: json_number(v) for k, v in result.extra.items()}}
        if rows and name in rows:
            info[name]["rows"] = rows[name]
        if result.unmeasured:
            info[name]["unmeasured"] = {(stems[i] if stems else str(i)): why
                                        for i, why in sorted(result.unmeasured.items())}
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


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _content_sha256(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_metric_rows(method_dir: Path, metrics: dict[str, Any]) -> dict[str, dict]:
    """The feature rows of the metrics that keep them (FID, KID: ``bootstrap_rows()``), for
    ``vqfr.stats`` to resample without the network: ``rows/<metric>.npz`` in the method folder
    and the reference once per dataset, ``../rows/reference-<content sha256>.npz`` (numpy
    arrays, no pickles; see ``vqfr.stats.rows``). Returns ``metric_info.<metric>.rows``."""
    files = {}
    for name, metric in metrics.items():
        export = getattr(metric, "bootstrap_rows", None)
        if export is None or not len(metric.ordered_features()):
            continue
        rows = export()
        restored = f"{ROWS_DIR}/{re.sub(r'[^A-Za-z0-9._-]+', '-', name)}.npz"
        atomic_write_bytes(method_dir / restored, _npz_bytes(rows["restored"]))
        reference = f"reference-{_content_sha256(rows['reference'])[:16]}.npz"
        reference_path = method_dir.parent / ROWS_DIR / reference
        if not reference_path.is_file():
            atomic_write_bytes(reference_path, _npz_bytes(rows["reference"]))
        files[name] = {"statistic": rows["statistic"], "restored": restored,
                       "reference": f"../{ROWS_DIR}/{reference}",
                       "reference_kind": rows["reference_kind"]}
    return files


def unmeasured_lines(results: dict[str, MetricResult], stems: list[str]) -> list[str]:
    """One line per metric with images it could not give a value, for the run log."""
    return [f"{name}: {len(r.unmeasured)} image(s) without a value, left out of the mean:\n  "
            + "\n  ".join(f"{stems[i]}: {why}" for i, why in sorted(r.unmeasured.items()))
            for name, r in results.items() if r.unmeasured]


def write_summary(path: Path, *, dataset: dict, method: dict, results: dict[str, MetricResult],
                  metrics: dict[str, Any], counts: dict, provenance: dict,
                  conversions: dict[str, dict] | None = None,
                  skipped_metrics: dict[str, str] | None = None,
                  metric_rows: dict[str, dict] | None = None,
                  stems: list[str] | None = None) -> dict:
    summary = {"schema": SUMMARY_SCHEMA, "dataset": dataset, "method": method,
               "metrics": {name: json_number(float(r.value)) for name, r in results.items()},
               "metric_info": metric_info(metrics, results, metric_rows, stems),
               "counts": counts, "provenance": provenance}
    if conversions is not None:
        summary["conversions"] = conversions
    if skipped_metrics:
        summary["skipped_metrics"] = skipped_metrics
    atomic_write_json(path, summary)
    return summary


def results_table(summaries: list[dict]) -> pd.DataFrame:
    """One row per method, one column per metric, headed ``name ↓`` or ``name ↑``
    (``table.attrs["metrics"]``: the metric of each column)."""
    rows, headers = {}, {}
    for summary in summaries:
        label = summary["method"].get("label") or summary["method"]["name"]
        rows[label] = summary["metrics"]
        for name, info in summary["metric_info"].items():
            headers[name] = f"{name} {'↓' if info['lower_is_better'] else '↑'}"
    table = pd.DataFrame.from_dict(rows, orient="index", columns=list(headers))
    table = table.apply(pd.to_numeric, errors="coerce")
    table.attrs["metrics"] = list(table.columns)
    table.columns = [headers[c] for c in table.columns]
    table.index.name = "method"
    return table


def format_table(table: pd.DataFrame, dataset: str, statistics: Any = None,
                 slugs: dict[str, str] | None = None) -> str:
    """The printed results table. With ``statistics`` (``vqfr.stats.analysis``) and ``slugs``
    (row label -> method slug): each value as ``mean ± half-width`` of its interval, and ``†``
    on values not significantly different from the column's best; a legend below."""
    if statistics is None or not slugs:
        return f"{dataset}\n{table.to_string(float_format=lambda v: f'{v:.4f}')}"
    cells = pd.DataFrame(index=table.index, columns=table.columns, dtype=object)
    marked = False
    for header, metric in zip(table.columns, table.attrs.get("metrics", table.columns)):
        values = {slugs[label]: float(v) for label, v in table[header].items()}
        tied = statistics.tied_with_best(metric, list(values), values, header.endswith("↓"))
        for label, value in table[header].items():
            slug = slugs[label]
            ci = statistics.intervals.get(slug, {}).get(metric)
            text = "—" if math.isnan(value) else _number_text(value)
            if ci and ci.get("low") is not None and not math.isnan(value):
                text += f" ± {_number_text((ci['high'] - ci['low']) / 2)}"
            if tied.get(slug):
                text += " †"
                marked = True
            cells.loc[label, header] = text
    options = statistics.options
    records = [ci for per in statistics.intervals.values() for ci in per.values()]
    legend = [f"± half-width of the {options.level:g} " + statistics_method_text(
        options, has_fid=any(ci.get("note") == SMALL_N_BIAS_NOTE for ci in records),
        has_kid=any(str(ci.get("method")).startswith("normal") for ci in records))]
    if marked:
        legend.append(f"† not significantly different from the column's best (paired "
                      f"{options.test}, Holm-adjusted p ≥ {options.alpha:.3g})")
    return f"{dataset}\n{cells.to_string()}\n" + "\n".join(legend)


def _number_text(value: float) -> str:
    """4 decimals; values under 1e-3 (synthetic-weight FIDs) in 4 significant digits."""
    return f"{value:.3e}" if value != 0 and abs(value) < 1e-3 else f"{value:.4f}"


def statistics_method_text(options: Any, has_fid: bool = True, has_kid: bool = True) -> str:
    """How the intervals were made, for a legend."""
    text = (f"{'BCa' if options.method == 'bca' else 'percentile'} bootstrap interval over "
            f"images ({options.resamples} resamples, seed {options.seed}")
    if has_fid:
        text += (f"; FID: its first {options.fid_resamples} resamples, percentile interval "
                 "centred on the value, FID's small-N bias not covered")
    if has_kid:
        text += "; KID: normal, jackknife standard error"
    return text + ")"


def write_statistics(dataset_dir: Path, summaries: dict[str, dict], statistics: Any) -> None:
    """Each interval into its method's ``summary.json`` (``metric_info.<metric>.ci``) and, for
    a run of several methods, the paired comparisons into ``<dataset>/comparisons.json``
    (replacing an earlier run's: they are recomputed from the files; a one-method run removes
    it), atomically."""
    for slug, summary in summaries.items():
        for column, ci in statistics.intervals.get(slug, {}).items():
            summary["metric_info"][column]["ci"] = ci
        atomic_write_json(Path(dataset_dir) / slug / "summary.json", summary)
    comparisons = Path(dataset_dir) / "comparisons.json"
    if len(summaries) > 1:
        atomic_write_json(comparisons, [c.as_dict() for c in statistics.comparisons])
    else:       # an earlier run's pairs would compare this method's old numbers
        comparisons.unlink(missing_ok=True)
