"""NIQE building blocks, vectorised over every block of a batch: AGGD features, block split and
the MATLAB-style bicubic half-size resize (official BasicSR ``imresize(img, 0.5,
antialiasing=True)``, float32)."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

# Block-product shifts of the official ``compute_feature`` (np.roll within each block).
PAIR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


@lru_cache(maxsize=4)
def _aggd_grid(device: torch.device) -> tuple[torch.Tensor, ...]:
    """The official shape grid 0.2:0.001:10 with r(gam) and the gamma ratios the features need,
    computed once with the official expressions (scipy, float64)."""
    from scipy.special import gamma

    gam = np.arange(0.2, 10.001, 0.001)
    rec = np.reciprocal(gam)
    r_gam = np.square(gamma(rec * 2)) / (gamma(rec) * gamma(rec * 3))
    if not np.all(np.diff(r_gam) > 0):  # nearest-grid lookup below relies on it
        raise RuntimeError("AGGD grid r(gamma) is not increasing")
    beta_factor = np.sqrt(gamma(1 / gam) / gamma(3 / gam))
    mean_factor = gamma(2 / gam) / gamma(1 / gam)
    return tuple(torch.from_numpy(a).to(device) for a in (gam, r_gam, beta_factor, mean_factor))


def _nearest_grid_index(r_gam: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """argmin_i (r_gam[i] - target)^2 for increasing r_gam, first index on ties, 0 for NaN
    (what np.argmin returns), without materialising the N x 9801 matrix."""
    hi = torch.searchsorted(r_gam, target.contiguous()).clamp(1, len(r_gam) - 1)
    lo = hi - 1
    pick_lo = (r_gam[lo] - target) ** 2 <= (r_gam[hi] - target) ** 2
    return torch.where(target.isnan(), 0, torch.where(pick_lo, lo, hi))


_CHUNK_ROWS = 64  # rows per step: temporaries stay small (no page faults), ~5x faster on CPU


def _moments(rows: torch.Tensor) -> torch.Tensor:
    """R x n -> R x 5: sum x^2, sum x^2 over x < 0, sum |x| (float64 sums of x's dtype
    squares/values, as the official squares in float32), and the counts of x < 0 and x > 0."""
    sq = rows * rows
    negative = rows < 0
    return torch.stack([sq.double().sum(-1), (sq * negative).double().sum(-1),
                        rows.abs().double().sum(-1), negative.sum(-1).double(),
                        (rows > 0).sum(-1).double()], dim=-1)


def _moments_numpy(rows: np.ndarray) -> np.ndarray:
    """``_moments`` with numpy: on CPU, many small single-threaded numpy steps beat torch's
    multi-threaded ones, which stall on a loaded machine (4x slower there)."""
    sq = rows * rows
    negative = rows < 0
    return np.stack([sq.sum(-1, dtype=np.float64), (sq * negative).sum(-1, dtype=np.float64),
                     np.abs(rows).sum(-1, dtype=np.float64), negative.sum(-1),
                     (rows > 0).sum(-1)], axis=-1).astype(np.float64)


def _block_moments(flat: torch.Tensor) -> list[torch.Tensor]:
    """Moments of N x h x w blocks and of their four neighbour products: 5 tensors N x 5."""
    on_cpu = flat.device.type == "cpu"
    blocks = flat.numpy() if on_cpu else flat
    moments, roll = (_moments_numpy, np.roll) if on_cpu else (_moments, torch.roll)
    out: list[list] = [[] for _ in range(1 + len(PAIR_SHIFTS))]
    for start in range(0, len(blocks), _CHUNK_ROWS):
        chunk = blocks[start:start + _CHUNK_ROWS]
        out[0].append(moments(chunk.reshape(len(chunk), -1)))
        for k, shift in enumerate(PAIR_SHIFTS, start=1):
            product = chunk * roll(chunk, shift, (-2, -1))
            out[k].append(moments(product.reshape(len(chunk), -1)))
    if on_cpu:
        return [torch.from_numpy(np.concatenate(m)) for m in out]
    return [torch.cat(m) for m in out]


def aggd_parameters(moments: torch.Tensor, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Official ``estimate_aggd_param`` from ``_moments`` rows of n values each: (alpha, beta_l,
    beta_r) float64 and alpha's position on the grid. Arithmetic is in ``dtype`` (float32 in the
    official mode, as numpy there) except the means, summed in float64 and rounded to dtype:
    they differ from numpy's float32 pairwise means by ~1e-7 relative, which moves an AGGD shape
    to the neighbouring grid point once in a few hundred blocks (scores stay within 6e-4 on the
    reference set; float32 torch sums reach 3e-3). Empty sides give NaN as officially."""
    gam, r_gam, beta_factor, _ = _aggd_grid(moments.device)
    sum_sq, sum_sq_neg, sum_abs, n_neg, n_pos = moments.unbind(-1)
    left_std = (sum_sq_neg / n_neg).to(dtype).sqrt()
    right_std = ((sum_sq - sum_sq_neg) / n_pos).to(dtype).sqrt()
    gammahat = left_std / right_std
    rhat = (sum_abs / n).to(dtype) ** 2 / (sum_sq / n).to(dtype)
    rhatnorm = (rhat * (gammahat ** 3 + 1) * (gammahat + 1)) / ((gammahat ** 2 + 1) ** 2)
    index = _nearest_grid_index(r_gam, rhatnorm.to(torch.float64))
    factor = beta_factor[index]
    left, right = left_std.to(torch.float64) * factor, right_std.to(torch.float64) * factor
    return gam[index], left, right, index


