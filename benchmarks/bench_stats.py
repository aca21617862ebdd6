"""Speed of the statistics (``vqfr.stats``) against a straightforward ``scipy.stats.bootstrap``
loop, measured in one run on the same data.

    python benchmarks/bench_stats.py [--images 3000] [--methods 4] [--resamples 2000]
                                     [--fid-resamples 200] [--baseline-fid-resamples 10]
                                     [--both-sides N]

- per-image metrics: every interval and every paired comparison of six metrics (PSNR, SSIM,
  LPIPS, NIQE, Deg. with its "under 1 degree excluded" rule, IDS) of four methods on 3000 images
  (BCa, 2000 resamples): ``vqfr.stats.analysis.dataset_statistics`` vs one
  ``scipy.stats.bootstrap(method="BCa")`` call per interval (per method and metric, and per
  pair with ``paired=True``; its p-value counted from the returned distribution);
- FID of one method, 200 resamples at N = 3000 against fixed reference statistics (the paper's
  FFHQ case): ``vqfr.stats.fid.FidBootstrap`` vs ``scipy.stats.bootstrap`` over image indices with
  one ``np.cov`` + the suite's fast Fréchet distance per resample. The baseline is timed on
  ``--baseline-fid-resamples`` resamples and scaled (its cost per resample is constant).
  ``--both-sides N`` also times N resamples against a reference that is a set of 3000 other
  images (both sides resampled).

Times are wall-clock (with the process's CPU time beside them). On a machine shared with other
jobs, OpenBLAS's threads can slow its LAPACK calls by 10x (measured here: a 2048 eigenvalue problem
0.23 s on the idle machine, 3 s with OPENBLAS_NUM_THREADS=1 and 30 s with 2 threads at a load of
10); run it when the machine is otherwise idle, or with OPENBLAS_NUM_THREADS=1.

The per-image values are synthetic (an image effect shared by the methods, a method effect and
noise, as real per-image metrics are paired); the features are non-Gaussian (absolute values of
correlated normals), 2048-dimensional like Inception pool3.
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from vqfr.metrics.frechet import frechet_distance
from vqfr.stats.analysis import CIOptions, dataset_statistics
from vqfr.stats.bootstrap import Resampler, interval
from vqfr.stats.fid import FidBootstrap, FidReference, centred
from vqfr.stats.rows import MethodRows

METRICS = {  # name: (image mean, image spread, method step, noise, lower is better)
    "psnr": (24.0, 2.5, 0.4, 0.8, False), "ssim": (0.70, 0.06, 0.01, 0.02, False),
    "lpips": (0.35, 0.05, 0.005, 0.02, True), "niqe": (4.5, 0.6, 0.1, 0.4, True),
    "deg": (30.0, 8.0, 1.0, 6.0, True), "ids": (0.60, 0.08, 0.01, 0.04, False),
}
DEG_OPTIONS = {"exclude_identical": True, "identical_below_deg": 1.0}


def synthetic_methods(images: int, methods: int, seed: int = 0) -> list[MethodRows]:
    rng = np.random.default_rng(seed)
    runs = []
    effects = {m: rng.normal(*spec[:2], images) for m, spec in METRICS.items()}
    for k in range(methods):
        values, info = {}, {}
        for metric, (_, _, step, noise, lower) in METRICS.items():
            x = effects[metric] + k * step + rng.normal(0, noise, images)
            if metric == "deg":
                x = np.abs(x)
                x[rng.random(images) < 0.03] = rng.uniform(0, 1, 1)   # "identical" pairs
            values[metric] = x
            info[metric] = {"lower_is_better": lower,
                            "options": DEG_OPTIONS if metric == "deg" else {}}
        summary = {"dataset": {"name": "synthetic", "count": images, "file_list_sha256": "0"},
                   "metrics": {m: float(np.mean(v)) for m, v in values.items()},
                   "metric_info": info}
        runs.append(MethodRows(Path(f"method-{k}"), summary, values))
    return runs


def kept_mean(threshold):
    def statistic(x, axis=-1):
        return np.nanmean(np.where(x >= threshold, x, np.nan), axis=axis)
    return statistic


def baseline_per_image(runs: list[MethodRows], resamples: int) -> int:
    """One scipy.stats.bootstrap call per interval: what a user would write."""
    calls = 0
    for metric in METRICS:
        statistic = kept_mean(1.0) if metric == "deg" else np.mean
        for run in runs:
            scipy_stats.bootstrap((run.values[metric],), statistic, n_resamples=resamples,
                                  method="BCa", rng=np.random.default_rng(0))
            calls += 1
        for a, b in itertools.combinations(runs, 2):
            result = scipy_stats.bootstrap(
                (a.values[metric], b.values[metric]),
                lambda x, y, axis=-1, s=statistic: s(x, axis=axis) - s(y, axis=axis),
                n_resamples=resamples, method="BCa", paired=True, rng=np.random.default_rng(0))
            distribution = result.bootstrap_distribution        # its p-value:
            _ = 2 * min(np.mean(distribution <= 0), np.mean(distribution >= 0))
            calls += 1
    return calls


def synthetic_features(n: int, d: int, rng: np.random.Generator, shift: float = 0.0):
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return np.abs(rng.normal(size=(n, d)) @ mixing + shift).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--methods", type=int, default=4)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--fid-resamples", type=int, default=200)
    parser.add_argument("--baseline-fid-resamples", type=int, default=10)
    parser.add_argument("--both-sides", type=int, default=0, metavar="N")
    args = parser.parse_args()

    runs = synthetic_methods(args.images, args.methods)
    pairs = args.methods * (args.methods - 1) // 2
    print(f"per-image metrics: {len(METRICS)} metrics x {args.methods} methods x "
          f"{args.images} images, {args.resamples} resamples, BCa: "
          f"{len(METRICS) * args.methods} intervals + {len(METRICS) * pairs} paired comparisons")
    start, cpu = time.perf_counter(), time.process_time()
    stats = dataset_statistics(runs, CIOptions(resamples=args.resamples))
    ours, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
    assert len(stats.comparisons) == len(METRICS) * pairs
    start, cpu = time.perf_counter(), time.process_time()
    calls = baseline_per_image(runs, args.resamples)
    base, base_cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"  vqfr.stats:                   {ours:8.2f} s (CPU {ours_cpu:.2f} s)")
    print(f"  scipy.stats.bootstrap loop:   {base:8.2f} s (CPU {base_cpu:.2f} s, {calls} calls)")
    print(f"  ratio: {base / ours:.1f}x")

    rng = np.random.default_rng(1)
    d = 2048
    features = synthetic_features(args.images, d, rng)
    reference_rows = synthetic_features(args.images, d, rng, shift=0.1).astype(np.float64)
    ref_mean, ref_cov = reference_rows.mean(0), np.cov(reference_rows, rowvar=False)
    print(f"FID, one method, N = {args.images}, d = {d}, fixed reference statistics")
    start, cpu = time.perf_counter(), time.process_time()
    engine = FidBootstrap(FidReference(mean=ref_mean, cov=ref_cov),
                          Resampler(args.images, max(args.resamples, args.fid_resamples), 0),
                          args.fid_resamples)
    distribution = engine.distribution(features)
    ours, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
    x = features.astype(np.float64)
    value = frechet_distance(x.mean(0), np.cov(x, rowvar=False), ref_mean, ref_cov)
    spread, shift = centred(distribution, value)
    low, high = interval(value, spread, 0.95, "percentile")
    print(f"  FID {value:.3f}, 95% interval [{low:.3f}, {high:.3f}] (resamples' mean "
          f"{shift:+.3f} above it: the small-N bias at ~63 % distinct images)")

    def fid_of(index):
        rows = features[index].astype(np.float64)
        return frechet_distance(rows.mean(0), np.cov(rows, rowvar=False), ref_mean, ref_cov)

    start, cpu = time.perf_counter(), time.process_time()
    scipy_stats.bootstrap((np.arange(args.images),), fid_of, vectorized=False,
                          n_resamples=args.baseline_fid_resamples, method="percentile",
                          rng=np.random.default_rng(0))
    scale = args.fid_resamples / args.baseline_fid_resamples
    base = (time.perf_counter() - start) * scale
    base_cpu = (time.process_time() - cpu) * scale
    print(f"  vqfr.stats, {args.fid_resamples} resamples:          {ours:8.1f} s "
          f"(CPU {ours_cpu:.1f} s)")
    print(f"  scipy.stats.bootstrap loop, {args.fid_resamples} resamples: {base:8.1f} s "
          f"(CPU {base_cpu:.1f} s; timed on {args.baseline_fid_resamples}, scaled)")
    print(f"  ratio: {base / ours:.1f}x")

    if args.both_sides:
        print(f"FID against a reference set of {args.images} other images (both sides "
              "resampled), ours only")
        start, cpu = time.perf_counter(), time.process_time()
        engine = FidBootstrap(FidReference(features=reference_rows.astype(np.float32)),
                              Resampler(args.images, args.resamples, 0), args.both_sides,
                              Resampler(args.images, args.resamples, (0, 1)))
        engine.distribution(features)
        print(f"  vqfr.stats, {args.both_sides} resamples:          "
              f"{time.perf_counter() - start:8.1f} s (CPU {time.process_time() - cpu:.1f} s)")


if __name__ == "__main__":
    main()
