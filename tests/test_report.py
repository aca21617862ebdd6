"""`vqfr-eval report`: tables beside the paper specs, grids, figures, escaping, offsets.

The run directories come from report_runs.py: real faces, results written by the runner's own
writer, every number with a known, independent value.
"""
from __future__ import annotations

import html
import json
import re

import cv2
import numpy as np
import pytest
from report_runs import NASTY_LABEL, NASTY_STEM, SIZE, make_real_run, make_runs, psnr

from vqfr.cli import main
from vqfr.report.render import build_report
from vqfr.report.runs import find_method_runs, offset_magnitudes


@pytest.fixture(scope="module")
def report(faces_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    run, info = make_runs(faces_dir, tmp)
    index = build_report([run], tmp / "out", ["codeformer_celeba_test", "vqfr_ablation_twm"])
    return index, run, info


def _local_refs(text: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]*)"', text)


def test_self_contained_and_escaped(report):
    index, _, _ = report
    text = index.read_text(encoding="utf-8")
    # hostile names are text, never markup
    assert html.escape(NASTY_LABEL) in text and NASTY_LABEL not in text
    assert html.escape(NASTY_STEM, quote=False) in text and NASTY_STEM not in text
    assert "<b>x</b>" not in text and "&lt;b&gt;x&lt;/b&gt;" in text
    assert "<script" not in text.lower()
    # no external resources of any kind: every reference is a relative file beside index.html
    refs = _local_refs(text)
    assert refs, "the report references its images"
    for ref in refs:
        assert not re.match(r"^[a-z]+:|^//", ref), ref
        assert (index.parent / ref).is_file(), ref
    assert "url(" not in text and "@import" not in text and "<link" not in text


def test_table_values_deltas_and_best(report):
    index, _, info = report
    text = index.read_text(encoding="utf-8")
    runs = {r.label: r for r in find_method_runs([report[1]])}
    measured = {label: np.mean([psnr(cv2.imread(str(r.image_path(s))), info["gts"][s])
                                for s in info["stems"]]) for label, r in runs.items()}
    # CodeFormer w=0.5 sits beside the third-party paper PSNR 22.18 with the difference
    cf = measured["CodeFormer (w=0.5)"]
    assert f"{cf:.2f}" in text and "22.18" in text
    assert f"{cf - 22.18:+.2f}" in text
    # the best measured PSNR (w=1.0, closest to GT) is highlighted in the measured table
    best = max(measured, key=measured.get)
    assert best == "CodeFormer (w=1.0)"
    assert re.search(rf'class="measured best"[^>]*>{measured[best]:.2f}<', text)
    assert "PSNR ↑" in text and "↓" in text          # direction arrows (LPIPS/FID columns)
    # counts and protocol options under the tables; unknown paper cells are marked, not filled
    assert "PSNR: 4 images" in text and "correct_mean_var=false" in text
    assert "paper protocol correct_mean_var=true" in text and "DIFFERS in correct_mean_var" in text
    assert "—<sup>?</sup>" in text


def test_grid_selection_and_crops(report):
    index, run, info = report
    text = index.read_text(encoding="utf-8")
    primary = next(r for r in find_method_runs([run]) if r.name != "lq")
    values = primary.per_image_values("psnr")
    order = sorted(values, key=values.get)      # independent: ascending PSNR = worst first
    for which, stem in (("best", order[-1]), ("worst", order[0])):
        assert f"{which} PSNR ({values[stem]:.4g})" in text
        assert html.escape(stem, quote=False) in text
    # every tile has an eye and a mouth crop of the documented fixed boxes
    eye_crops = sorted((index.parent / "img").glob("*_eyes.png"))
    assert eye_crops
    crop = cv2.imread(str(eye_crops[0]))
    assert crop.shape[:2] == (round(280 / 512 * SIZE) - round(200 / 512 * SIZE),
                              round(372 / 512 * SIZE) - round(140 / 512 * SIZE))
    assert "not available" not in text            # LQ and GT found through the dataset root


