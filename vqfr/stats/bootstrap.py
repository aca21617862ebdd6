"""Bootstrap intervals and p-values for dataset-level means of per-image values.

Every statistic here is a *ratio mean* over the images that count: ``sum(x_i k_i) / sum(k_i)``
with ``k_i = 1`` for an image that has a value and passes the metric's exclusion rule, else 0.
That covers a plain mean (all images count), a metric where some images have no value (an empty
cell in ``per_image.csv``: skipped) and Deg.'s "pairs under 1 degree are excluded" rule, which
is applied inside every resample (a resample's Deg. is the mean over *its* images at or above 1
degree), exactly as the official script applies it to the whole set.

Resampling is over images, with replacement (Efron's nonparametric bootstrap). A resample is a
row of counts ``c`` (how often each image was drawn), so a statistic's whole bootstrap
distribution is one matrix-vector product ``C @ (x * k) / C @ k`` per block of resamples (one
per column, so that its value does not depend on the other columns), and the *same* resampled
images serve every method: that is the paired bootstrap
(a difference of two methods is the difference of their statistics on the same resample).

Resamples are ``numpy.random.default_rng(seed).integers(0, n, (rows, n))`` blocks of
``rows = max(1, BLOCK_DRAWS // n)`` resamples, the draw ``scipy.stats.bootstrap`` makes for one
sample when everything fits one block: the same seed gives scipy's resamples (tested). They
depend only on (seed, n, resamples), so a sharded or resumed run, and ``vqfr-eval report``
rebuilding the numbers later, get the same intervals.

Intervals (Efron & Tibshirani 1993, ch. 13-14; as ``scipy.stats.bootstrap``): ``percentile``
takes the (1 - level)/2 and (1 + level)/2 quantiles (numpy's linear interpolation) of the
bootstrap distribution; ``bca`` moves them by the bias correction z0 (from the share of resamples
below the estimate, ties counted half) and the acceleration a (from the jackknife, which for a
ratio mean is exact and O(n)).

p-values (two-sided, of "the statistic is 0", used for differences of two methods) invert the
same interval: p is the smallest 1 - level at which the interval excludes 0, so p < 1 - level
exactly when 0 lies outside the interval (up to quantile interpolation). With B resamples the
smallest p is 1 / (B + 1): the position of 0 in the bootstrap distribution is counted as
``(1 + #below + #at-or-below) / (2 (B + 1))``. Identical methods (every resampled difference 0)
get p = 1; a constant shift gets the smallest p.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr, ndtri

METHODS = ("bca", "percentile")
BLOCK_DRAWS = 1 << 22          # image draws per block of resamples (32 MiB of int64)


@dataclass(frozen=True)
class Resampler:
    """The resamples of one dataset: ``n`` images, ``resamples`` rows, ``seed``."""

    n: int
    resamples: int
    seed: int | tuple[int, ...] = 0

    @property
    def block_rows(self) -> int:
        return max(1, BLOCK_DRAWS // max(self.n, 1))

    def index_blocks(self, limit: int | None = None) -> Iterator[np.ndarray]:
        """Blocks of resamples as image indices, rows x n (the first ``limit`` resamples)."""
        rng = np.random.default_rng(self.seed)
        total = self.resamples if limit is None else min(limit, self.resamples)
        done = 0
        while done < total:
            rows = min(self.block_rows, self.resamples - done)
            block = rng.integers(0, self.n, (rows, self.n))
            keep = min(rows, total - done)
            yield block[:keep]
            done += rows

    def count_blocks(self, limit: int | None = None) -> Iterator[np.ndarray]:
        """The same resamples as counts per image, rows x n float64."""
        for block in self.index_blocks(limit):
            rows = block.shape[0]
            flat = (block + self.n * np.arange(rows)[:, None]).ravel()
            yield np.bincount(flat, minlength=rows * self.n).reshape(rows, self.n).astype(
                np.float64)


def weights_of(values: np.ndarray, exclude_below: float | None = None) -> np.ndarray:
    """``k``: 1 for images whose value counts (finite or infinite, not NaN; not under the
    exclusion threshold), else 0."""
    keep = ~np.isnan(values)
    if exclude_below is not None:
        keep &= ~(values < exclude_below)
    return keep.astype(np.float64)


def ratio_estimate(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The statistic of each column of ``values`` (n x m) on the full set."""
    x = np.where(keep > 0, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x * keep).sum(0) / keep.sum(0)


