"""The benchmark run end to end on 5 small real faces (32x32, the smallest VQFR v1 input) with
a synthetic VQFR v1 checkpoint and synthetic ArcFace weights: result files and schema, metric
values equal to measuring the saved PNGs separately, cache reuse, SIGKILL + resume, determinism,
2-process gloo, folder: pairing, and the messages for an absent dataset or absent weights."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from goldens import write_tiny_paired_set

from vqfr.cli import main

METRICS = "psnr,ssim,deg"
SIZE = 32


@pytest.fixture(scope="module")
def paired_set(tmp_path_factory, faces_dir):
    """5 faces: HQ = the crop resized to 32x32 (INTER_AREA); LQ = HQ down to 8x8 and back."""
    root = tmp_path_factory.mktemp("data") / "tiny"
    return write_tiny_paired_set(faces_dir, root, 5, SIZE)


@pytest.fixture(scope="module")
def asset_args(tmp_path_factory):
    from vqfr.archs.arcface import ResNetArcFace
    from vqfr.zoo import write_synthetic_checkpoint

    folder = tmp_path_factory.mktemp("weights")
    v1 = write_synthetic_checkpoint("vqfr-v1", folder / "vqfr_v1.pth", seed=1)
    arc = write_synthetic_checkpoint("arcface-resnet18", folder / "arcface.pth", seed=1,
                                     layout=ResNetArcFace())
    return ["--asset", f"vqfr-v1={v1}", "--asset", f"arcface-resnet18={arc}"]


def run_args(dataset: Path, out: Path, asset_args: list[str], methods: str = "vqfr-v1,lq",
             metrics: str = METRICS) -> list[str]:
    return ["run", "--dataset", str(dataset), "--method", methods, "--metrics", metrics,
            "--out", str(out), "--batch-size", "2", "--allow-size", "multiple-of-32", "--quiet",
            *asset_args]


@pytest.fixture(scope="module")
def baseline(paired_set, asset_args, tmp_path_factory):
    """One uninterrupted single-process run: the reference for every other run here."""
    out = tmp_path_factory.mktemp("baseline")
    assert main(run_args(paired_set, out, asset_args)) == 0
    return out / "tiny"


def read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def summary(method_dir: Path) -> dict:
    return json.loads((method_dir / "summary.json").read_text())


SCHEMA = {
    "schema": str,
    "dataset": {"name": str, "root": str, "count": int, "paired": bool,
                "manifest_sha256": (str, type(None)), "file_list_sha256": str},
    "method": {"name": str, "label": str, "options": dict, "weights": (dict, type(None))},
    "metrics": dict, "metric_info": dict,
    "counts": {"images": int, "restored": int, "reused": int, "failed": list},
    "provenance": {k: (str, int) for k in ("vqfr_eval", "torch", "torchvision", "python",
                                           "device", "dtype", "precision", "batch_size",
                                           "world_size", "seed", "command", "started",
                                           "finished")},
}


def check_schema(value, schema, where="summary"):
    if isinstance(schema, dict):
        assert isinstance(value, dict), where
        for key, sub in schema.items():
            assert key in value, f"{where}.{key} missing"
            check_schema(value[key], sub, f"{where}.{key}")
    else:
        assert isinstance(value, schema), f"{where}: {type(value).__name__}"


def test_results_files_and_schema(baseline):
    for slug in ("vqfr-v1", "lq"):
        method_dir = baseline / slug
        data = summary(method_dir)
        check_schema(data, SCHEMA)
        assert data["schema"] == "vqfr-eval/summary/1"
        assert data["dataset"]["count"] == 5 and data["counts"]["images"] == 5
        assert set(data["metrics"]) == {"psnr", "ssim", "deg"}
        for info in data["metric_info"].values():
            assert {"lower_is_better", "options", "count", "extra"} <= set(info)
        assert data["metric_info"]["psnr"]["options"]["correct_mean_var"] is True
        rows = read_csv(method_dir / "per_image.csv")
        assert list(rows[0]) == ["name", "index", "psnr", "ssim", "deg"]
        assert [r["index"] for r in rows] == ["0", "1", "2", "3", "4"]
        assert len(list((method_dir / "images").glob("*.png"))) == 5
    weights = summary(baseline / "vqfr-v1")["method"]["weights"]
    assert weights["asset"] == "vqfr-v1" and len(weights["sha256"]) == 64
    assert (baseline.parent / "log.txt").read_text().count("restored") >= 2


def test_values_equal_measuring_the_saved_pngs(baseline, asset_args):
    """What the one pass measured in memory is what a separate read of the written PNGs gives
    (the official scripts' path), image by image."""
    from vqfr.data.images import read_image
    from vqfr.metrics.collection import MetricCollection
    from vqfr.zoo import parse_asset_overrides

    assets = parse_asset_overrides(asset_args[1::2])
    rows = read_csv(baseline / "vqfr-v1" / "per_image.csv")
    metrics = MetricCollection(METRICS.split(","), assets=assets)
    dataset_root = Path(summary(baseline / "vqfr-v1")["dataset"]["root"])
    for row in rows:
        restored = read_image(baseline / "vqfr-v1" / "images" / f"{row['name']}.png")
        gt = read_image(dataset_root / "hq" / f"{row['name']}.png")
        metrics.update(torch.from_numpy(restored).permute(2, 0, 1)[None],
                       torch.from_numpy(gt).permute(2, 0, 1)[None],
                       torch.tensor([int(row["index"])]))
    results = metrics.compute()
    for row in rows:
        index = int(row["index"])
        assert float(row["psnr"]) == pytest.approx(results["psnr"].per_image[index], abs=1e-9)
        assert float(row["ssim"]) == pytest.approx(results["ssim"].per_image[index], abs=1e-9)
        assert float(row["deg"]) == pytest.approx(results["deg"].per_image[index], abs=2e-3)


def test_rerun_reuses_restored_images(baseline, paired_set, asset_args, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(baseline.parent, out)
    before = {p.name: p.stat().st_mtime_ns for p in (out / "tiny/vqfr-v1/images").iterdir()}
    assert main(run_args(paired_set, out, asset_args)) == 0
    data = summary(out / "tiny" / "vqfr-v1")
    assert data["counts"]["restored"] == 0 and data["counts"]["reused"] == 5
    assert data["metrics"] == summary(baseline / "vqfr-v1")["metrics"]
    after = {p.name: p.stat().st_mtime_ns for p in (out / "tiny/vqfr-v1/images").iterdir()}
    assert after == before
    # A changed option is another cache key: everything is restored again.
    assert main(run_args(paired_set, out, asset_args, methods="vqfr-v1:slug=vqfr-v1:"
                         "branch=texture", metrics="psnr")) == 0
    assert summary(out / "tiny" / "vqfr-v1")["counts"]["restored"] == 5


def _journaled(method_dir: Path) -> list[str]:
    journal = method_dir / "journal-0.jsonl"
    if not journal.exists():
        return []
    stems = []
    for line in journal.read_text().splitlines()[1:]:
        try:
            stems.append(json.loads(line)["stem"])
        except (json.JSONDecodeError, KeyError):
            pass
    return stems


@pytest.mark.slow
def test_sigkill_then_resume(baseline, paired_set, asset_args, tmp_path):
    """Also the determinism check: a fresh process ends with the baseline's PNGs and numbers."""
    args = run_args(paired_set, tmp_path, asset_args, methods="vqfr-v1")
    method_dir = tmp_path / "tiny" / "vqfr-v1"
    process = subprocess.Popen([sys.executable, "-m", "vqfr", *args[1:]],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(_journaled(method_dir)) < 2 and process.poll() is None:
        assert time.monotonic() < deadline, "the run wrote nothing in 300 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    finished = _journaled(method_dir)
    assert 2 <= len(finished) < 5 and not (method_dir / "summary.json").exists()
    stamps = {s: (method_dir / "images" / f"{s}.png").stat().st_mtime_ns for s in finished}

    assert main(args) == 0
    data = summary(method_dir)
    assert data["counts"]["reused"] == len(finished)
    assert data["counts"]["restored"] == 5 - len(finished)
    assert stamps == {s: (method_dir / "images" / f"{s}.png").stat().st_mtime_ns
                      for s in finished}
    assert data["metrics"] == summary(baseline / "vqfr-v1")["metrics"]
    # the same intervals (Deg.'s exclusion rule inside each resample included)
    assert data["metric_info"] == summary(baseline / "vqfr-v1")["metric_info"]
    assert data["metric_info"]["deg"]["ci"]["low"] is not None
    assert read_csv(method_dir / "per_image.csv") == read_csv(baseline / "vqfr-v1" /
                                                              "per_image.csv")
    assert not list(method_dir.glob("journal-*.jsonl"))
    for png in (baseline / "vqfr-v1" / "images").iterdir():
        assert (method_dir / "images" / png.name).read_bytes() == png.read_bytes()


@pytest.mark.slow
def test_two_gloo_processes_equal_one(baseline, paired_set, asset_args, tmp_path):
    args = run_args(paired_set, tmp_path, asset_args)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "vqfr", *args], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for slug in ("vqfr-v1", "lq"):
        data = summary(tmp_path / "tiny" / slug)
        assert data["provenance"]["world_size"] == 2
        assert data["counts"]["restored"] == 5
        assert data["metrics"] == summary(baseline / slug)["metrics"]
        assert data["metric_info"] == summary(baseline / slug)["metric_info"]   # intervals too
        assert read_csv(tmp_path / "tiny" / slug / "per_image.csv") == \
            read_csv(baseline / slug / "per_image.csv")
    assert (tmp_path / "tiny" / "comparisons.json").read_text() == \
        (baseline / "comparisons.json").read_text()
    assert done.stdout.count("method") == 1   # one results table, printed by rank 0


def test_folder_method_pairs_by_stem(baseline, paired_set, asset_args, tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    for png in (baseline / "vqfr-v1" / "images").iterdir():   # renamed as GFPGAN names outputs
        shutil.copy(png, folder / f"{png.stem}_00.png")
    args = run_args(paired_set, tmp_path / "run", asset_args, methods=f"folder:{folder}",
                    metrics="psnr,ssim")
    assert main(args) == 0
    method_dir = next((tmp_path / "run" / "tiny").iterdir())
    rows = read_csv(method_dir / "per_image.csv")
    reference = read_csv(baseline / "vqfr-v1" / "per_image.csv")
    assert [(r["name"], r["psnr"], r["ssim"]) for r in rows] == \
        [(r["name"], r["psnr"], r["ssim"]) for r in reference]

    stems = sorted(p.stem for p in (baseline / "vqfr-v1" / "images").iterdir())
    (folder / f"{stems[0]}_00.png").unlink()                                  # missing
    shutil.copy(folder / f"{stems[1]}_00.png", folder / "stranger.png")       # extra
    shutil.copy(folder / f"{stems[2]}_00.png", folder / f"{stems[2]}_00.jpg")  # ambiguous
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert stems[0] in err and "stranger.png" in err and "ambiguous" in err
    assert "Traceback" not in err


def test_absent_weights_are_skipped_with_reason(paired_set, tmp_path, capsys, monkeypatch):
    """Weights neither cached nor downloadable skip the method; a file named with --asset that
    is not there is an error instead (tests/test_hostile_inputs.py)."""
    monkeypatch.setenv("VQFR_EVAL_HOME", str(tmp_path / "empty-cache"))
    code = main(["run", "--dataset", str(paired_set), "--method", "vqfr-v1,lq", "--metrics",
                 "psnr", "--out", str(tmp_path), "--quiet", "--allow-size", "multiple-of-32"])
    captured = capsys.readouterr()
    assert code == 0
    assert "skipped vqfr-v1" in captured.err and "VQFR_v1-33a1fac5.pth" in captured.err
    assert "--asset vqfr-v1=" in captured.err and "Traceback" not in captured.err
    assert "Input" in captured.out and not (tmp_path / "tiny" / "vqfr-v1").exists()


def test_absent_dataset_gives_guidance(tmp_path, capsys):
    assert main(["--dataset", "celeba-test", "--root", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "celeba-test" in err and "not available" in err and "Traceback" not in err


@pytest.mark.parametrize("workers", [1, 6])
def test_decode_and_encode_threads_do_not_change_results(baseline, paired_set, asset_args,
                                                         tmp_path, workers):
    """The prefetch thread and the PNG writer threads (--workers; the baseline ran 2, the GPU
    device check 8) give the same PNG bytes and numbers."""
    assert main(run_args(paired_set, tmp_path, asset_args) + ["--workers", str(workers)]) == 0
    for slug in ("vqfr-v1", "lq"):
        assert read_csv(tmp_path / "tiny" / slug / "per_image.csv") == read_csv(
            baseline / slug / "per_image.csv")
        assert summary(tmp_path / "tiny" / slug)["metrics"] == summary(baseline / slug)["metrics"]
    images = sorted((baseline / "vqfr-v1" / "images").iterdir())
    assert len(images) == 5 and all(
        (tmp_path / "tiny" / "vqfr-v1" / "images" / p.name).read_bytes() == p.read_bytes()
        for p in images)
