"""Intervals for every metric of every method of a dataset, and the paired comparisons between
the methods, from their result files (``rows.MethodRows``).

- per-image metrics: bootstrap over images (``bootstrap.py``; BCa by default), every method and
  metric on the same resamples;
- FID: bootstrap of the Fréchet distance over the feature rows (``fid.py``), on the first
  ``fid_resamples`` of the same resamples; percentile intervals of the distribution centred on
  the estimate (``fid.centred``: resampling duplicates images, which shifts FID up; BCa's
  jackknife would need N Fréchet distances of 2048-dimensional covariances), and p-values of differences from the
  normal approximation with the bootstrap standard error (a percentile p-value from 200
  resamples cannot go below 1/201, too coarse for Holm's correction over several pairs);
- KID: the estimate plus or minus z times its jackknife standard error (``vqfr.metrics.mmd``).

Comparisons: for each metric and each pair of methods (a, b) in run order, the difference of
their dataset numbers a - b with its paired interval and two-sided p-value (the same resamples
for both; ``test="wilcoxon"``: the Wilcoxon signed-rank p on the per-image values instead, for
per-image metrics), and Holm's adjustment over the pairs of that metric (one family per column
of the results table).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtri

from vqfr.metrics.mmd import jackknife_variance, kid
from vqfr.stats.bootstrap import (
    METHODS,
    Resampler,
    interval,
    normal_p_value,
    p_value,
    ratio_bootstrap,
    ratio_estimate,
    ratio_jackknife,
    weights_of,
)
from vqfr.stats.fid import CENTRED, SMALL_N_BIAS_NOTE, FidBootstrap, FidReference, centred
from vqfr.stats.paired import TESTS, holm, wilcoxon_p
from vqfr.stats.rows import MethodRows

# the seed of the resamples of a reference set of other images (independent of the restored)
REFERENCE_STREAM = 1


@dataclass(frozen=True)
class CIOptions:
    level: float = 0.95
    method: str = "bca"              # per-image metrics: "bca" or "percentile"
    resamples: int = 2000
    fid_resamples: int = 200
    seed: int = 0
    test: str = "bootstrap"          # p-values of per-image metrics: "bootstrap" or "wilcoxon"

    def __post_init__(self) -> None:
        if not 0 < self.level < 1:
            raise ValueError(f"confidence level must be in (0, 1), got {self.level}")
        if self.method not in METHODS:
            raise ValueError(f"interval method must be one of {METHODS}, got {self.method!r}")
        if self.test not in TESTS:
            raise ValueError(f"paired test must be one of {TESTS}, got {self.test!r}")
        if self.resamples < 1 or self.fid_resamples < 1:
            raise ValueError("the number of resamples must be at least 1")

    @property
    def alpha(self) -> float:
        return 1 - self.level

    def record(self, method: str, resamples: int | None, seed: int | None, low: float,
               high: float, **extra: Any) -> dict[str, Any]:
        """A ``metric_info.<metric>.ci`` entry."""
        return {"level": self.level, "low": _finite_or_none(low), "high": _finite_or_none(high),
                "method": method, "resamples": resamples, "seed": seed, **extra}


@dataclass
class Comparison:
    metric: str
    a: str
    b: str
    diff: float
    low: float | None
    high: float | None
    p: float | None
    p_holm: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (_finite_or_none(v) if isinstance(v, float) else v)
                for k, v in asdict(self).items()}


@dataclass
class DatasetStatistics:
    options: CIOptions
    intervals: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # slug->col
    comparisons: list[Comparison] = field(default_factory=list)
    standard_errors: dict[tuple[str, str], float] = field(default_factory=dict)
    difference_errors: dict[tuple[str, str, str], float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def comparison(self, metric: str, a: str, b: str) -> Comparison | None:
        """The comparison of a and b on a metric, oriented as asked (a - b)."""
        for c in self.comparisons:
            if c.metric == metric and (c.a, c.b) == (a, b):
                return c
            if c.metric == metric and (c.a, c.b) == (b, a):
                return Comparison(metric, a, b, -c.diff, _neg(c.high), _neg(c.low), c.p,
                                  c.p_holm)
        return None

    def tied_with_best(self, metric: str, slugs: list[str], values: dict[str, float],
                       lower_is_better: bool) -> dict[str, bool]:
        """For each method: not significantly different from the column's best (Holm-adjusted
        p >= 1 - level). The best itself is not marked."""
        present = {s: values[s] for s in slugs if s in values and not math.isnan(values[s])}
        if len(present) < 2:
            return {}
        best = (min if lower_is_better else max)(present, key=present.get)
        marks = {}
        for slug in present:
            if slug == best:
                continue
            c = self.comparison(metric, best, slug)
            if c is not None and c.p_holm is not None:
                marks[slug] = c.p_holm >= self.options.alpha
        return marks


def _finite_or_none(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _neg(value: float | None) -> float | None:
    return None if value is None else -value


def column_kind(method: MethodRows, column: str) -> str | None:
    """'mean' (per-image values), 'fid' / 'kid' (feature rows) or None (nothing to resample)."""
    files = method.row_files(column)
    if files is not None:   # feature rows; a set too small for a value has no interval either
        return files.get("statistic", "fid") if math.isfinite(method.value(column)) else None
    values = method.values.get(column)
    if values is not None and not np.all(np.isnan(values)):
        return "mean"
    return None


def dataset_statistics(methods: list[MethodRows], options: CIOptions = CIOptions(),
                       only: list[str] | None = None) -> DatasetStatistics:
    """Intervals and comparisons for the methods of one dataset (same images, same order);
    ``only``: these columns alone."""
    result = DatasetStatistics(options)
    n = methods[0].count if methods else 0
    if n < 2:
        result.notes.append("fewer than 2 images: no intervals")
        return result
    comparable = all(m.count == n and m.summary.get("dataset", {}).get("file_list_sha256") ==
                     methods[0].summary.get("dataset", {}).get("file_list_sha256")
                     for m in methods)
    if not comparable:   # each method on its own images, none compared
        result.notes.append("the methods were not measured on the same images: no comparisons")
        for method in methods:
            alone = dataset_statistics([method], options, only)
            result.intervals.update(alone.intervals)
            result.standard_errors.update(alone.standard_errors)
        return result
    columns: dict[str, list[MethodRows]] = {}
    for method in methods:
        result.intervals.setdefault(method.slug, {})
        for column in method.summary.get("metrics", {}):
            if only is not None and column not in only:
                continue
            columns.setdefault(column, []).append(method)
    resampler = Resampler(n, options.resamples, options.seed)
    for column, members in columns.items():
        kinds = {m.slug: column_kind(m, column) for m in members}
        by_kind: dict[str, list[MethodRows]] = {}
        for m in members:
            if kinds[m.slug] is not None:
                by_kind.setdefault(kinds[m.slug], []).append(m)
        for kind, group in by_kind.items():
            analyse = {"mean": _mean_column, "fid": _fid_column, "kid": _kid_column}[kind]
            comparisons = analyse(column, group, resampler, options, result)
            _adjust(comparisons)
            result.comparisons.extend(comparisons)
    return result


def _adjust(comparisons: list[Comparison]) -> None:
    adjusted = holm([math.nan if c.p is None else c.p for c in comparisons])
    for c, p in zip(comparisons, adjusted):
        c.p_holm = _finite_or_none(p)


def _mean_column(column: str, group: list[MethodRows], resampler: Resampler,
                 options: CIOptions, result: DatasetStatistics) -> list[Comparison]:
    usable, values, keeps = [], [], []
    for m in group:
        x = m.values[column]
        keep = weights_of(x, m.exclude_below(column))
        if np.isinf(x[keep > 0]).any():
            result.intervals[m.slug][column] = options.record(
                options.method, options.resamples, options.seed, math.nan, math.nan,
                note="infinite per-image values (identical images): no interval")
            continue
        if keep.sum() == 0:
            continue
        usable.append(m)
        values.append(x)
        keeps.append(keep)
    if not usable:
        return []
    x, k = np.stack(values, 1), np.stack(keeps, 1)
    theta = ratio_estimate(x, k)
    boot = ratio_bootstrap(resampler, x, k)
    jack = ratio_jackknife(x, k) if options.method == "bca" else None
    for j, m in enumerate(usable):
        low, high = interval(theta[j], boot[:, j], options.level, options.method,
                             None if jack is None else jack[:, j])
        result.intervals[m.slug][column] = options.record(
            options.method, options.resamples, options.seed, low, high)
        result.standard_errors[(m.slug, column)] = float(np.nanstd(boot[:, j], ddof=1))
    comparisons = []
    for i, j in itertools.combinations(range(len(usable)), 2):
        a, b = usable[i], usable[j]
        d_boot = boot[:, i] - boot[:, j]
        d_jack = None if jack is None else jack[:, i] - jack[:, j]
        diff = float(theta[i] - theta[j])
        low, high = interval(diff, d_boot, options.level, options.method, d_jack)
        if options.test == "wilcoxon":
            p = wilcoxon_p(np.where(k[:, i] > 0, x[:, i], np.nan),
                           np.where(k[:, j] > 0, x[:, j], np.nan))
        else:
            p = p_value(diff, d_boot, options.method, d_jack)
        result.difference_errors[(column, a.slug, b.slug)] = float(np.nanstd(d_boot, ddof=1))
        comparisons.append(Comparison(column, a.slug, b.slug, diff, low, high, p))
    return comparisons


def _reference(method: MethodRows, column: str) -> FidReference:
    stored = method.reference(column)
    if "mean" in stored:
        return FidReference(mean=stored["mean"], cov=stored["cov"])
    kind = method.row_files(column).get("reference_kind")
    features = stored["features"]
    if kind == "gt" and "index" in stored:
        features = features[np.argsort(stored["index"], kind="stable")]
    return FidReference(features=features, paired=kind == "gt")


def _fid_column(column: str, group: list[MethodRows], resampler: Resampler,
                options: CIOptions, result: DatasetStatistics) -> list[Comparison]:
    limit = options.fid_resamples
    distributions: dict[str, np.ndarray] = {}
    references: dict[str, str] = {}
    engines: dict[str, FidBootstrap] = {}
    for m in group:
        key = m.reference_key(column)
        if key not in engines:
            reference = _reference(m, column)
            ref_resampler = (Resampler(len(reference.features), options.resamples,
                                       (options.seed, REFERENCE_STREAM))
                             if reference.has_rows and not reference.paired else None)
            engines[key] = FidBootstrap(reference, resampler, limit, ref_resampler)
        distributions[m.slug] = engines[key].distribution(m.features(column))
        references[m.slug] = key
        spread, shift = centred(distributions[m.slug], m.value(column))
        low, high = interval(m.value(column), spread, options.level, "percentile")
        result.intervals[m.slug][column] = options.record(
            CENTRED, len(spread), options.seed, low, high, bootstrap_shift=shift,
            note=SMALL_N_BIAS_NOTE)
        result.standard_errors[(m.slug, column)] = float(np.std(distributions[m.slug], ddof=1))
    comparisons = []
    for a, b in itertools.combinations(group, 2):
        if references[a.slug] != references[b.slug]:
            result.notes.append(f"{column}: {a.slug} and {b.slug} have different references; "
                                "not compared")
            continue
        diff = a.value(column) - b.value(column)
        d_boot, _ = centred(distributions[a.slug] - distributions[b.slug], diff)
        low, high = interval(diff, d_boot, options.level, "percentile")
        se = float(np.std(d_boot, ddof=1))
        result.difference_errors[(column, a.slug, b.slug)] = se
        comparisons.append(Comparison(column, a.slug, b.slug, diff, low, high,
                                      normal_p_value(diff, se)))
    return comparisons


def _kid_column(column: str, group: list[MethodRows], resampler: Resampler,
                options: CIOptions, result: DatasetStatistics) -> list[Comparison]:
    z = float(ndtri(1 - options.alpha / 2))
    estimates, references = {}, {}
    for m in group:
        reference = _reference(m, column)
        estimates[m.slug] = kid(m.features(column), reference.features, reference.paired)
        references[m.slug] = m.reference_key(column)
        value, se = estimates[m.slug].value, estimates[m.slug].standard_error
        result.intervals[m.slug][column] = options.record(
            "normal (jackknife standard error)", None, None, value - z * se, value + z * se,
            standard_error=se)
        result.standard_errors[(m.slug, column)] = se
    comparisons = []
    for a, b in itertools.combinations(group, 2):
        if references[a.slug] != references[b.slug]:
            continue
        ea, eb = estimates[a.slug], estimates[b.slug]
        variance = jackknife_variance(ea.leave_out - eb.leave_out)
        if ea.leave_out_reference is not None:
            variance += jackknife_variance(ea.leave_out_reference - eb.leave_out_reference)
        se = math.sqrt(variance)
        diff = ea.value - eb.value
        result.difference_errors[(column, a.slug, b.slug)] = se
        comparisons.append(Comparison(column, a.slug, b.slug, diff, diff - z * se,
                                      diff + z * se, normal_p_value(diff, se)))
    return comparisons


def stored_options(methods: list[MethodRows]) -> CIOptions:
    """The options the stored intervals were made with (level, method, resamples and seed of a
    per-image metric's interval, FID's resamples), else the defaults."""
    found: dict[str, Any] = {}
    for m in methods:
        for column in m.summary.get("metric_info", {}):
            ci = m.info(column).get("ci") or {}
            kind = column_kind(m, column)
            if kind == "mean" and ci.get("method") in METHODS and "level" not in found:
                found.update(level=ci["level"], method=ci["method"],
                             resamples=ci["resamples"], seed=ci["seed"])
            elif kind == "fid" and ci.get("resamples"):  # its own, the first N of the same
                found.setdefault("fid_resamples", ci["resamples"])
    return CIOptions(**found)


def statistics_with_stored(methods: list[MethodRows], stored: list[dict],
                           options: CIOptions | None = None) -> DatasetStatistics:
    """The statistics of a dataset's methods, reusing what the runs stored (each interval in
    ``summary.json``, the pairs in ``comparisons.json``: ``stored``) and computing a column
    only where a method's interval or a pair's comparison is missing (methods from separate
    runs, a run with ``--ci off``). The same options give the same numbers either way."""
    options = options or stored_options(methods)
    stored_pairs = {(c["metric"], c["a"], c["b"]) for c in stored}
    missing = []
    for column in dict.fromkeys(c for m in methods for c in m.summary.get("metrics", {})):
        members = [m for m in methods if column in m.summary.get("metrics", {})
                   and column_kind(m, column) is not None]
        lacks_interval = any(m.info(column).get("ci", {}).get("level") != options.level
                             for m in members)
        lacks_pair = any((column, a.slug, b.slug) not in stored_pairs and
                         (column, b.slug, a.slug) not in stored_pairs
                         for a, b in itertools.combinations(members, 2))
        if lacks_interval or lacks_pair:
            missing.append(column)
    result = (dataset_statistics(methods, options, only=missing) if missing
              else DatasetStatistics(options))
    slugs = {m.slug for m in methods}
    for m in methods:
        for column in m.summary.get("metrics", {}):
            ci = m.info(column).get("ci")
            if column not in missing and ci:
                result.intervals.setdefault(m.slug, {})[column] = ci
    for c in stored:
        if c["metric"] not in missing and c["a"] in slugs and c["b"] in slugs:
            result.comparisons.append(Comparison(**{k: c.get(k) for k in (
                "metric", "a", "b", "diff", "low", "high", "p", "p_holm")}))
    return result
