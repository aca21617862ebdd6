"""Intervals and paired comparisons through a real run (`vqfr-eval run` on 12 real faces at 32 px,
methods given as folders of results): the printed table, summary.json, comparisons.json, the
FID/KID feature rows, `--ci off`, argument checks, a cached rerun, `vqfr-eval power` and the
report. FID/KID use a small fixed stand-in for the Inception network (the Inception itself is
tested in test_metrics_fid.py), so features can be recomputed here independently."""
from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from goldens import write_tiny_paired_set
from scipy import stats as scipy_stats

from vqfr.cli import main

SIZE, COUNT = 32, 12
RESAMPLES, FID_RESAMPLES = 1000, 100
SCHEMA = ["metric", "a", "b", "diff", "low", "high", "p", "p_holm"]


class StandInFeatures(torch.nn.Module):
    """[-1, 1] images -> 2048 non-negative features: 4x4 average pooling, a fixed random
    projection, ReLU (what FID/KID need from the Inception: rows of 2048 numbers)."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("projection", torch.randn(48, 2048, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return torch.relu(pooled @ self.projection)


def stand_in_features(folder: Path, stems: list[str]) -> np.ndarray:
    net = StandInFeatures()
    images = np.stack([cv2.imread(str(folder / f"{s}.png"))[:, :, ::-1] for s in stems])
    x = torch.from_numpy(images.copy()).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.inference_mode():
        return net(x).numpy()


@pytest.fixture(scope="module")
def run(tmp_path_factory, faces_dir):
    """Input, A (blur 1), a copy of A, C (blur 1.6); psnr, ssim, fid and kid against the GT."""
    tmp = tmp_path_factory.mktemp("stats-run")
    data = write_tiny_paired_set(faces_dir, tmp / "tiny", COUNT, SIZE)
    folders = {name: tmp / name for name in ("a", "copy", "c")}
    for name, sigma in (("a", 1.0), ("c", 1.6)):
        folders[name].mkdir()
        for hq in sorted((data / "hq").glob("*.png")):
            cv2.imwrite(str(folders[name] / hq.name),
                        cv2.GaussianBlur(cv2.imread(str(hq)), (0, 0), sigma))
    shutil.copytree(folders["a"], folders["copy"])
    stand_in = tmp / "stand-in-inception.pt"     # never read: the network is replaced below
    torch.save(StandInFeatures().state_dict(), stand_in)
    args = ["run", "--dataset", str(data), "--method",
            ",".join(["lq"] + [f"folder:{folders[n]}" for n in ("a", "copy", "c")]),
            "--metrics", "psnr,ssim,fid,kid", "--fid-ref", "gt", "--out", str(tmp / "run"),
            "--quiet", "--allow-size", "multiple-of-32", "--resamples", str(RESAMPLES),
            "--fid-resamples", str(FID_RESAMPLES), "--asset", f"fid-inception={stand_in}"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("vqfr.metrics.fid.load_fid_inception", lambda *a, **k: StandInFeatures())
        import io
        from contextlib import redirect_stdout
        printed = io.StringIO()
        with redirect_stdout(printed):
            assert main(args) == 0
    dataset_dir = tmp / "run" / "tiny"
    slugs = {p.parent.name: json.loads(p.read_text())["method"]["label"]
             for p in dataset_dir.glob("*/summary.json")}
    slug_of = {"lq": "lq", **{name: next(s for s in slugs if s.startswith(f"folder-{name}-"))
                              for name in folders}}
    return {"dir": dataset_dir, "data": data, "folders": folders, "args": args,
            "printed": printed.getvalue(), "slug": slug_of, "labels": slugs}


def summary(run, name: str) -> dict:
    return json.loads((run["dir"] / run["slug"][name] / "summary.json").read_text())


def per_image(run, name: str) -> dict[str, list]:
    with open(run["dir"] / run["slug"][name] / "per_image.csv") as handle:
        rows = list(csv.DictReader(handle))
    return {k: [r[k] for r in rows] for k in rows[0]}


def test_printed_table_has_intervals_and_marks(run):
    lines = run["printed"].splitlines()
    table = {line.split()[0]: line for line in lines[3:3 + 4]}    # dataset, header, "method"
    copy_label = run["labels"][run["slug"]["copy"]]
    for line in table.values():
        assert line.count("±") == 4, line                      # every metric of every method
    # A and its copy are identical: the second of them is marked as tied with the best; C is
    # clearly worse than A in PSNR and SSIM
    assert table[copy_label].count("†") == 4
    c_cells = re.split(r"\s{2,}", table[run["labels"][run["slug"]["c"]]])
    assert "†" not in c_cells[1] and "†" not in c_cells[2]
    assert any("half-width of the 0.95 BCa bootstrap interval" in line for line in lines)
    assert any("not significantly different from the column's best" in line for line in lines)
    assert "  comparisons.json (pairwise comparisons)" in lines


def test_summary_intervals_equal_scipys_bootstrap(run):
    """The interval stored for C's PSNR and SSIM is scipy.stats.bootstrap's BCa interval of the
    per_image.csv values with the same resamples (seed 0, the default)."""
    data = summary(run, "c")
    values = per_image(run, "c")
    assert list(values) == ["name", "index", "psnr", "ssim"]           # per_image.csv unchanged
    for metric in ("psnr", "ssim"):
        ci = data["metric_info"][metric]["ci"]
        assert set(ci) == {"level", "low", "high", "method", "resamples", "seed"}
        assert (ci["level"], ci["method"], ci["resamples"], ci["seed"]) == (0.95, "bca",
                                                                             RESAMPLES, 0)
        x = np.array([float(v) for v in values[metric]])
        ref = scipy_stats.bootstrap((x,), np.mean, n_resamples=RESAMPLES, method="BCa",
                                    rng=np.random.default_rng(0)).confidence_interval
        assert (ci["low"], ci["high"]) == pytest.approx((ref.low, ref.high), rel=1e-9)


def test_feature_rows_are_numpy_files_of_the_measured_features(run):
    """FID/KID rows: plain .npz (no pickles) holding the features of the restored images and of
    the GT in image order, recomputed here from the PNGs; one reference file for all methods."""
    data = summary(run, "c")
    stems = per_image(run, "c")["name"]
    files = data["metric_info"]["fid"]["rows"]
    assert files["reference_kind"] == "gt" and files["statistic"] == "fid"
    method_dir = run["dir"] / run["slug"]["c"]
    with np.load(method_dir / files["restored"], allow_pickle=False) as rows:
        np.testing.assert_allclose(rows["features"], stand_in_features(run["folders"]["c"],
                                                                       stems), rtol=1e-5)
        assert rows["index"].tolist() == list(range(COUNT))
    with np.load(method_dir / files["reference"], allow_pickle=False) as reference:
        np.testing.assert_allclose(reference["features"],
                                   stand_in_features(run["data"] / "hq", stems), rtol=1e-5)
    references = {summary(run, n)["metric_info"][m]["rows"]["reference"]
                  for n in run["slug"] for m in ("fid", "kid")}
    assert len(references) == 1 and len(list((run["dir"] / "rows").iterdir())) == 1
    fid_ci = data["metric_info"]["fid"]["ci"]
    assert fid_ci["method"] == "percentile, centred on the estimate"
    assert fid_ci["resamples"] == FID_RESAMPLES and "bias" in fid_ci["note"]
    assert fid_ci["low"] < data["metrics"]["fid"] < fid_ci["high"]
    kid_ci = data["metric_info"]["kid"]["ci"]
    se = data["metric_info"]["kid"]["extra"]["standard_error"]
    assert kid_ci["high"] - kid_ci["low"] == pytest.approx(2 * 1.959963984540054 * se)


def test_comparisons_known_answers(run):
    comparisons = json.loads((run["dir"] / "comparisons.json").read_text())
    assert all(list(c) == SCHEMA for c in comparisons)
    slug = run["slug"]
    by_pair = {(c["metric"], c["a"], c["b"]): c for c in comparisons}
    assert len(by_pair) == 4 * 6                        # 4 metrics x 6 pairs of 4 methods
    for metric in ("psnr", "ssim", "fid", "kid"):
        same = by_pair[(metric, slug["a"], slug["copy"])]
        assert (same["diff"], same["low"], same["high"], same["p"], same["p_holm"]) == \
            (0.0, 0.0, 0.0, 1.0, 1.0)
        worse = by_pair[(metric, slug["a"], slug["c"])]
        assert worse["p_holm"] < 0.05
        a, c = summary(run, "a")["metrics"][metric], summary(run, "c")["metrics"][metric]
        assert worse["diff"] == pytest.approx(a - c, rel=1e-9)
        assert worse["low"] <= worse["diff"] <= worse["high"]
    # Holm within one metric: the adjusted p-values are at least the raw ones
    assert all(c["p_holm"] >= c["p"] for c in comparisons)


def test_cached_rerun_gives_the_same_statistics(run, tmp_path):
    out = tmp_path / "again"
    shutil.copytree(run["dir"].parent, out)
    args = [a if a != str(run["dir"].parent) else str(out) for a in run["args"]]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("vqfr.metrics.fid.load_fid_inception", lambda *a, **k: StandInFeatures())
        assert main(args) == 0
    for name, slug in run["slug"].items():
        again = json.loads((out / "tiny" / slug / "summary.json").read_text())
        assert again["counts"]["reused"] == COUNT
        assert again["metric_info"] == summary(run, name)["metric_info"]
    assert (out / "tiny" / "comparisons.json").read_text() == \
        (run["dir"] / "comparisons.json").read_text()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vqfr", *args], capture_output=True,
                          text=True, timeout=300)


def test_ci_off_and_bad_arguments(run, tmp_path):
    base = ["run", "--dataset", str(run["data"]), "--method", "lq", "--metrics", "psnr",
            "--quiet", "--allow-size", "multiple-of-32"]
    done = _cli(*base, "--out", str(tmp_path / "off"), "--ci", "off")
    assert done.returncode == 0, done.stderr
    assert "±" not in done.stdout and "Input" in done.stdout
    data = json.loads((tmp_path / "off" / "tiny" / "lq" / "summary.json").read_text())
    assert "ci" not in data["metric_info"]["psnr"]
    assert not (tmp_path / "off" / "tiny" / "comparisons.json").exists()
    for option, value in (("--ci", "1.5"), ("--ci", "nan"), ("--resamples", "0"),
                          ("--ci-method", "normal")):
        bad = _cli(*base, "--out", str(tmp_path / "bad"), option, value)
        assert bad.returncode == 2 and option in bad.stderr and "Traceback" not in bad.stderr
        assert not (tmp_path / "bad").exists()


def test_power_advice_matches_the_normal_approximation(run):
    """The images a paired test needs for a difference delta, from the run's bootstrap, against
    the textbook formula n = ((z_(1-a/2) + z_power) s_d / delta)^2 with s_d the standard
    deviation of the per-image differences (they agree up to the bootstrap's (n-1)/n and
    Monte-Carlo error)."""
    delta = 0.3
    done = _cli("power", str(run["dir"].parent), "--metric", "psnr", "--delta", str(delta))
    assert done.returncode == 0, done.stderr
    a = np.array([float(v) for v in per_image(run, "a")["psnr"]])
    c = np.array([float(v) for v in per_image(run, "c")["psnr"]])
    s_d = np.std(a - c, ddof=1)
    expected = ((1.959963984540054 + 0.8416212335729143) * s_d / delta) ** 2
    pair = f"{run['slug']['a']} - {run['slug']['c']}"
    line = next(line for line in done.stdout.splitlines() if pair in line)
    assert int(line.split()[-1]) == pytest.approx(expected, rel=0.25)
    half_width = (summary(run, "a")["metric_info"]["psnr"]["ci"]["high"] -
                  summary(run, "a")["metric_info"]["psnr"]["ci"]["low"]) / 2
    line = next(line for line in done.stdout.splitlines()
                if line.split()[0] == run["slug"]["a"])
    assert int(line.split()[-1]) == math.ceil(COUNT * (half_width / delta) ** 2)
    bad = _cli("power", str(run["dir"].parent), "--metric", "lpips", "--delta", "0.1")
    assert bad.returncode == 2 and "lpips" in bad.stderr and "Traceback" not in bad.stderr


def test_report_shows_intervals_matrices_and_error_bars(run, tmp_path):
    from vqfr.report.render import build_report

    index = build_report([run["dir"].parent], tmp_path / "report")
    text = index.read_text(encoding="utf-8")
    a = summary(run, "a")
    half = (a["metric_info"]["psnr"]["ci"]["high"] - a["metric_info"]["psnr"]["ci"]["low"]) / 2
    assert f"± {half:.2f}" in text
    # the marks are the stored comparisons: one per method whose Holm-adjusted p against its
    # column's best is >= 0.05 (the copy of A in every column, and here Input in FID)
    comparisons = json.loads((run["dir"] / "comparisons.json").read_text())
    tied = 0
    for metric in ("psnr", "ssim", "fid", "kid"):
        values = {slug: summary(run, name)["metrics"][metric] for name, slug in run["slug"].items()}
        best = (max if metric in ("psnr", "ssim") else min)(values, key=values.get)
        tied += sum(1 for c in comparisons if c["metric"] == metric and best in (c["a"], c["b"])
                    and c["p_holm"] >= 0.05)
    assert tied >= 4 and text.count('class="tied"') == tied
    assert text.count('<table class="significance">') == 4
    assert 'class="tie"' in text and 'class="better"' in text and 'class="worse"' in text
    assert len(list((tmp_path / "report" / "fig").glob("dist_*.png"))) == 2


def test_fid_interval_equals_a_scipy_bootstrap_loop_over_the_stored_rows(run):
    """C's FID interval: scipy.stats.bootstrap over image indices (seed 0, the first 100
    resamples of the run's), each resample's FID from its own rows of restored and GT features
    (np.cov and the suite's Fréchet distance), the distribution moved onto the measured FID, its
    2.5 and 97.5 % quantiles."""
    from vqfr.metrics.frechet import frechet_distance

    data = summary(run, "c")
    method_dir = run["dir"] / run["slug"]["c"]
    files = data["metric_info"]["fid"]["rows"]
    with np.load(method_dir / files["restored"], allow_pickle=False) as rows:
        restored = rows["features"].astype(np.float64)
    with np.load(method_dir / files["reference"], allow_pickle=False) as rows:
        gt = rows["features"].astype(np.float64)

    def fid_of(index):
        x, y = restored[index], gt[index]
        factor = (x - x.mean(0)).T / np.sqrt(len(x) - 1)
        return frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0),
                                np.cov(y, rowvar=False), factor1=factor)

    distribution = scipy_stats.bootstrap(
        (np.arange(COUNT),), fid_of, vectorized=False, n_resamples=FID_RESAMPLES,
        method="percentile", rng=np.random.default_rng(0)).bootstrap_distribution
    value = data["metrics"]["fid"]
    centred = distribution - (distribution.mean() - value)
    ci = data["metric_info"]["fid"]["ci"]
    # rounding: FID to ~1e-7 relative (another factorisation of the same singular products)
    assert ci["bootstrap_shift"] == pytest.approx(distribution.mean() - value, abs=1e-6 * value)
    assert (ci["low"], ci["high"]) == pytest.approx(tuple(np.quantile(centred, [0.025, 0.975])),
                                                    abs=1e-6 * value)


def test_metrics_command_gives_the_runs_intervals(run, tmp_path):
    """`vqfr-eval metrics` on a method's results: the same per-image intervals as the run
    (same images in the same order, same resamples and seed), in its JSON and printed; FID has
    none there (its rows are a run's); `--ci off` leaves them out."""
    folder = run["folders"]["c"]
    out = tmp_path / "m.json"
    done = _cli("metrics", "--restored", str(folder), "--gt", str(run["data"] / "hq"),
                "--metrics", "psnr,ssim", "--resamples", str(RESAMPLES), "--json", str(out),
                "--quiet")
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(out.read_text())["options"]
    recorded = summary(run, "c")["metric_info"]
    for metric in ("psnr", "ssim"):
        ours, theirs = measured[metric]["ci"], recorded[metric]["ci"]
        assert {k: ours[k] for k in ("level", "method", "resamples", "seed")} == \
               {"level": 0.95, "method": "bca", "resamples": RESAMPLES, "seed": 0}
        assert ours["low"] == pytest.approx(theirs["low"], rel=1e-12)
        assert ours["high"] == pytest.approx(theirs["high"], rel=1e-12)
        assert ours["low"] < summary(run, "c")["metrics"][metric] < ours["high"]
        assert re.search(rf"^{metric}: \S+  \(0\.95 CI {ours['low']:.6g} to "
                         rf"{ours['high']:.6g}, bca\)$", done.stdout, re.M), done.stdout
    off = _cli("metrics", "--restored", str(folder), "--gt", str(run["data"] / "hq"),
               "--metrics", "psnr", "--ci", "off", "--json", str(tmp_path / "off.json"),
               "--quiet")
    assert off.returncode == 0 and "CI" not in off.stdout
    assert "ci" not in json.loads((tmp_path / "off.json").read_text())["options"]["psnr"]
    bad = _cli("metrics", "--restored", str(folder), "--metrics", "niqe", "--paired-test",
               "wilcoxon")
    assert bad.returncode == 2 and "--paired-test" in bad.stderr     # one method: no tests


@pytest.mark.parametrize("damage", ["summary", "rows", "index"])
def test_damaged_result_files_are_named_not_a_traceback(run, tmp_path, damage):
    """`power` (and the report, which reads the same files) on a damaged method folder: exit 2
    naming the file (was: a JSONDecodeError, FileNotFoundError or IndexError traceback)."""
    copy = tmp_path / "run"
    shutil.copytree(run["dir"].parent, copy)
    method = copy / run["dir"].name / run["slug"]["c"]
    if damage == "summary":
        (method / "summary.json").write_text("{not json")
        broken, metric = method / "summary.json", "psnr"
    elif damage == "rows":
        broken = method / summary(run, "c")["metric_info"]["fid"]["rows"]["restored"]
        broken.unlink()
        metric = "fid"
    else:
        text = (method / "per_image.csv").read_text().splitlines()
        header = text[0].split(",")
        row = text[1].split(",")
        row[header.index("index")] = str(10 * COUNT)
        (method / "per_image.csv").write_text("\n".join([text[0], ",".join(row), *text[2:]]))
        broken, metric = method / "per_image.csv", "psnr"
    done = _cli("power", str(copy), "--metric", metric, "--delta", "0.3")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert str(broken) in done.stderr and "rerun the method" in done.stderr, done.stderr


def test_a_later_one_method_run_removes_the_earlier_comparisons(run, tmp_path):
    """comparisons.json compares the methods' numbers as they were; a later run of one method
    into the same folder changes that method's numbers, so the file goes (the report
    recomputes the pairs from the result files)."""
    copy = tmp_path / "run"
    shutil.copytree(run["dir"].parent, copy)
    assert (copy / run["dir"].name / "comparisons.json").is_file()
    done = _cli("run", "--dataset", str(run["data"]), "--method", "lq", "--metrics", "psnr",
                "--out", str(copy), "--quiet", "--allow-size", "multiple-of-32")
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (copy / run["dir"].name / "comparisons.json").exists()
