"""``vqfr-eval metrics``: measure a folder of restored images (against a GT folder, paired by
file stem, or alone for no-reference metrics and FID), with the runner's batched one pass."""
from __future__ import annotations

import tempfile
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import torch

from vqfr.data.images import list_images
from vqfr.data.pairing import match_stems, require_unique_stems
from vqfr.errors import VqfrError
from vqfr.precision import DEFAULT_PRECISION, effective_precision
from vqfr.precision import precision as precision_policy
from vqfr.run.distributed import DistContext
from vqfr.run.methods import Method
from vqfr.run.metricset import MetricSet, metric_assets
from vqfr.run.results import (command_line, conversion_summary, json_number, metric_info,
                              runtime_versions)
from vqfr.run.runner import Item, MethodPass
from vqfr.zoo.resolve import check_assets, missing_files_text, start_run


def folder_items(restored: Path, gt: Path | None) -> list[Item]:
    files = list_images(restored)
    if not files:
        raise VqfrError(f"{restored}: no image files")
    if gt is None:
        require_unique_stems(files, str(restored))
        return [Item(i, p.stem, p, None) for i, p in enumerate(files)]
    match = match_stems(files, list_images(gt), strict=True, a_label=str(restored),
                        b_label=str(gt))
    return [Item(i, stem, a, b) for i, (stem, a, b) in enumerate(match.pairs)]


def evaluate_folders(restored: Path, gt: Path | None, metric_names: list[str],
                     device: str = "cpu", assets: Mapping[str, Any] | None = None,
                     batch_size: int = 8, metric_options: Mapping[str, Mapping] | None = None,
                     show_progress: bool = True,
                     precision: str = DEFAULT_PRECISION) -> dict[str, Any]:
    """{"metrics", "per_image": [{"name": stem, metric: value}], "options", "skipped",
    "missing_files" (how to get the files of skipped metrics, each once), "provenance"}.
    ``precision``: the ``vqfr.precision`` policy of the metric networks on CUDA."""
    with precision_policy(precision):
        return _evaluate_folders(Path(restored), gt, metric_names, device, assets, batch_size,
                                 metric_options, show_progress,
                                 effective_precision(precision, device))


def _evaluate_folders(restored: Path, gt: Path | None, metric_names: list[str], device: str,
                      assets: Mapping[str, Any] | None, batch_size: int,
                      metric_options: Mapping[str, Mapping] | None, show_progress: bool,
                      precision: str) -> dict[str, Any]:
    items = folder_items(restored, Path(gt) if gt else None)
    start_run()
    needed = metric_assets(metric_names, metric_options)
    found, missing = check_assets(needed, assets, quiet=not show_progress)
    missing_files = missing_files_text(missing, needed) if missing else ""
    metrics = MetricSet(metric_names, device=device, assets=assets, paired=gt is not None,
                        options=metric_options, precision=precision,
                        unavailable={n: str(e).splitlines()[0] for n, e in missing.items()})
    if not metrics.metrics:
        raise VqfrError("no metric can be measured: " + "; ".join(
            f"{n}: {r}" for n, r in metrics.skipped.items())
            + (f"\n\n{missing_files}" if missing_files else ""))
    method = Method(name="folder", kind="folder", label=restored.name, slug="restored",
                    folder=restored.resolve())
    with tempfile.TemporaryDirectory(prefix="vqfr-metrics-") as scratch:
        outcome = MethodPass(items, method, None, metrics, Path(scratch), {}, batch_size,
                             "512", DistContext(), torch.device(device),
                             show_progress=show_progress).run()
    if outcome.failed:
        raise VqfrError(f"{len(outcome.failed)} image(s) could not be used:\n  "
                        + "\n  ".join(f"{why}" for why in outcome.failed.values()))
    results = metrics.compute(outcome.batch_states)
    per_image = []
    for item in items:
        row: dict[str, Any] = {"name": item.stem}
        for name, result in results.items():
            if result.per_image is not None and item.index in result.per_image:
                row[name] = json_number(float(result.per_image[item.index]))
        per_image.append(row)
    return {"metrics": {name: json_number(float(r.value)) for name, r in results.items()},
            "per_image": per_image,
            "options": metric_info(metrics.metrics, results, stems=[it.stem for it in items]),
            "skipped": metrics.skipped, "missing_files": missing_files,
            "conversions": conversion_summary(outcome.conversions),
            "provenance": {**runtime_versions(), "restored": str(restored),
                           "gt": str(gt) if gt else None, "count": len(items),
                           "device": device, "precision": precision,
                           "command": command_line(),
                           "assets": {n: found[n].record() for n in metrics.assets()
                                      if n in found}}}
