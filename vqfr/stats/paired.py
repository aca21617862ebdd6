"""Paired comparisons of two methods on the same images: Holm's correction and the Wilcoxon
signed-rank option. The paired bootstrap itself is ``bootstrap.py`` (one resample, every method)."""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats as scipy_stats

TESTS = ("bootstrap", "wilcoxon")


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input order. NaN stays NaN
    and does not count in the family."""
    present = [(p, i) for i, p in enumerate(p_values) if not math.isnan(p)]
    adjusted = [float("nan")] * len(p_values)
    running = 0.0
    family = len(present)
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (family - rank) * p))
        adjusted[i] = running
    return adjusted


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of a - b on the images where both count (NaN in
    either: left out). Zero differences are dropped (Wilcoxon's rule, scipy's default); with no
    difference left the methods are identical on these images: p = 1."""
    both = ~(np.isnan(a) | np.isnan(b))
    diff = a[both] - b[both]
    if not np.any(diff != 0):
        return 1.0 if len(diff) else float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # scipy's note on few nonzero pairs
        return float(scipy_stats.wilcoxon(a[both], b[both]).pvalue)