def test_sweep_and_distribution_figures(report):
    index, _, _ = report
    text = index.read_text(encoding="utf-8")
    assert "fidelity_weight ∈ 0.0, 0.5, 1.0" in text
    figs = list((index.parent / "fig").glob("sweep_*.png"))
    assert len(figs) == 1 and figs[0].stat().st_size > 1000
    assert list((index.parent / "fig").glob("dist_*.png"))


def test_offset_magnitude_maps(report):
    index, _, info = report
    npz = next(p for p in info["folders"]["nasty"].glob("offsets/*.npz"))
    levels = offset_magnitudes(npz)
    assert list(levels) == ["Level_32", "Level_16"]       # coarse to fine
    raw = info["offsets"]["Level_16"]
    dy, dx = raw[0::2], raw[1::2]                          # torchvision (dy, dx) pairs
    np.testing.assert_allclose(levels["Level_16"], np.sqrt(dy ** 2 + dx ** 2).mean(0),
                               rtol=1e-6)
    assert list((index.parent / "fig").glob("offsets_*.png"))
    assert "offset magnitude per level" in index.read_text(encoding="utf-8")


def test_cli(report, tmp_path, capsys):
    _, run, _ = report
    assert main(["report", str(run), "--spec", "vqfr_celeba_test", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "index.html").is_file()
    assert main(["report", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x")]) == 2
    assert main(["report", str(run), "--spec", "no_such_spec", "-o", str(tmp_path)]) == 2
    assert "no spec" in capsys.readouterr().err


def test_end_to_end_real_run(faces_dir, tmp_path):
    run = make_real_run(faces_dir, tmp_path)
    out = tmp_path / "report"
    assert main(["report", str(run), "--spec", "vqfr_celeba_test", "-o", str(out)]) == 0
    text = (out / "index.html").read_text(encoding="utf-8")
    summaries = [json.loads(p.read_text()) for p in sorted(run.glob("*/*/summary.json"))]
    assert len(summaries) == 2
    for summary in summaries:                      # the runner's numbers, as it wrote them
        for metric, decimals in (("psnr", 2), ("ssim", 4)):
            assert f"{summary['metrics'][metric]:.{decimals}f}" in text
    assert "PSNR: 3 images" in text and "correct_mean_var=true" in text
    # the spec's rows are CelebA-Test models: nothing here matches them, and the page says so
    assert "no run matches any of its rows" in text
    # LQ (the lq run), the folder method and GT (found through the dataset the summary names)
    # for each of the 3 images: every tile is present
    assert "not available" not in text
    assert len(list((out / "img").glob("*_eyes.png"))) == 3 * 3


def test_report_imports_no_torch():
    """Reports are rebuilt from result files alone: the report room, the statistics it
    recomputes and `vqfr-eval power` never load torch."""
    import subprocess
    import sys

    code = ("import sys, vqfr.report.render, vqfr.report.efficiency, vqfr.cli.report, "
            "vqfr.stats.analysis, vqfr.stats.power, vqfr.cli.power; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_intervals_and_paper_values_inside_or_outside(report):
    """The runs stored no intervals: the report computes them from per_image.csv (BCa, 2000
    resamples, seed 0; scipy.stats.bootstrap with the same resamples is the reference), shows
    the half-width beside each value and says whether the paper's value lies in the interval."""
    from scipy import stats as scipy_stats

    index, run, _ = report
    text = index.read_text(encoding="utf-8")
    runs = {r.label: r for r in find_method_runs([run])}
    cf = runs["CodeFormer (w=0.5)"]
    values = np.array(list(cf.per_image_values("psnr").values()))
    ci = scipy_stats.bootstrap((values,), np.mean, n_resamples=2000, method="BCa",
                               rng=np.random.default_rng(0)).confidence_interval
    assert f"± {(ci.high - ci.low) / 2:.2f}" in text
    inside = ci.low <= 22.18 <= ci.high
    delta = f"{cf.metrics['psnr'] - 22.18:+.2f}"
    cell = re.search(rf'<td class="delta">{re.escape(delta)}<br><small class="(\w+)"', text)
    assert cell and cell.group(1) == ("inside" if inside else "outside")
    assert text.count('<table class="significance">') == 1     # PSNR: the only metric
