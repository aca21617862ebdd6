"""The metrics of a run, updated batch by batch with per-batch states.

Before each batch every metric to update is reset; after it, its states are exactly that batch's
contribution. Those are kept (and stored on disk by the runner), and the dataset-level result is
``merge_states`` of all batches in global batch order followed by ``compute()``. So a resumed run
(finished batches loaded from disk) and an N-process run (batches gathered from every rank) merge
the very same per-batch states in the very same order as one uninterrupted process: the numbers
are identical, float "sum" states included.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from vqfr.errors import AssetUnavailable, VqfrError
from vqfr.metrics import Metric, MetricResult
from vqfr.metrics.base import FileGray
from vqfr.metrics.collection import MetricCollection, reads_file_gray
from vqfr.metrics.registry import MetricSpec, metric_class, parse_metric_specs
from vqfr.run.methods import options_digest

BatchStates = dict[str, dict[int, dict[str, torch.Tensor]]]   # metric -> batch -> states


class MetricSet:
    def __init__(self, metrics: list[str], device: str | torch.device = "cpu",
                 assets: Mapping[str, str] | None = None, paired: bool = True,
                 options: Mapping[str, Mapping] | None = None,
                 unavailable: Mapping[str, str] | None = None,
                 precision: str = "exact") -> None:
        """Builds each metric once. ``metrics``: ``--metrics`` spellings (``psnr``,
        ``psnr:test_y_channel=true:label=psnr_y``, see ``vqfr.metrics.registry``); everything
        is keyed by their labels. ``options``: constructor options by metric name, under those
        the spelling gives. ``unavailable``: asset name -> why it cannot be had; metrics reading
        such an asset are skipped without being built. ``skipped`` maps a label to why it is not
        measured (a full-reference metric on an unpaired set, weights unavailable).
        ``precision``: the effective precision policy the metric networks run under
        (``vqfr.precision``), part of what stored states are keyed by."""
        self.precision = precision
        self.specs: dict[str, MetricSpec] = {s.label: s for s in parse_metric_specs(metrics)}
        self.metrics: dict[str, Metric] = {}
        self.skipped: dict[str, str] = {}
        self.required: dict[str, tuple[str, ...]] = {}   # label -> zoo assets it reads
        for label, spec in self.specs.items():
            given = _options(spec, options)
            self.required[label] = metric_class(spec.name).required_assets(given)
            lacking = [a for a in self.required[label] if a in (unavailable or {})]
            if lacking:
                self.skipped[label] = "; ".join(unavailable[a] for a in lacking)
                continue
            try:
                single = MetricCollection({label: spec.name}, device=device, assets=assets,
                                          paired=paired, options={label: given} if given else None)
            except AssetUnavailable as exc:
                self.skipped[label] = str(exc)
                continue
            except ValueError as exc:   # an option value the metric refuses
                raise VqfrError(f"metric {label}: {exc}") from None
            self.metrics.update(single.metrics)
            self.skipped.update(single.skipped)
        # FID compared with the GT images' own features (reference="gt") reads them too.
        self.needs_reference = paired and any(
            m.needs_reference or getattr(m, "reference", None) == "gt"
            for m in self.metrics.values())
        # Deg./IDS read JPEG files in grey as the official script does: the loader decodes them
        self.needs_file_gray = any(reads_file_gray(m) for m in self.metrics.values())

    def assets(self) -> list[str]:
        """The zoo assets of the metrics measured."""
        return list(dict.fromkeys(a for label in self.metrics for a in self.required[label]))

    def metric_id(self, label: str, batch_size: int) -> str:
        """Directory name of a metric's stored batch states: its options, the precision policy
        and the batch size (batches are the unit of reuse) are part of it."""
        digest = options_digest({"name": self.specs[label].name,
                                 "options": self.metrics[label].options(),
                                 "precision": self.precision})
        return f"{label}-{digest[:12]}-b{batch_size}"

    def update(self, names: list[str],
               groups: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor,
                                  FileGray | None]]) -> dict[str, dict]:
        """Reset the metrics ``names``, update them on the batch (given as same-shape groups of
        (restored, reference, index, file_gray)) and return their states: the batch's
        contribution."""
        if not names:
            return {}
        collection = MetricCollection({n: self.metrics[n] for n in names})
        collection.reset()
        for restored, reference, index, file_gray in groups:
            collection.update(restored, reference if self.needs_reference else None, index,
                              file_gray=file_gray)
        return {n: {k: v.detach().cpu().clone() for k, v in self.metrics[n].states().items()}
                for n in names}

    def compute(self, batch_states: BatchStates) -> dict[str, MetricResult]:
        results = {}
        for name, metric in self.metrics.items():
            per_batch = batch_states.get(name, {})
            metric.reset()
            if per_batch:
                metric.merge_states([per_batch[k] for k in sorted(per_batch)])
            results[name] = metric.compute()
        return results


def _options(spec: MetricSpec, options: Mapping[str, Mapping] | None) -> dict:
    """A metric's constructor options: those given by name, under the spelling's own."""
    return {**(options or {}).get(spec.name, {}), **spec.options}


def metric_assets(metrics: list[str],
                  options: Mapping[str, Mapping] | None = None) -> dict[str, list[str]]:
    """The zoo assets the metrics (``--metrics`` spellings) read -> the columns needing each."""
    needed: dict[str, list[str]] = {}
    for spec in parse_metric_specs(metrics):
        for asset in metric_class(spec.name).required_assets(_options(spec, options)):
            needed.setdefault(asset, []).append(f"metric {spec.label}")
    return needed


def merge_batch_states(parts: list[BatchStates]) -> BatchStates:
    """Union of the per-batch states gathered from every rank (batches are disjoint)."""
    merged: BatchStates = {}
    for part in parts:
        for name, batches in part.items():
            merged.setdefault(name, {}).update(batches)
    return merged

