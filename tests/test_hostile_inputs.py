"""Careless users and hostile files, through the CLI in subprocesses: each case asserts the
message, the exit code, and that nothing finished was lost and nothing of the user's was
overwritten. (Issue 13; the cases that were already handled well are tested where they live:
unsafe archive members in test_data_archive.py, pickles in test_metrics_fid.py and
test_zoo_checkpoint.py, report escaping in test_report.py, kill-and-resume and 2-process runs
in test_run_pipeline.py.)"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from goldens import write_tiny_paired_set
from report_runs import make_runs
from test_data_archive import MANIFEST, make_tar, make_zip, official_members, png_bytes

SIZE = 32


# -- running the CLI ---------------------------------------------------------------------------
def cli(*args, umask: int | None = None, env: dict | None = None,
        code: str | None = None) -> subprocess.CompletedProcess:
    """``python -m vqfr ARGS`` (or ``python -c CODE ARGS``) in a fresh process."""
    command = [sys.executable, *(["-c", code] if code else ["-m", "vqfr"]), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})},
                          preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def assert_refused(done: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2 with a message (no traceback) containing every fragment."""
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    for fragment in fragments:
        assert fragment in done.stderr, (fragment, done.stderr[-3000:])


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: (sha256, mtime_ns)."""
    return {p.relative_to(folder).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                               p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def summary(method_dir: Path) -> dict:
    return json.loads((method_dir / "summary.json").read_text())


def journaled(method_dir: Path) -> list[str]:
    lines = (method_dir / "journal-0.jsonl").read_text().splitlines()[1:]
    return [json.loads(line)["stem"] for line in lines]


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory, faces_dir) -> Path:
    """5 real faces at 32x32, lq/ and hq/ (the pipeline tests' set)."""
    return write_tiny_paired_set(faces_dir, tmp_path_factory.mktemp("data") / "tiny", 5, SIZE)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    from vqfr.zoo import write_synthetic_checkpoint

    return write_synthetic_checkpoint("vqfr-v1", tmp_path_factory.mktemp("w") / "v1.pth", seed=1)


def run_args(dataset: Path, out: Path, weights: Path, methods: str = "vqfr-v1,lq",
             metrics: str = "psnr,ssim") -> list[str]:
    return ["run", "--dataset", dataset, "--method", methods, "--metrics", metrics, "--out", out,
            "--batch-size", "2", "--allow-size", "multiple-of-32", "--quiet",
            "--asset", f"vqfr-v1={weights}"]


@pytest.fixture(scope="module")
def baseline(tiny, weights, tmp_path_factory) -> Path:
    """An uninterrupted run, made under umask 027 (test_run_files_honour_the_umask)."""
    out = tmp_path_factory.mktemp("baseline")
    done = cli(*run_args(tiny, out, weights), umask=0o027)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


# -- 1. the commit point -----------------------------------------------------------------------
KILL_IN_SECOND_METRIC_UPDATE = """
import os, signal, sys
from vqfr.run.metricset import MetricSet
update, calls = MetricSet.update, []
def dying(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 2:   # batch 2 (images 2, 3) is being measured
        os.kill(os.getpid(), signal.SIGKILL)
    return update(self, *args, **kwargs)
MetricSet.update = dying
from vqfr.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_while_measuring_keeps_the_restored_batch(tiny, weights, baseline, tmp_path):
    args = run_args(tiny, tmp_path, weights, methods="vqfr-v1")
    killed = cli(*args, code=KILL_IN_SECOND_METRIC_UPDATE)
    assert killed.returncode == -9, killed.stderr[-3000:]
    method_dir = tmp_path / "tiny" / "vqfr-v1"
    written = sorted(p.stem for p in (method_dir / "images").glob("*.png"))
    stems = sorted(p.stem for p in (tiny / "lq").iterdir())
    assert written == stems[:4] == sorted(journaled(method_dir))   # batch 2 is committed
    before = snapshot(method_dir / "images")

    rerun = cli(*args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    data = summary(method_dir)
    assert data["counts"]["restored"] == 1 and data["counts"]["reused"] == 4
    after = snapshot(method_dir / "images")
    assert {k: after[k] for k in before} == before                 # nothing restored again
    assert data["metrics"] == summary(baseline / "tiny" / "vqfr-v1")["metrics"]


# -- 2. an edited restored PNG -----------------------------------------------------------------
def test_edited_restored_png_is_restored_again(tiny, weights, baseline, tmp_path):
    shutil.copytree(baseline, tmp_path / "run")
    images = tmp_path / "run" / "tiny" / "vqfr-v1" / "images"
    edited = sorted(images.iterdir())[1]
    original = edited.read_bytes()
    cv2.imwrite(str(edited), 255 - cv2.imread(str(edited)))
    done = cli(*run_args(tiny, tmp_path / "run", weights))
    assert done.returncode == 0, done.stderr[-3000:]
    data = summary(tmp_path / "run" / "tiny" / "vqfr-v1")
    assert data["counts"]["restored"] == 1 and data["counts"]["reused"] == 4
    assert data["counts"]["restored_again"] == [edited.stem]
    assert edited.read_bytes() == original
    assert data["metrics"] == summary(baseline / "tiny" / "vqfr-v1")["metrics"]
    assert f"restored again: {edited.stem}" in (tmp_path / "run" / "log.txt").read_text()


# -- 3. restore --output = --input -------------------------------------------------------------
def test_restore_refuses_to_overwrite_its_inputs(tiny, weights, tmp_path):
    folder = tmp_path / "faces"
    shutil.copytree(tiny / "lq", folder)
    before = snapshot(folder)
    done = cli("restore", "--method", "vqfr-v1", "--input", folder, "--output", folder,
               "--allow-size", "multiple-of-32", "--asset", f"vqfr-v1={weights}", "--quiet")
    assert_refused(done, "would overwrite 5 input file(s)", str(folder / sorted(before)[0]),
                   "nothing was written")
    assert snapshot(folder) == before


# -- 4 and 10. the report's own files ----------------------------------------------------------
@pytest.fixture(scope="module")
def report_dir(faces_dir, tmp_path_factory):
    """A report built (under umask 027) into a folder holding the user's files and a manifest
    left by an older report that listed img/old.png."""
    tmp = tmp_path_factory.mktemp("report")
    run, _ = make_runs(faces_dir, tmp)
    out = tmp / "out"
    for name in ("img/mine.png", "fig/notes.txt", "keep.txt", "img/old.png"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"the user's " + name.encode())
    (out / ".vqfr-report.json").write_text(json.dumps({"files": ["img/old.png"]}))
    user = snapshot(out)
    done = cli("report", run, "-o", out, umask=0o027)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, user, run


def test_report_removes_only_its_own_files(report_dir):
    out, user, _ = report_dir
    assert not (out / "img/old.png").exists()         # the older report's file
    after = snapshot(out)
    assert all(after[name] == user[name] for name in ("img/mine.png", "fig/notes.txt", "keep.txt"))
    listed = set(json.loads((out / ".vqfr-report.json").read_text())["files"])
    assert "index.html" in listed and not listed & {"img/mine.png", "fig/notes.txt", "keep.txt"}
    assert listed == {name for name in after if name not in user and name != ".vqfr-report.json"}


def test_report_refuses_to_overwrite_a_user_file(report_dir, tmp_path):
    first, _, run = report_dir
    out = tmp_path / "out"
    taken = next(p for p in sorted((first / "img").iterdir()) if p.name != "mine.png")
    (out / "img").mkdir(parents=True)
    (out / "img" / taken.name).write_bytes(b"mine")
    done = cli("report", run, "-o", out)
    assert_refused(done, f"img/{taken.name}", "did not write", "nothing was changed")
    assert snapshot(out) == {f"img/{taken.name}": (hashlib.sha256(b"mine").hexdigest(),
                                                  (out / "img" / taken.name).stat().st_mtime_ns)}


def test_report_files_honour_the_umask(report_dir):
    out, user, _ = report_dir
    made = [p for p in out.rglob("*") if p.is_file() and p.relative_to(out).as_posix() not in user]
    assert any(p.name == "index.html" for p in made) and len(made) > 5
    for path in made:
        assert path.stat().st_mode & 0o777 == 0o640, path


def test_run_files_honour_the_umask(baseline):
    made = list(baseline.rglob("*"))
    assert any(p.suffix == ".png" for p in made) and any(p.name == "summary.json" for p in made)
    for path in made:
        assert path.stat().st_mode & 0o777 == (0o750 if path.is_dir() else 0o640), path


# -- 5. one stem, two files --------------------------------------------------------------------
def test_unpaired_set_with_two_files_of_one_stem_is_refused(tiny, tmp_path):
    lq = tmp_path / "set" / "lq"
    shutil.copytree(tiny / "lq", lq)
    first = sorted(lq.iterdir())[0]
    cv2.imwrite(str(first.with_suffix(".jpg")), cv2.imread(str(first)))
    done = cli("run", "--dataset", lq.parent, "--method", "lq", "--metrics", "niqe", "--out",
               tmp_path / "run", "--quiet")
    assert_refused(done, f"{first.stem}: ambiguous", first.name, first.with_suffix(".jpg").name)
    assert not (tmp_path / "run" / "set").exists()


def test_metrics_without_gt_with_two_files_of_one_stem_is_refused(tiny, tmp_path):
    folder = tmp_path / "restored"
    shutil.copytree(tiny / "lq", folder)
    first = sorted(folder.iterdir())[0]
    cv2.imwrite(str(first.with_suffix(".bmp")), cv2.imread(str(first)))
    done = cli("metrics", "--restored", folder, "--metrics", "niqe", "--json",
               tmp_path / "out.json", "--quiet")
    assert_refused(done, f"{first.stem}: ambiguous", first.with_suffix(".bmp").name)
    assert not (tmp_path / "out.json").exists()


# -- 6. --asset naming a file that is not there ------------------------------------------------
def test_asset_path_that_does_not_exist_is_an_error(tiny, tmp_path):
    typo = tmp_path / "VQFR_v1-33a1fac5.ptn"
    done = cli("run", "--dataset", tiny, "--method", "vqfr-v1,lq", "--metrics", "psnr", "--out",
               tmp_path / "run", "--quiet", "--asset", f"vqfr-v1={typo}")
    assert_refused(done, f"--asset 'vqfr-v1={typo}'", "does not exist")
    assert not (tmp_path / "run").exists()


# -- 7 and 11. numbers and paths checked when parsed -------------------------------------------
@pytest.mark.parametrize("args,message", [
    (["run", "--dataset", "D", "--batch-size", "-1"], "--batch-size: must be at least 1, got -1"),
    (["run", "--dataset", "D", "--batch-size", "0"], "--batch-size: must be at least 1, got 0"),
    (["run", "--dataset", "D", "--workers", "0"], "--workers: must be at least 1, got 0"),
    (["run", "--dataset", "D", "--fidelity-ratio", "1.5"], "--fidelity-ratio: must be between 0"),
    (["metrics", "--restored", ".", "--json", "o.json", "--batch-size", "0"], "--batch-size"),
    (["restore", "--method", "vqfr-v1", "--input", ".", "--output", "o", "--batch-size", "x"],
     "--batch-size: expected an integer, got 'x'"),
    (["fid-stats", ".", "-o", "s.pth", "--batch-size", "0"], "--batch-size: must be at least 1"),
    (["datasets", "verify", "demo", "--workers", "0"], "--workers: must be at least 1"),
    (["datasets", "demo", "--count", "0"], "--count: must be at least 1"),
    (["datasets", "synth", "--hq", ".", "--out", "o", "--shard", "2/2"], "needs 0 <= K < N"),
    (["ablate", "--dataset", "D", "--study", "twm", "--offsets-images", "-1"],
     "--offsets-images: must be 0 or more"),
    (["profile", "--repeats", "0"], "--repeats: must be at least 1"),
    (["profile", "--batch-size", "1,0"], "--batch-size: must be at least 1, got 0"),
    (["run", "--dataset", "D", "--device", "gpu"],
     "--device: expected cpu, cuda or cuda:N, got 'gpu'"),
    pytest.param(["profile", "--device", "cuda"], "--device: cuda: torch sees no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU")),
    (["metrics", "--restored", ".", "--device", "cuda:x"], "--device: expected cpu, cuda"),
])
def test_bad_numbers_are_usage_errors(args, message, tmp_path):
    done = subprocess.run([sys.executable, "-m", "vqfr", *args], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert_refused(done, message)
    assert list(tmp_path.iterdir()) == []


def test_out_pointing_at_a_file_is_refused(tiny, tmp_path):
    target = tmp_path / "results.json"
    target.write_text("{}")
    done = cli("run", "--dataset", tiny, "--method", "lq", "--metrics", "psnr", "--out", target)
    assert_refused(done, f"--out: {target} exists and is not a folder")
    assert target.read_text() == "{}"


@pytest.mark.parametrize("flag", ["--restored", "--gt"])
def test_metrics_on_a_missing_folder_is_refused(tiny, tmp_path, flag):
    args = {"--restored": tiny / "lq", "--gt": tiny / "hq", flag: tmp_path / "nowhere"}
    done = cli("metrics", *[x for pair in args.items() for x in pair], "--metrics", "psnr",
               "--json", tmp_path / "o.json")
    assert_refused(done, f"{flag}: {tmp_path / 'nowhere'}: no such folder")
    assert not (tmp_path / "o.json").exists()


@pytest.mark.parametrize("metric,largest", [("psnr:crop_border=16", 15),
                                            ("ssim:crop_border=11", 10), ("ssim", None)])
def test_crop_border_larger_than_the_images_is_refused(tiny, tmp_path, metric, largest):
    """A crop that leaves nothing (PSNR) or less than SSIM's 11 x 11 window is an error naming
    a file, the image size and the largest crop that works; no NaN result (was: psnr nan with
    exit 0, a cv2 traceback for ssim)."""
    small = tmp_path / "small"
    if largest is None:         # images below SSIM's window, no crop at all
        for side in ("lq", "hq"):
            (small / side).mkdir(parents=True)
            for path in sorted((tiny / side).glob("*.png"))[:2]:
                cv2.imwrite(str(small / side / path.name), cv2.imread(str(path))[:10, :10])
        data = small
    else:
        data = tiny
    done = cli("metrics", "--restored", data / "lq", "--gt", data / "hq", "--metrics", metric,
               "--json", tmp_path / "o.json")
    first = sorted((data / "lq").glob("*.png"))[0]
    if largest is None:
        assert_refused(done, f"{first}: ssim needs images of at least 11 x 11 (its Gaussian "
                             "window), got 10 x 10")
    else:
        name, crop = metric.split(":crop_border=")
        assert_refused(done, f"{first}: {name} needs images of at least",
                       f"got {SIZE - 2 * int(crop)} x", f"after crop_border={crop} ({SIZE} x {SIZE} before): use crop_border <= "
                       f"{largest}")
    assert not (tmp_path / "o.json").exists()
    if largest is not None:     # the largest crop that works gives a number
        done = cli("metrics", "--restored", data / "lq", "--gt", data / "hq", "--metrics",
                   metric.split("=")[0] + f"={largest}", "--json", tmp_path / "o.json")
        assert done.returncode == 0, done.stderr[-3000:]
        value = json.loads((tmp_path / "o.json").read_text())["metrics"][metric.split(":")[0]]
        assert np.isfinite(value)


@pytest.mark.parametrize("mode", ["official", "torch"])
def test_niqe_on_images_below_one_block_is_refused(tiny, reference_dir, tmp_path, mode):
    """NIQE on 32 x 32 images: exit 2 naming the first file (was: a ValueError traceback)."""
    done = cli("metrics", "--restored", tiny / "lq", "--metrics", f"niqe:mode={mode}",
               "--asset", f"niqe-params={reference_dir / 'metrics' / 'niqe_pris_params.npz'}",
               "--json", tmp_path / "o.json")
    first = sorted((tiny / "lq").glob("*.png"))[0]
    assert_refused(done, f"{first}: niqe needs images of at least 96 x 96 (one block), got "
                         f"{SIZE} x {SIZE}")
    assert not (tmp_path / "o.json").exists()


def test_lpips_on_images_below_vggs_poolings_is_refused(tiny, reference_dir, synth_weights,
                                                        tmp_path):
    """LPIPS on 8 x 8 images (VGG16's fourth pooling leaves nothing): exit 2 naming the first
    file (was: a torch RuntimeError traceback)."""
    manifest = json.loads((reference_dir / "metrics/vgg16_features_manifest.json").read_text())
    torch.save(synth_weights.synth_state_dict(manifest, 1), tmp_path / "vgg.pth")
    for side in ("lq", "hq"):
        (tmp_path / side).mkdir()
        for path in sorted((tiny / side).glob("*.png"))[:2]:
            cv2.imwrite(str(tmp_path / side / path.name), cv2.imread(str(path))[:8, :8])
    done = cli("metrics", "--restored", tmp_path / "lq", "--gt", tmp_path / "hq", "--metrics",
               "lpips", "--asset", f"lpips-vgg16={tmp_path / 'vgg.pth'}", "--json",
               tmp_path / "o.json")
    first = sorted((tmp_path / "lq").glob("*.png"))[0]
    assert_refused(done, f"{first}: lpips needs images of at least 16 x 16 (VGG16's four 2x2 "
                         "poolings), got 8 x 8")
    assert not (tmp_path / "o.json").exists()


def test_crop_border_too_large_in_a_run_keeps_the_restored_images(tiny, tmp_path):
    """In a run, the method gets no result (named file, no traceback); its restored images are
    kept and journaled, so the rerun with a crop that fits restores nothing again."""
    out = tmp_path / "out"
    args = ["run", "--dataset", tiny, "--method", "lq", "--out", out, "--quiet"]
    done = cli(*args, "--metrics", "psnr:crop_border=16")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "no result for lq:" in done.stderr and "use crop_border <= 15" in done.stderr
    method_dir = out / tiny.name / "lq"
    first_batch = journaled(method_dir)       # committed before its metrics ran
    assert first_batch and not (method_dir / "summary.json").exists()
    kept = snapshot(method_dir / "images")
    assert sorted(kept) == sorted(f"{stem}.png" for stem in first_batch)
    done = cli(*args, "--metrics", "psnr:crop_border=15")
    assert done.returncode == 0, done.stderr[-3000:]
    assert {k: v for k, v in snapshot(method_dir / "images").items() if k in kept} == kept
    assert np.isfinite(summary(method_dir)["metrics"]["psnr"])


# -- 11. files that are not what the asset should be -------------------------------------------
def vgg16_with_a_wrong_shape(path: Path) -> Path:
    """torchvision's vgg16 feature keys, every shape right but the first convolution's (made
    for 1-channel input); expanded zeros, so the file stays small."""
    shapes, channels = {}, 3
    for index, width in zip((0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28),
                            (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)):
        shapes[f"features.{index}.weight"] = (width, channels, 3, 3)
        shapes[f"features.{index}.bias"] = (width,)
        channels = width
    shapes["features.0.weight"] = (64, 1, 3, 3)
    torch.save({k: torch.zeros(1).expand(s) for k, s in shapes.items()}, path)
    return path


def object_array_npz(path: Path, keys: tuple[str, ...]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:   # what np.savez writes for object arrays
        for key in keys:
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.array([{"x": 1}], dtype=object),
                                      allow_pickle=True)
            zf.writestr(f"{key}.npy", buffer.getvalue())
    return path


@pytest.mark.parametrize("case", ["vgg-wrong-shape", "vqfr-as-lpips", "vqfr-as-inception",
                                  "text-as-niqe", "object-arrays-as-niqe",
                                  "object-arrays-as-fid-stats"])
def test_wrong_metric_files_are_refused(case, tiny, weights, tmp_path):
    metric, asset, path, message = {
        "vgg-wrong-shape": ("lpips", "lpips-vgg16", vgg16_with_a_wrong_shape(tmp_path / "v.pth"),
                            "slice1.0.weight: file (64, 1, 3, 3), model (64, 3, 3, 3)"),
        "vqfr-as-lpips": ("lpips", "lpips-vgg16", weights, "is not VGG16 weights"),
        "vqfr-as-inception": ("fid", "fid-inception", weights, "does not fit FIDInceptionV3"),
        "text-as-niqe": ("niqe", "niqe-params", tmp_path / "n.npz",
                         "not usable as a NIQE parameter file: not an .npz"),
        "object-arrays-as-niqe": ("niqe", "niqe-params", object_array_npz(
            tmp_path / "o.npz", ("mu_pris_param", "cov_pris_param", "gaussian_window")),
            "object arrays (pickled Python objects), which are never loaded"),
        "object-arrays-as-fid-stats": ("fid", None, object_array_npz(
            tmp_path / "s.npz", ("mu", "sigma")), "object arrays (pickled Python objects)"),
    }[case]
    if case == "text-as-niqe":
        path.write_text("mu_pris_param = 1\n")
    extra = ["--asset", f"{asset}={path}"] if asset else ["--fid-ref", path]
    if metric == "fid" and asset:
        extra += ["--fid-ref", "gt"]
    elif metric == "fid":   # some file for the network: the statistics are read first
        extra += ["--asset", f"fid-inception={weights}"]
    done = cli("metrics", "--restored", tiny / "lq", "--gt", tiny / "hq", "--metrics", metric,
               "--json", tmp_path / "o.json", "--quiet", *extra)
    assert_refused(done, str(path), message)
    assert not (tmp_path / "o.json").exists()


# -- 8. archives -------------------------------------------------------------------------------
@pytest.fixture
def data_root(tmp_path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "tiny.toml").write_text(MANIFEST)
    return root


def assert_nothing_imported(root: Path) -> None:
    assert sorted(p.name for p in root.iterdir()) == ["tiny.toml"]


def test_zip_bomb_is_refused_before_writing(data_root, tmp_path):
    members = official_members()
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        zf.writestr("celeba_512_validation_lq/00000003.png", bytes(20 << 20))
    assert bomb.stat().st_size < 100_000
    done = cli("datasets", "import", "tiny", bomb, "--root", data_root)
    assert_refused(done, "archive bomb", "'celeba_512_validation_lq/00000003.png'",
                   "20,971,520 bytes", "--max-ratio", "nothing was written")
    assert_nothing_imported(data_root)


def test_zip_with_a_bad_crc_is_refused(data_root, tmp_path):
    archive = make_zip(tmp_path / "bad.zip", official_members())
    data = bytearray(archive.read_bytes())
    target = png_bytes(1)                                  # the second LQ image, stored
    at = bytes(data).index(target) + len(target) // 2
    data[at] ^= 0xFF
    archive.write_bytes(bytes(data))
    done = cli("datasets", "import", "tiny", archive, "--root", data_root)
    assert_refused(done, str(archive), "'celeba_512_validation_lq/00000001.png'",
                   "corrupt or truncated", "Nothing was imported")
    assert_nothing_imported(data_root)


def test_truncated_tar_gz_is_refused(data_root, tmp_path):
    archive = make_tar(tmp_path / "cut.tar.gz", official_members())
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    done = cli("datasets", "import", "tiny", archive, "--root", data_root)
    assert_refused(done, str(archive), "corrupt or truncated", "Nothing was imported")
    assert_nothing_imported(data_root)


# -- 9. a full disk ----------------------------------------------------------------------------
def small_disk_run(size_kib: int, disk: Path, keep: Path, *args, before: str = ""
                   ) -> subprocess.CompletedProcess:
    """Run the CLI with ``disk`` a fresh tmpfs of ``size_kib`` (in a private mount namespace;
    ``before``: shell commands run first), then copy what it left there to ``keep``."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("needs `unshare -rm` (user and mount namespaces) for a small tmpfs")
    disk.mkdir()
    keep.mkdir()
    script = (f'mount -t tmpfs -o size={size_kib}k tmpfs "{disk}" || exit 99; {before}'
              f'"{sys.executable}" -m vqfr "$@"; rc=$?; cp -a "{disk}/." "{keep}/"; exit $rc')
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script, "sh", *map(str, args)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode != 99, done.stderr
    return done


def test_full_disk_is_a_clean_error_and_resumes(tiny, weights, baseline, tmp_path):
    disk, keep = tmp_path / "disk", tmp_path / "keep"
    args = run_args(tiny, disk / "run", weights, methods="lq", metrics="psnr,ssim")
    done = small_disk_run(24, disk, keep, *args)
    assert_refused(done, "No space left on device", f"{disk}/run/",
                   "no partial file was left", "rerun the same command to resume")
    method_dir = keep / "run" / "tiny" / "lq"
    assert not list(keep.rglob("*.tmp"))
    finished = journaled(method_dir)
    assert 0 < len(finished) < 5 and not (method_dir / "summary.json").exists()
    kept = snapshot(method_dir / "images")

    resumed = cli(*run_args(tiny, keep / "run", weights, methods="lq", metrics="psnr,ssim"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert summary(method_dir)["counts"]["reused"] == len(finished)
    after = snapshot(method_dir / "images")
    assert all(after[f"{stem}.png"] == kept[f"{stem}.png"] for stem in finished)
    assert summary(method_dir)["metrics"] == summary(baseline / "tiny" / "lq")["metrics"]


def test_import_larger_than_the_free_space_is_refused(tmp_path):
    members = {f"celeba_512_validation_lq/{i:08d}.png": png_bytes(i, (128, 128))
               for i in range(3)}
    members.update({f"celeba_512_validation/{i:08d}.png": png_bytes(9 + i, (128, 128))
                    for i in range(3)})
    archive = make_zip(tmp_path / "big.zip", members)      # 6 x 49 kB, on a 128 kB disk
    (tmp_path / "tiny.toml").write_text(MANIFEST)
    disk, keep = tmp_path / "disk", tmp_path / "keep"
    done = small_disk_run(128, disk, keep, "datasets", "import", "tiny", archive, "--root", disk,
                          before=f'cp "{tmp_path / "tiny.toml"}" "{disk}/"; ')
    assert_refused(done, f"{disk}: the import needs 0.3 MiB", "MiB are free",
                   "nothing was written")
    assert sorted(p.name for p in keep.iterdir()) == ["tiny.toml"]


# -- 12. conversions on reading ----------------------------------------------------------------
def exif_rotated_jpeg(bgr: np.ndarray) -> bytes:
    jpeg = cv2.imencode(".jpg", bgr)[1].tobytes()
    tiff = (b"II" + struct.pack("<HI", 42, 8) + struct.pack("<H", 1)
            + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack("<I", 0))
    segment = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + jpeg[2:]


@pytest.fixture(scope="module")
def odd_files(tiny, tmp_path_factory) -> Path:
    """The tiny set with a greyscale, a palette and an EXIF-rotated LQ file and an opaque RGBA
    GT file (each converted on reading, correctly)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("odd") / "odd"
    shutil.copytree(tiny, root)
    a, b, c, d, _ = sorted(p.stem for p in (root / "lq").iterdir())
    grey = cv2.imread(str(root / "lq" / f"{a}.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(root / "lq" / f"{a}.png"), grey)
    rgb = cv2.imread(str(root / "lq" / f"{b}.png"))[:, :, ::-1]
    Image.fromarray(np.ascontiguousarray(rgb)).convert("P", palette=Image.ADAPTIVE).save(
        root / "lq" / f"{b}.png")
    bgr = cv2.imread(str(root / "hq" / f"{c}.png"))
    cv2.imwrite(str(root / "hq" / f"{c}.png"), np.dstack([bgr, np.full(bgr.shape[:2], 255,
                                                                       np.uint8)]))
    (root / "lq" / f"{d}.png").unlink()
    (root / "lq" / f"{d}.jpg").write_bytes(exif_rotated_jpeg(cv2.imread(str(root / "hq" /
                                                                           f"{d}.png"))))
    return root


def test_conversions_are_noted_once_in_log_and_summary(odd_files, tmp_path):
    a, b, c, d, _ = sorted(p.stem for p in (odd_files / "lq").iterdir())
    expected = {"greyscale -> RGB (channel replicated)": [f"lq/{a}.png"],
                "palette -> RGB (colour table applied)": [f"lq/{b}.png"],
                "alpha channel dropped (fully opaque)": [f"hq/{c}.png"]}
    args = ["run", "--dataset", odd_files, "--method", "lq", "--metrics", "psnr", "--out",
            tmp_path, "--batch-size", "2"]
    for attempt in (1, 2):                # the rerun reuses everything and still says so
        done = cli(*args)
        assert done.returncode == 0, done.stderr[-3000:]
        noted = summary(tmp_path / "odd" / "lq")["conversions"]
        exif = [n for n in noted if n.startswith("EXIF orientation 6")]
        assert len(exif) == 1 and noted.pop(exif[0]) == {"count": 1, "files": [f"lq/{d}.jpg"]}
        assert noted == {n: {"count": 1, "files": f} for n, f in expected.items()}
        log = (tmp_path / "log.txt").read_text()
        for name in (f"lq/{a}.png", f"lq/{b}.png", f"hq/{c}.png", f"lq/{d}.jpg"):
            assert done.stderr.count(name) == 1 and log.count(name) == attempt, name
    assert summary(tmp_path / "odd" / "lq")["counts"]["reused"] == 5


# -- 13. thread counts -------------------------------------------------------------------------
def test_thread_count_is_recorded_and_a_mismatch_warned(tiny, tmp_path):
    args = ["run", "--dataset", tiny, "--method", "lq", "--metrics", "psnr", "--out", tmp_path,
            "--batch-size", "2"]
    first = cli(*args, env={"OMP_NUM_THREADS": "1"})
    assert first.returncode == 0, first.stderr[-3000:]
    assert summary(tmp_path / "tiny" / "lq")["provenance"]["threads"] == 1
    assert "thread counts differ" not in first.stderr
    again = cli(*args, env={"OMP_NUM_THREADS": "2"})
    assert again.returncode == 0, again.stderr[-3000:]
    provenance = summary(tmp_path / "tiny" / "lq")["provenance"]
    assert provenance["threads"] == 2 and provenance["reused_threads"] == [1]
    assert "CPU thread counts differ (this run: [2] per process; reused work: [1])" in \
        again.stderr
