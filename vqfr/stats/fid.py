"""Bootstrap of FID over the images: the Fréchet distance of each resample of the restored
set's feature rows (and of the reference rows when the reference is a set of images).

A resample is a count vector c over the N feature rows x_i (``bootstrap.Resampler``, the same
resamples as every per-image metric of the dataset), and its statistics are what ``np.mean`` /
``np.cov`` give on the resampled rows: mu = sum c_i x_i / N, Sigma = sum c_i (x_i - mu)(x_i -
mu)^T / (N - 1). What each resample shares is computed once:

- against fixed reference statistics (the paper's FFHQ file): the reference factor F (Sigma_ref
  = F F^T, Cholesky) and the rows y_i = (x_i - mean) F. A resample's tr sqrt(Sigma Sigma_ref)
  is then tr sqrt(Z^T Z) with Z the rows sqrt(c_i) (y_i - sum c y / N) / sqrt(N - 1) of the drawn
  images: one rank-k update and one symmetric eigenvalue problem (d x d, or N x N when fewer
  images were drawn than d), instead of a covariance, a Cholesky and two d x d products;
- against a reference set of images (``gt`` or a folder), both sides are resampled: the
  reference rows with the *same* counts when they are the ground truth of the same images, with
  an independent resampler when they are another set. Then tr sqrt(Sigma_1 Sigma_2) is the
  nuclear norm of Z_1 Z_2^T, evaluated in the smaller space.

The traces go through ``vqfr.metrics.frechet`` (the suite's Fréchet code: its eigenvalue
tolerance and clamping). The distribution is in float64 throughout, while the official point
estimate keeps a float32 mean (a difference in the last bits of the mean term).

The interval covers the sampling variation of FID at this N, not its bias: FID is biased upwards
roughly in proportion to 1/N, so an interval at N = 180 says nothing about the value at 3000.
A resample has only about 63 % distinct images, so its FID carries that bias at a smaller
effective N: the bootstrap distribution sits *above* the measured FID (by more than its spread
when N is small against the 2048 dimensions). ``centred`` therefore removes that shift (the
bootstrap's bias estimate, mean - estimate) before the quantiles are taken: the interval is the
bootstrap's spread around the measured value, and the shift is recorded beside it.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
from scipy.linalg import blas

from vqfr.metrics.frechet import psd_factor, trace_sqrt_psd
from vqfr.stats.bootstrap import Resampler

SMALL_N_BIAS_NOTE = ("FID is biased (roughly in proportion to 1/N); the interval covers its "
                     "sampling variation at this N only, not that bias")
CENTRED = "percentile, centred on the estimate"


def centred(distribution: np.ndarray, estimate: float) -> tuple[np.ndarray, float]:
    """(the bootstrap distribution moved so that its mean is the estimate, the shift removed)."""
    shift = float(np.mean(distribution) - estimate)
    return distribution - shift, shift


@dataclass
class FidReference:
    """Fixed statistics (``mean``, ``cov``) or reference feature rows (``features``; ``paired``
    when they are the ground truth of the same images, row i with restored row i)."""

    mean: np.ndarray | None = None
    cov: np.ndarray | None = None
    features: np.ndarray | None = None
    paired: bool = False

    @property
    def has_rows(self) -> bool:
        return self.features is not None


def _gram(rows: np.ndarray) -> np.ndarray:
    """The upper triangle of rows^T rows or rows rows^T, whichever is smaller (a rank-k
    update: half a matrix product)."""
    return blas.dsyrk(1.0, rows, trans=1 if rows.shape[0] >= rows.shape[1] else 0)


def _centred_rows(rows: np.ndarray, counts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(Z, weighted mean): the drawn rows, centred on the resample's mean and scaled so that
    Z^T Z is the resample's covariance."""
    drawn = counts > 0
    mean = counts @ rows / n
    z = (rows[drawn] - mean) * np.sqrt(counts[drawn] / (n - 1))[:, None]
    return z, mean


class FidBootstrap:
    """FID of every resample for one reference; ``distribution(features)`` per method."""

    def __init__(self, reference: FidReference, resampler: Resampler, limit: int,
                 reference_resampler: Resampler | None = None) -> None:
        self.reference = reference
        self.resampler = resampler
        self.limit = limit
        self.reference_resampler = reference_resampler
        if reference.has_rows and not reference.paired and reference_resampler is None:
            raise ValueError("a reference set of other images needs its own resampler")
        if not reference.has_rows:
            self.ref_mean = np.asarray(reference.mean, np.float64)
            cov = np.asarray(reference.cov, np.float64)
            self.ref_trace = float(np.trace(cov))
            self.ref_factor = psd_factor(cov)

    def distribution(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, np.float64)
        if self.reference.has_rows:
            return self._both_sides(x)
        return self._fixed_reference(x)

    def _fixed_reference(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        centre = x.mean(0)
        xc = x - centre
        y = xc @ self.ref_factor                 # shared by every resample
        sq_norms = np.einsum("ij,ij->i", xc, xc)
        offset = centre - self.ref_mean
        out = []
        for block in self.resampler.count_blocks(self.limit):
            for counts in block:
                z, _ = _centred_rows(y, counts, n)
                shift = counts @ xc / n
                trace = (counts @ sq_norms - n * shift @ shift) / (n - 1)
                mean_term = float((offset + shift) @ (offset + shift))
                out.append(mean_term + trace + self.ref_trace - 2 * trace_sqrt_psd(_gram(z), upper_only=True))
        return np.array(out)

    def _both_sides(self, x: np.ndarray) -> np.ndarray:
        r = np.asarray(self.reference.features, np.float64)
        n, n_ref = len(x), len(r)
        xc, rc = x - x.mean(0), r - r.mean(0)
        offset = x.mean(0) - r.mean(0)
        # resample by resample: the two sides' blocks hold different numbers of resamples
        # when the sets differ in size (a block holds a fixed number of draws)
        restored = chain.from_iterable(self.resampler.count_blocks(self.limit))
        if self.reference.paired:
            pairs = ((counts, counts) for counts in restored)
        else:
            pairs = zip(restored, chain.from_iterable(
                self.reference_resampler.count_blocks(self.limit)))
        out = []
        for counts, ref_counts in pairs:
            z1, m1 = _centred_rows(xc, counts, n)
            z2, m2 = _centred_rows(rc, ref_counts, n_ref)
            diff = offset + m1 - m2
            traces = float((z1 * z1).sum() + (z2 * z2).sum())
            out.append(float(diff @ diff) + traces - 2 * _trace_sqrt_factors(z1, z2))
        return np.array(out)


def _trace_sqrt_factors(z1: np.ndarray, z2: np.ndarray) -> float:
    """tr sqrt(Z1^T Z1 Z2^T Z2) = nuclear norm of Z1 Z2^T, in the smallest space: directly when
    one side has fewer rows than dimensions, else through the Cholesky factor of Z2^T Z2."""
    d = z1.shape[1]
    if min(len(z1), len(z2)) <= d:
        return trace_sqrt_psd(_gram(z1 @ z2.T), upper_only=True)
    return trace_sqrt_psd(_gram(z1 @ psd_factor(_symmetric(_gram(z2)))), upper_only=True)


def _symmetric(upper: np.ndarray) -> np.ndarray:
    return np.triu(upper) + np.triu(upper, 1).T