def aggd_block_features(blocks: torch.Tensor) -> torch.Tensor:
    """... x h x w MSCN blocks -> ... x 18 features (official ``compute_feature`` order)."""
    mean_factor = _aggd_grid(blocks.device)[3]
    flat = blocks.reshape(-1, *blocks.shape[-2:])
    n = flat.shape[-1] * flat.shape[-2]
    params = [aggd_parameters(m, n, blocks.dtype) for m in _block_moments(flat)]
    alpha, beta_l, beta_r, _ = params[0]
    feats = [alpha, (beta_l + beta_r) / 2]
    for alpha, beta_l, beta_r, index in params[1:]:
        feats += [alpha, (beta_r - beta_l) * mean_factor[index], beta_l, beta_r]
    return torch.stack(feats, dim=-1).view(*blocks.shape[:-2], 18)


def split_blocks(images: torch.Tensor, size: int) -> torch.Tensor:
    """B x H x W (multiples of ``size``) -> B x N x size x size, blocks ordered column by column
    (the official loop runs over block columns outside, rows inside)."""
    b, h, w = images.shape
    blocks = images.reshape(b, h // size, size, w // size, size).permute(0, 3, 1, 2, 4)
    return blocks.reshape(b, -1, size, size)


def _cubic(x: torch.Tensor) -> torch.Tensor:
    absx = x.abs()
    absx2, absx3 = absx ** 2, absx ** 3
    inner = (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1).to(x.dtype)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((absx > 1) & (absx <= 2)).to(x.dtype)
    return inner + outer


@lru_cache(maxsize=16)
def _half_resize_taps(in_length: int) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """MATLAB's antialiased bicubic at scale 0.5 along one axis, as the official code sets it
    up: float32 weights (out_length x taps; kernel width 8, normalised per row, all-zero edge
    taps dropped), each output's first tap as an offset into the padded input, and the padded
    input's source indices (symmetric, edge-including reflection at both borders)."""
    scale, kernel_width = 0.5, 4 / 0.5
    out_length = math.ceil(in_length * scale)
    x = torch.linspace(1, out_length, out_length)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left.view(-1, 1) + torch.linspace(0, taps - 1, taps).view(1, -1)
    weights = scale * _cubic((u.view(-1, 1) - indices) * scale)
    weights = weights / weights.sum(1, keepdim=True)
    zeros = (weights == 0).sum(0)
    keep = torch.ones(taps, dtype=torch.bool)
    keep[0], keep[-1] = bool(zeros[0] == 0), bool(zeros[-1] == 0)
    weights, indices = weights[:, keep].contiguous(), indices[:, keep].long() - 1
    first = int(indices.min())
    padded = torch.arange(first, int(indices.max()) + 1)
    padded = torch.where(padded < 0, -padded - 1, padded)
    padded = torch.where(padded >= in_length, 2 * in_length - 1 - padded, padded)
    return weights, (indices[:, 0] - first).tolist(), padded


def _resize_rows(x: torch.Tensor) -> torch.Tensor:
    """Halve the height of x (B x H x W). Each output row is one ``mv`` of the W x taps matrix
    of its (padded) input rows with the weights: the product the official code evaluates, with
    the same memory layout, hence the same BLAS kernel and float32 rounding (bit-identical,
    checked), for all images of the batch at once."""
    weights, start, padded = _half_resize_taps(x.shape[-2])
    taps = weights.shape[1]
    lines = x.transpose(0, 1).reshape(x.shape[-2], -1)[padded.to(x.device)]  # rows contiguous
    out = torch.stack([lines[s:s + taps].T.mv(w) for w, s in zip(weights.to(x), start)])
    return out.view(-1, x.shape[0], x.shape[-1]).transpose(0, 1)


def _resize_columns(x: torch.Tensor) -> torch.Tensor:
    """Halve the width of x (B x H x W): each output column is one ``mv`` of a (B*H) x taps
    view (row stride = padded width, as the official) with the weights."""
    weights, start, padded = _half_resize_taps(x.shape[-1])
    taps = weights.shape[1]
    rows = x.reshape(-1, x.shape[-1])[:, padded.to(x.device)]
    out = torch.stack([rows[:, s:s + taps].mv(w) for w, s in zip(weights.to(x), start)], dim=-1)
    return out.view(*x.shape[:-1], -1)


def imresize_half(images: torch.Tensor) -> torch.Tensor:
    """MATLAB ``imresize(img, 0.5)`` (bicubic, antialiased) of B x H x W float32 images, height
    first then width as the official code."""
    return _resize_columns(_resize_rows(images).contiguous())
