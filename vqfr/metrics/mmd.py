"""Kernel Inception Distance (Bińkowski et al., ICLR 2018, "Demystifying MMD GANs"): the
unbiased estimate of the squared MMD between Inception pool3 features with the cubic polynomial
kernel k(x, y) = (x.y / d + 1)^3, and its jackknife standard error.

The estimate is the U-statistic over the whole sets (every pair i != j), not the mean over random
subsets of 1000 that clean-fid and torchmetrics report; both are unbiased for the same quantity.
Standard error: the delete-one jackknife, exact in O(n^2) from the kernel matrices' row sums.
With ``paired=True`` (the reference rows are the ground truth of the same images) image i is
left out of both sets at once; otherwise each set is left out of separately and the two
jackknife variances add (two independent samples).

numpy only, so ``vqfr.stats`` recomputes it from stored feature rows without torch.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a @ b.T / a.shape[1] + 1.0) ** 3


@dataclass
class KidEstimate:
    value: float
    standard_error: float
    leave_out: np.ndarray               # the jackknife values over the restored images
    leave_out_reference: np.ndarray | None   # over the reference images (independent sets)


def kid(features: np.ndarray, reference: np.ndarray, paired: bool = False) -> KidEstimate:
    """Unbiased MMD^2 between the rows of ``features`` (m x d) and ``reference`` (n x d)."""
    m, n = len(features), len(reference)
    if m < 3 or n < 3:
        raise ValueError(f"KID needs at least 3 images on each side (got {m} and {n})")
    if paired and m != n:
        raise ValueError(f"paired KID needs as many reference rows as images ({n} != {m})")
    kxx = polynomial_kernel(features, features)
    kyy = polynomial_kernel(reference, reference)
    kxy = polynomial_kernel(features, reference)
    rx = kxx.sum(1) - np.diag(kxx)          # off-diagonal row sums
    ry = kyy.sum(1) - np.diag(kyy)
    sxx, syy = rx.sum(), ry.sum()
    row_xy, col_xy = kxy.sum(1), kxy.sum(0)
    sxy = row_xy.sum()
    value = sxx / (m * (m - 1)) + syy / (n * (n - 1)) - 2 * sxy / (m * n)
    if paired:
        leave_out = ((sxx - 2 * rx) / ((m - 1) * (m - 2)) + (syy - 2 * ry) / ((m - 1) * (m - 2))
                     - 2 * (sxy - row_xy - col_xy + np.diag(kxy)) / ((m - 1) ** 2))
        leave_out_reference = None
    else:
        leave_out = ((sxx - 2 * rx) / ((m - 1) * (m - 2)) + syy / (n * (n - 1))
                     - 2 * (sxy - row_xy) / ((m - 1) * n))
        leave_out_reference = (sxx / (m * (m - 1)) + (syy - 2 * ry) / ((n - 1) * (n - 2))
                               - 2 * (sxy - col_xy) / (m * (n - 1)))
    variance = jackknife_variance(leave_out)
    if leave_out_reference is not None:
        variance += jackknife_variance(leave_out_reference)
    return KidEstimate(float(value), float(np.sqrt(variance)), leave_out, leave_out_reference)


def jackknife_variance(leave_out: np.ndarray) -> float:
    """(n - 1) / n * sum (theta_(i) - mean)^2."""
    n = len(leave_out)
    return float((n - 1) / n * ((leave_out - leave_out.mean()) ** 2).sum())
