"""Fréchet distance between two Gaussians, as the official FID computes it, only faster.

Official (TencentARC/VQFR ``vqfr/metrics/fid.py``, pytorch-fid ``calculate_frechet_distance``):
``|mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrtm(S1 S2)`` with ``scipy.linalg.sqrtm``; a non-finite
root -> add 1e-6 I to both covariances and redo; a complex root -> ValueError if any diagonal
imaginary part exceeds 1e-3, else its real part. ``|mu1 - mu2|^2`` is evaluated in the means'
own dtype (float32 for features' means), which we keep.

Fast path (``method="eigh"``): for PSD S1 = F F^T (F its Cholesky factor, or for a singular S1
its eigh root) the eigenvalues of S1 S2 equal those of the symmetric PSD matrix F^T S2 F, so
tr sqrtm(S1 S2) = sum sqrt(eigvalsh(F^T S2 F)): a Cholesky, two products and one symmetric
eigenvalue problem in float64 replace the Schur-based sqrtm (see benchmarks/bench_metrics.py;
within rtol 1e-6 of the official value on the reference cases). The official branches map onto the
eigenvalues: rounding makes tiny negative eigenvalues (singular covariances, N < d samples),
whose square roots are the tiny imaginary parts the official code drops, so they count as 0; a
negative eigenvalue with |sqrt| > 1e-3 is a covariance that is not PSD, where the official code
raises (its check is on the diagonal of the complex root; ours on the eigenvalues, a bound of
the same size). A non-finite root cannot come out of eigh for finite input, so the 1e-6 I
retry only exists in the ``method="sqrtm"`` path, the official algorithm kept for comparison.

numpy/scipy only, so the statistics room (``vqfr.stats``: FID bootstrap intervals) uses the
same code without importing torch. (Measured on the 2-core CPU: a whole 2048-dimensional
distance takes the same single-thread CPU time as the former torch path, 1.3 s against 1.4 s;
a 2048 eigenvalue problem with 2 threads on the idle machine took 0.23 s with scipy's ``eigh``,
1.5 s with torch's ``eigvalsh``.)
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import linalg

SQRTM_EPS = 1e-6
IMAG_ATOL = 1e-3


def _as_numpy(x) -> np.ndarray:
    """numpy arrays as they are; torch tensors (duck-typed: this module does not import torch,
    so statistics code can use it without torch) through ``.numpy()``."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def trace_sqrt_psd(inner: np.ndarray, upper_only: bool = False) -> float:
    """tr sqrtm(inner) = sum sqrt(eigenvalues) of a symmetric PSD matrix (float64), with the
    official code's tolerance for the rounding of singular products (see the module notes).
    ``upper_only``: only the upper triangle is filled (a BLAS rank-k update's output)."""
    inner = np.asarray(inner, dtype=np.float64)
    if inner.size == 0:
        return 0.0
    if not upper_only:
        inner = (inner + inner.T) / 2
    eigval = linalg.eigh(inner, lower=False, eigvals_only=True, check_finite=False,
                         driver="evd")
    most_negative = float(eigval.min())
    if most_negative < 0 and np.sqrt(-most_negative) > IMAG_ATOL:
        raise ValueError(f"imaginary component {np.sqrt(-most_negative):.3g} in the covariance "
                         "product's square root: a covariance is not positive semi-definite")
    return float(np.sqrt(np.clip(eigval, 0, None)).sum())


def psd_factor(sigma: np.ndarray) -> np.ndarray:
    """A d x d matrix F with sigma = F F^T: the Cholesky factor when sigma is positive
    definite, else the eigh root (negative rounding eigenvalues count as 0)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    try:
        return linalg.cholesky(sigma, lower=True, check_finite=False)
    except linalg.LinAlgError:
        eigval, eigvec = linalg.eigh(sigma, check_finite=False)
        return eigvec * np.sqrt(np.clip(eigval, 0, None))


def trace_sqrt_product(sigma1, sigma2, factor1=None) -> float:
    """tr sqrtm(sigma1 @ sigma2) for symmetric PSD matrices (float64).

    ``factor1``: optional d x r matrix A with sigma1 = A A^T (e.g. the centred features divided
    by sqrt(N - 1)); then eig(sigma1 sigma2) = eig(A^T sigma2 A), an r x r problem, much cheaper
    when a sample has fewer images than feature dimensions."""
    s2 = _as_numpy(sigma2).astype(np.float64, copy=False)
    factor1 = (psd_factor(_as_numpy(sigma1)) if factor1 is None
               else _as_numpy(factor1).astype(np.float64, copy=False))
    return trace_sqrt_psd(factor1.T @ s2 @ factor1)


def _trace_sqrtm_official(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """The official scipy.linalg.sqrtm path with its retry and imaginary-part checks."""
    def sqrtm(a: np.ndarray) -> np.ndarray:
        # scipy >= 1.16 deprecates disp=; the default returns the root alone.
        return linalg.sqrtm(a)

    covmean = sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * SQRTM_EPS
        covmean = sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAG_ATOL):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(mu1, sigma1, mu2, sigma2, method: Literal["eigh", "sqrtm"] = "eigh",
                     factor1=None) -> float:
    """FID between N(mu1, sigma1) and N(mu2, sigma2); inputs are numpy arrays or tensors.
    ``factor1`` (eigh only): a d x r matrix with sigma1 = factor1 @ factor1.T, see
    ``trace_sqrt_product``."""
    mu1, mu2 = np.atleast_1d(_as_numpy(mu1)), np.atleast_1d(_as_numpy(mu2))
    sigma1 = np.atleast_2d(_as_numpy(sigma1)).astype(np.float64, copy=False)
    sigma2 = np.atleast_2d(_as_numpy(sigma2)).astype(np.float64, copy=False)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics differ in shape: mean {mu1.shape} vs {mu2.shape}, "
                         f"covariance {sigma1.shape} vs {sigma2.shape}")
    if not all(np.isfinite(a).all() for a in (mu1, mu2, sigma1, sigma2)):
        raise ValueError("FID statistics contain NaN or inf")
    diff = mu1 - mu2  # in the means' dtype, as the official code (float32 for feature means)
    if method == "eigh":
        tr_covmean = trace_sqrt_product(sigma1, sigma2, factor1)
    elif method == "sqrtm":
        tr_covmean = _trace_sqrtm_official(sigma1, sigma2)
    else:
        raise ValueError(f"method must be 'eigh' or 'sqrtm', got {method!r}")
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
