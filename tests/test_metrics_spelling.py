"""``--metrics NAME[:option=value...][:label=COLUMN]``: options reach the metric, one run holds a
metric under two protocols (checked against the official script's numbers), and a bad spelling
is a clear error listing what exists, exit 2, before anything is written."""
from __future__ import annotations

import csv
import json

import cv2
import pytest

from cli import vqfr_eval
from vqfr.errors import VqfrError
from vqfr.metrics.registry import MetricSpec, parse_metric_specs

FACES = ("codeformer_0143.png", "codeformer_0240.png")


def test_spellings_parse_with_the_options_types():
    specs = parse_metric_specs("psnr:test_y_channel=true:correct_mean_var=false,"
                               "ssim:crop_border=4:label=ssim_crop4,niqe:convert_to=gray,"
                               "pyiqa:musiq:label=musiq")
    assert specs == [
        MetricSpec("psnr", {"test_y_channel": True, "correct_mean_var": False}, "psnr"),
        MetricSpec("ssim", {"crop_border": 4}, "ssim_crop4"),
        MetricSpec("niqe", {"convert_to": "gray"}, "niqe"),
        MetricSpec("pyiqa:musiq", {}, "musiq")]


@pytest.mark.parametrize("spelling, expected", [
    ("psnr:test_y_channel=true", None),
    ("nique", r"unknown metric 'nique'.*available: deg, fid, ids, kid, lmd, lpips, niqe, psnr, "
              r"ssim"),
    ("psnr:y=1", r"psnr has no option 'y' \(its options: test_y_channel, crop_border, "
                 r"correct_mean_var, label\)"),
    ("psnr:test_y_channel=maybe", "test_y_channel: expected true or false, got 'maybe'"),
    ("ssim:crop_border=four", "crop_border: expected an integer"),
    ("niqe:convert_to=grey", "convert_to is one of y, gray, got 'grey'"),
    ("psnr:test_y_channel", "expected key=value after ':'"),
    ("psnr,psnr:test_y_channel=true", "the column psnr is given twice; name the variants "
                                      "with label="),
    ("psnr:label=a/b", "a label is letters, digits"),
])
def test_bad_spellings_say_what_exists(spelling, expected):
    if expected is None:
        parse_metric_specs(spelling)
        return
    with pytest.raises(VqfrError, match=expected):
        parse_metric_specs(spelling)


@pytest.fixture(scope="module")
def blurred_pairs(faces_dir, tmp_path_factory):
    """Two public faces (hq/) and their golden ``blur`` degradations (lq/), as PNGs."""
    root = tmp_path_factory.mktemp("pairs") / "blurpairs"
    (root / "hq").mkdir(parents=True)
    (root / "lq").mkdir()
    for name in FACES:
        face = cv2.imread(str(faces_dir / name), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(root / "hq" / name), face)
        cv2.imwrite(str(root / "lq" / name), cv2.GaussianBlur(face, (0, 0), 2))
    return root


def test_one_run_two_protocols_matches_official(blurred_pairs, reference_dir, tmp_path):
    """PSNR in the paper's setting and in Y without the mean/variance correction, SSIM with a
    border crop: each column equals the official script in that setting."""
    golden = json.loads((reference_dir / "metrics" / "metrics_golden_public.json").read_text())
    golden = golden["psnr_ssim"]
    done = vqfr_eval("run", "--dataset", blurred_pairs, "--method", "lq", "--metrics",
                     "psnr,psnr:test_y_channel=true:correct_mean_var=false:label=psnr_y,"
                     "ssim:crop_border=4:label=ssim_crop4", "--out", tmp_path / "run", "--quiet",
                     home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    method_dir = tmp_path / "run" / "blurpairs" / "lq"
    with open(method_dir / "per_image.csv") as handle:
        rows = {row["name"]: row for row in csv.DictReader(handle)}
    for name in FACES:
        stem = name.rsplit(".", 1)[0]
        expected = {"psnr": golden["rgb_cmv"]["per_image"][name]["blur"]["psnr"],
                    "psnr_y": golden["y_nocmv"]["per_image"][name]["blur"]["psnr"],
                    "ssim_crop4": golden["rgb_cmv_crop4"]["per_image"][name]["blur"]["ssim"]}
        for column, value in expected.items():
            assert abs(float(rows[stem][column]) - value) <= 1e-4, (column, name)
    info = json.loads((method_dir / "summary.json").read_text())["metric_info"]
    assert info["psnr_y"]["name"] == "psnr"
    assert info["psnr_y"]["options"] == {"test_y_channel": True, "crop_border": 0,
                                         "correct_mean_var": False}
    assert "psnr_y" in done.stdout and "ssim_crop4" in done.stdout


@pytest.mark.parametrize("command", [
    ["--dataset", "{data}", "--method", "lq", "--out", "{out}"],     # = run
    ["metrics", "--restored", "{data}/lq", "--gt", "{data}/hq", "--json", "{out}/m.json"],
    ["ablate", "--dataset", "{data}", "--study", "fidelity", "--out", "{out}"],
    ["--table", "vqfr-celeba-test", "--dataset", "{data}", "--out", "{out}"],
])
def test_bad_metrics_exit_2_before_any_work(command, blurred_pairs, tmp_path):
    out = tmp_path / "out"
    args = [a.format(data=blurred_pairs, out=out) for a in command]
    done = vqfr_eval(*args, "--metrics", "psnr:test_y_channel=yes_please",
                     home=tmp_path / "home")
    assert done.returncode == 2, done.stderr
    assert "test_y_channel: expected true or false" in done.stderr
    assert "Traceback" not in done.stderr
    assert not out.exists()