def ratio_bootstrap(resampler: Resampler, values: np.ndarray, keep: np.ndarray,
                    limit: int | None = None) -> np.ndarray:
    """Bootstrap distribution, B x m: the statistic of every column on every resample."""
    x = np.where(keep > 0, values, 0.0) * keep
    out = []
    for counts in resampler.count_blocks(limit):
        sums = np.empty((len(counts), x.shape[1]))
        for j in range(x.shape[1]):
            # one product per column: a matrix product's summation order depends on the shape
            # of the whole, so a column's numbers would change in the last bits with the other
            # metrics and methods of the run
            sums[:, j] = counts @ x[:, j]
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(sums / (counts @ keep))      # sums of integers: exact in any order
    return np.concatenate(out) if out else np.zeros((0, values.shape[1]))


def ratio_jackknife(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Leave-one-image-out statistics, n x m (exact, O(n))."""
    x = np.where(keep > 0, values, 0.0) * keep
    with np.errstate(invalid="ignore", divide="ignore"):
        return (x.sum(0) - x) / (keep.sum(0) - keep)


def _quantile(boot: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.quantile(boot, q, method="linear")


def _position(boot: np.ndarray, value: float) -> float:
    """Share of the bootstrap distribution below ``value``, ties counted half (scipy's
    ``_percentile_of_score``, the estimate of z0)."""
    return (np.count_nonzero(boot < value) + np.count_nonzero(boot <= value)) / (2 * len(boot))


def bca_constants(theta_hat: float, boot: np.ndarray, jack: np.ndarray) -> tuple[float, float]:
    """(z0, a). A jackknife without spread (all images alike) has acceleration 0."""
    z0 = float(ndtri(_position(boot, theta_hat)))
    u = jack.mean() - jack
    spread = float((u ** 2).sum())
    a = float((u ** 3).sum() / (6 * spread ** 1.5)) if spread > 0 else 0.0
    return z0, a


def interval(theta_hat: float, boot: np.ndarray, level: float, method: str = "bca",
             jack: np.ndarray | None = None) -> tuple[float, float]:
    """Two-sided ``level`` interval from a bootstrap distribution (NaN resamples dropped: a
    resample without any counting image has no statistic)."""
    boot = boot[~np.isnan(boot)]
    if len(boot) == 0 or not np.isfinite(theta_hat):
        return (float("nan"), float("nan"))
    alpha = (1 - level) / 2
    probs = np.array([alpha, 1 - alpha])
    if method == "bca":
        if jack is None:
            raise ValueError("a BCa interval needs the jackknife statistics")
        z0, a = bca_constants(theta_hat, boot, jack)
        if np.isfinite(z0):
            z = z0 + ndtri(probs)
            probs = ndtr(z0 + z / (1 - a * z))
    elif method != "percentile":
        raise ValueError(f"interval method must be one of {METHODS}, got {method!r}")
    low, high = _quantile(boot, probs)
    return float(low), float(high)


def p_value(theta_hat: float, boot: np.ndarray, method: str = "bca",
            jack: np.ndarray | None = None) -> float:
    """Two-sided p-value of "the statistic is 0": the ``interval`` inverted (see the module
    notes); at least 1 / (B + 1)."""
    boot = boot[~np.isnan(boot)]
    b = len(boot)
    if b == 0 or not np.isfinite(theta_hat):
        return float("nan")
    floor = 1 / (b + 1)
    q = (1 + np.count_nonzero(boot < 0) + np.count_nonzero(boot <= 0)) / (2 * (b + 1))
    z_alpha = float(ndtri(q))
    if method == "bca":
        z0, a = bca_constants(theta_hat, boot, jack)
        if np.isfinite(z0):
            # q = ndtr(z0 + (z0 + z) / (1 - a (z0 + z))) solved for z
            shift = z_alpha - z0
            denominator = 1 + a * shift
            if denominator <= 0:
                return floor
            z_alpha = shift / denominator - z0
    one_sided = float(ndtr(z_alpha))
    return float(min(1.0, max(floor, 2 * min(one_sided, 1 - one_sided))))


def normal_p_value(theta_hat: float, standard_error: float) -> float:
    """Two-sided p-value of "the statistic is 0" from a normal approximation: 2 Phi(-|t| / se).
    For statistics with few resamples (FID: a few hundred), whose tails a percentile p-value
    cannot reach (it stops at 1 / (B + 1)), and for jackknife standard errors (KID)."""
    if standard_error == 0:
        return 1.0 if theta_hat == 0 else 0.0
    return float(2 * ndtr(-abs(theta_hat) / standard_error))
