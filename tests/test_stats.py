"""vqfr.stats against references: scipy.stats.bootstrap (BCa and percentile, the same data and
resample count), scipy.stats.wilcoxon, the Fréchet distance of explicitly resampled rows, KID
from its definition, and cases with a known answer."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from vqfr.metrics.frechet import frechet_distance
from vqfr.metrics.mmd import kid
from vqfr.stats.bootstrap import (
    Resampler,
    interval,
    p_value,
    ratio_bootstrap,
    ratio_estimate,
    ratio_jackknife,
    weights_of,
)
from vqfr.stats.fid import FidBootstrap, FidReference
from vqfr.stats.paired import holm, wilcoxon_p

LEVEL = 0.95


def ours(values: np.ndarray, method: str, resamples: int, seed: int,
         exclude_below: float | None = None) -> tuple[float, float]:
    x = values[:, None]
    k = weights_of(x, exclude_below)
    boot = ratio_bootstrap(Resampler(len(values), resamples, seed), x, k)
    jack = ratio_jackknife(x, k)
    return interval(float(ratio_estimate(x, k)[0]), boot[:, 0], LEVEL, method, jack[:, 0])


def scipys(statistic, data: tuple, method: str, resamples: int, seed: int, **kw):
    result = scipy_stats.bootstrap(data, statistic, n_resamples=resamples, method=method,
                                   confidence_level=LEVEL, rng=np.random.default_rng(seed),
                                   **kw)
    return result.confidence_interval, result


def mean_of_kept(threshold):
    def statistic(x, axis=-1):
        kept = np.where(x >= threshold, x, np.nan)
        return np.nanmean(kept, axis=axis)
    return statistic


@pytest.fixture(scope="module")
def skewed():
    """Skewed per-image values (like LPIPS or Deg.): BCa and percentile differ clearly here."""
    return np.random.default_rng(7).lognormal(0.0, 0.9, size=150)


@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_same_resamples_as_scipy_give_scipys_interval(skewed, method):
    """Same seed: the same resampled images as scipy draws, so the same interval to rounding."""
    low, high = ours(skewed, method.lower(), 3000, seed=11)
    ref, _ = scipys(np.mean, (skewed,), method, 3000, seed=11)
    assert low == pytest.approx(ref.low, rel=1e-10)
    assert high == pytest.approx(ref.high, rel=1e-10)


@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_other_resamples_agree_with_scipy_within_monte_carlo_error(skewed, method):
    """Other seeds: the endpoints differ by Monte-Carlo error only (its standard deviation is
    about 0.06 bootstrap standard errors at B = 4000; allowed: 0.2). BCa and percentile differ
    by more than that here, so the test tells them apart."""
    resamples = 4000
    low, high = ours(skewed, method.lower(), resamples, seed=1)
    ref, result = scipys(np.mean, (skewed,), method, resamples, seed=2)
    tolerance = 0.2 * result.standard_error
    assert abs(low - ref.low) <= tolerance and abs(high - ref.high) <= tolerance
    other, _ = scipys(np.mean, (skewed,), "percentile" if method == "BCa" else "BCa",
                      resamples, seed=2)
    assert max(abs(other.low - ref.low), abs(other.high - ref.high)) > tolerance


@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_deg_rule_applied_inside_each_resample(method):
    """Deg.: angles under 1 degree are left out of the mean of every resample, exactly as a
    statistic that drops them from each resampled set (scipy, same seed)."""
    rng = np.random.default_rng(3)
    angles = np.concatenate([rng.uniform(0, 1, 30), rng.gamma(4, 5, 170)])
    rng.shuffle(angles)
    low, high = ours(angles, method.lower(), 2000, seed=5, exclude_below=1.0)
    ref, _ = scipys(mean_of_kept(1.0), (angles,), method, 2000, seed=5)
    assert (low, high) == pytest.approx((ref.low, ref.high), rel=1e-10)
    plain, _ = scipys(np.mean, (angles,), method, 2000, seed=5)
    assert low > plain.low + 0.5          # dropping the small angles moves the interval up


def test_images_without_a_value_are_skipped():
    rng = np.random.default_rng(4)
    values = rng.normal(3, 1, 120)
    values[rng.choice(120, 15, replace=False)] = np.nan
    low, high = ours(values, "bca", 2000, seed=9)
    ref, _ = scipys(lambda x, axis=-1: np.nanmean(x, axis=axis), (values,), "BCa", 2000, seed=9)
    assert (low, high) == pytest.approx((ref.low, ref.high), rel=1e-10)


@pytest.mark.parametrize("method", ["BCa", "percentile"])
def test_paired_difference_matches_scipys_paired_bootstrap(method):
    rng = np.random.default_rng(5)
    a = rng.gamma(2, 0.1, 200)
    b = a + rng.normal(0.01, 0.05, 200)
    x = np.stack([a, b], 1)
    k = np.ones_like(x)
    boot = ratio_bootstrap(Resampler(200, 2500, 13), x, k)
    jack = ratio_jackknife(x, k)
    theta = ratio_estimate(x, k)
    low, high = interval(theta[0] - theta[1], boot[:, 0] - boot[:, 1], LEVEL, method.lower(),
                         jack[:, 0] - jack[:, 1])
    ref, _ = scipys(lambda a, b, axis=-1: a.mean(axis) - b.mean(axis), (a, b), method, 2500,
                    seed=13, paired=True)
    assert (low, high) == pytest.approx((ref.low, ref.high), rel=1e-9)


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_known_answers_identical_and_shifted(method):
    rng = np.random.default_rng(6)
    a = rng.gamma(2, 0.1, 300)
    resamples = 2000
    for b, expect_p in ((a.copy(), 1.0), (a + 0.004, 1 / (resamples + 1))):
        x = np.stack([a, b], 1)
        k = np.ones_like(x)
        boot = ratio_bootstrap(Resampler(300, resamples, 0), x, k)
        jack = ratio_jackknife(x, k)
        theta = ratio_estimate(x, k)
        diff = theta[0] - theta[1]
        d_boot, d_jack = boot[:, 0] - boot[:, 1], jack[:, 0] - jack[:, 1]
        low, high = interval(diff, d_boot, LEVEL, method, d_jack)
        p = p_value(diff, d_boot, method, d_jack)
        assert p == pytest.approx(expect_p, rel=1e-12)
        assert low == pytest.approx(diff, abs=1e-12) and high == pytest.approx(diff, abs=1e-12)
    assert diff == pytest.approx(-0.004, abs=1e-12)


@pytest.mark.parametrize("method", ["bca", "percentile"])
def test_p_value_is_the_inverted_interval(method):
    """p < 1 - level exactly when the interval of the difference excludes 0 (away from the
    quantile interpolation at the very boundary)."""
    rng = np.random.default_rng(8)
    a = rng.lognormal(0, 0.6, 250)
    noise = rng.normal(0, 0.3, 250)
    checked = 0
    for shift in np.linspace(-0.12, 0.12, 25):
        x = np.stack([a, a + noise + shift], 1)
        k = np.ones_like(x)
        boot = ratio_bootstrap(Resampler(250, 2000, 1), x, k)
        jack = ratio_jackknife(x, k)
        theta = ratio_estimate(x, k)
        d_boot, d_jack = boot[:, 0] - boot[:, 1], jack[:, 0] - jack[:, 1]
        low, high = interval(theta[0] - theta[1], d_boot, LEVEL, method, d_jack)
        p = p_value(theta[0] - theta[1], d_boot, method, d_jack)
        if abs(p - (1 - LEVEL)) < 0.01:
            continue
        assert (p < 1 - LEVEL) == (low > 0 or high < 0), (shift, p, low, high)
        checked += 1
    assert checked >= 20


def test_wilcoxon_matches_scipy_and_known_answers():
    rng = np.random.default_rng(9)
    a = rng.normal(20, 2, 80)
    b = a + rng.normal(0.3, 1, 80)
    b[[3, 17]] = np.nan                       # no value: the pair is left out
    both = ~np.isnan(b)
    assert wilcoxon_p(a, b) == scipy_stats.wilcoxon(a[both], b[both]).pvalue
    assert wilcoxon_p(a, a.copy()) == 1.0
    assert wilcoxon_p(a, a + 0.5) < 1e-10


def test_holm_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max(0.06, 0.04) = 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.5, math.nan, 0.9])
    assert adjusted[0] == pytest.approx(1.0) and math.isnan(adjusted[1])


def _fid_rows(rows_a, rows_b):
    a, b = rows_a.astype(np.float64), rows_b.astype(np.float64)
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                            np.cov(b, rowvar=False), method="sqrtm")


@pytest.mark.parametrize("n", [40, 120])          # fewer and more images than dimensions
def test_fid_bootstrap_equals_the_frechet_distance_of_resampled_rows(n):
    d = 48
    rng = np.random.default_rng(n)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    restored = np.abs(rng.normal(size=(n, d)) @ mixing + 0.3).astype(np.float32)
    gt = np.abs(restored + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
    other = np.abs(rng.normal(size=(70, d)) @ mixing).astype(np.float32)
    other64 = other.astype(np.float64)
    resampler = Resampler(n, 50, 3)
    indices = next(resampler.index_blocks(6))
    fixed = FidBootstrap(FidReference(mean=other64.mean(0), cov=np.cov(other64, rowvar=False)),
                         resampler, 6).distribution(restored)
    expected = [frechet_distance(restored[i].astype(np.float64).mean(0),
                                 np.cov(restored[i], rowvar=False), other64.mean(0),
                                 np.cov(other64, rowvar=False), method="sqrtm")
                for i in indices]
    np.testing.assert_allclose(fixed, expected, rtol=1e-6)
    paired = FidBootstrap(FidReference(features=gt, paired=True), resampler, 6)
    np.testing.assert_allclose(paired.distribution(restored),
                               [_fid_rows(restored[i], gt[i]) for i in indices], rtol=1e-6)
    other_resampler = Resampler(70, 50, (3, 1))
    folder = FidBootstrap(FidReference(features=other), resampler, 6, other_resampler)
    other_indices = next(other_resampler.index_blocks(6))
    np.testing.assert_allclose(folder.distribution(restored),
                               [_fid_rows(restored[i], other[j])
                                for i, j in zip(indices, other_indices)], rtol=1e-6)


def test_fid_bootstrap_against_a_folder_of_another_size_keeps_every_resample(monkeypatch):
    """A reference folder larger than the restored set: the two sides' blocks hold different
    numbers of resamples, and every resample is still paired and computed (was: zip over one
    block pair dropped the rest, 59 of 200 resamples against a 70k-image folder; the other way
    round, StopIteration)."""
    import vqfr.stats.bootstrap as bootstrap

    monkeypatch.setattr(bootstrap, "BLOCK_DRAWS", 200)   # 5 restored / 2 reference per block
    d, limit = 16, 12
    rng = np.random.default_rng(5)
    restored = np.abs(rng.normal(size=(40, d)) + 0.3).astype(np.float32)
    other = np.abs(rng.normal(size=(100, d))).astype(np.float32)
    for x, y in ((restored, other), (other, restored)):
        resampler, other_resampler = Resampler(len(x), 50, 3), Resampler(len(y), 50, (3, 1))
        values = FidBootstrap(FidReference(features=y), resampler, limit,
                              other_resampler).distribution(x)
        indices = np.concatenate(list(resampler.index_blocks(limit)))
        other_indices = np.concatenate(list(other_resampler.index_blocks(limit)))
        assert len(values) == len(indices) == len(other_indices) == limit
        np.testing.assert_allclose(values, [_fid_rows(x[i], y[j]) for i, j in
                                            zip(indices, other_indices)], rtol=1e-6)


def test_fid_interval_equals_a_scipy_bootstrap_loop():
    """The straightforward way: scipy.stats.bootstrap over image indices, one Fréchet distance
    per resample. Same seed, same resamples: the same percentile interval."""
    d, n = 32, 90
    rng = np.random.default_rng(1)
    rows = np.abs(rng.normal(size=(n, d)) + 0.2).astype(np.float32)
    mean, cov = np.zeros(d), np.eye(d) * 0.5

    def fid_of(index):
        x = rows[index].astype(np.float64)
        return frechet_distance(x.mean(0), np.cov(x, rowvar=False), mean, cov)

    ref, _ = scipys(fid_of, (np.arange(n),), "percentile", 150, seed=4, vectorized=False)
    boot = FidBootstrap(FidReference(mean=mean, cov=cov), Resampler(n, 2000, 4),
                        150).distribution(rows)
    low, high = interval(fid_of(np.arange(n)), boot, LEVEL, "percentile")
    assert (low, high) == pytest.approx((ref.low, ref.high), rel=1e-7)


def _kid_by_definition(x, y):
    m, n = len(x), len(y)
    def k(a, b):
        return (a @ b / len(a) + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_and_its_jackknife_standard_error_from_the_definition():
    rng = np.random.default_rng(2)
    x = rng.normal(0.2, 1, (14, 6))
    y = rng.normal(0, 1, (11, 6))
    independent = kid(x, y)
    assert independent.value == pytest.approx(_kid_by_definition(x, y), rel=1e-12)
    loo_x = [_kid_by_definition(np.delete(x, i, 0), y) for i in range(14)]
    loo_y = [_kid_by_definition(x, np.delete(y, j, 0)) for j in range(11)]
    np.testing.assert_allclose(independent.leave_out, loo_x, rtol=1e-10)
    np.testing.assert_allclose(independent.leave_out_reference, loo_y, rtol=1e-10)
    variance = sum((len(v) - 1) / len(v) * np.sum((np.array(v) - np.mean(v)) ** 2)
                   for v in (loo_x, loo_y))
    assert independent.standard_error == pytest.approx(math.sqrt(variance), rel=1e-10)
    gt = x + rng.normal(0, 0.5, x.shape)
    paired = kid(x, gt, paired=True)
    loo = [_kid_by_definition(np.delete(x, i, 0), np.delete(gt, i, 0)) for i in range(14)]
    np.testing.assert_allclose(paired.leave_out, loo, rtol=1e-10)
    assert paired.value == pytest.approx(_kid_by_definition(x, gt), rel=1e-12)


def test_a_column_does_not_depend_on_the_others():
    """A method's bootstrap distribution is bit for bit the same in a run with other methods
    and metrics (a resumed one-method run must give the intervals of the full run)."""
    rng = np.random.default_rng(12)
    x = rng.gamma(3, 2.0, (500, 7))
    k = np.ones_like(x)
    resampler = Resampler(500, 300, 0)
    together = ratio_bootstrap(resampler, x, k)
    for j in range(7):
        alone = ratio_bootstrap(resampler, x[:, j:j + 1], k[:, j:j + 1])
        assert np.array_equal(alone[:, 0], together[:, j])


def test_methods_on_other_images_get_intervals_but_no_comparison(tmp_path):
    """Two runs of a dataset name over different image lists (another version of the set): each
    method's interval from its own images (scipy's, same seed), no paired comparison."""
    from vqfr.stats.analysis import CIOptions, dataset_statistics
    from vqfr.stats.rows import MethodRows

    rng = np.random.default_rng(13)
    methods = []
    for name, n, sha in (("a", 40, "1"), ("b", 55, "2")):
        values = rng.normal(0.3, 0.05, n)
        summary = {"dataset": {"count": n, "file_list_sha256": sha}, "metrics": {"lpips": 0.3},
                   "metric_info": {"lpips": {"lower_is_better": True, "options": {}}}}
        methods.append(MethodRows(tmp_path / name, summary, {"lpips": values}))
    stats = dataset_statistics(methods, CIOptions(resamples=1000))
    assert stats.comparisons == [] and "not measured on the same images" in stats.notes[0]
    for m in methods:
        ref, _ = scipys(np.mean, (m.values["lpips"],), "BCa", 1000, seed=0)
        ci = stats.intervals[m.slug]["lpips"]
        assert (ci["low"], ci["high"]) == pytest.approx((ref.low, ref.high), rel=1e-10)
