"""Sample-size advice: what a set of N images can resolve, and how many images a difference
needs.

Both come from the run's own bootstrap, scaled as 1/sqrt(N) (the standard error of a mean, and
to first order of FID and KID; FID's bias, which also shrinks with N, is not part of it):

- for each method: the interval half-width h at the run's N, and the N at which the half-width
  would be ``delta``: N * (h / delta)^2;
- for each pair of methods: the standard error s of their paired difference at N, and the N at
  which a true difference of ``delta`` is found with probability ``power`` by a two-sided test at
  1 - level: N * ((z_(1 - alpha/2) + z_power) * s / delta)^2 (the normal approximation).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.special import ndtri

from vqfr.stats.analysis import DatasetStatistics
from vqfr.stats.rows import MethodRows


@dataclass
class MethodAdvice:
    slug: str
    count: int
    value: float
    half_width: float | None
    images_for_half_width: int | None


@dataclass
class PairAdvice:
    a: str
    b: str
    diff: float
    standard_error: float
    images_needed: int | None


def _images(count: int, ratio: float) -> int | None:
    if not math.isfinite(ratio):
        return None
    return max(2, math.ceil(count * ratio ** 2))


def sample_size_advice(stats: DatasetStatistics, methods: list[MethodRows], column: str,
                       delta: float, power: float = 0.8
                       ) -> tuple[list[MethodAdvice], list[PairAdvice]]:
    if delta <= 0 or not 0 < power < 1:
        raise ValueError("delta must be positive and power in (0, 1)")
    per_method = []
    for m in methods:
        ci = stats.intervals.get(m.slug, {}).get(column)
        if not ci or ci.get("low") is None:
            continue
        half_width = (ci["high"] - ci["low"]) / 2
        per_method.append(MethodAdvice(m.slug, m.count, m.value(column), half_width,
                                       _images(m.count, half_width / delta)))
    z = float(ndtri(1 - stats.options.alpha / 2) + ndtri(power))
    count = methods[0].count if methods else 0
    pairs = []
    for c in stats.comparisons:
        if c.metric != column:
            continue
        se = stats.difference_errors.get((column, c.a, c.b))
        if se is None:
            continue
        pairs.append(PairAdvice(c.a, c.b, c.diff, se, _images(count, z * se / delta)))
    return per_method, pairs
