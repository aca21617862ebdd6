"""Manifests, open_dataset, the absent-dataset message, verify and list."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tomllib

from vqfr.cli import main
from vqfr.data import datasets
from vqfr.data.datasets import open_dataset, registered_names
from vqfr.data.pairing import PairingError
from vqfr.data.verify import verify_dataset
from vqfr.errors import DatasetUnavailable

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {"celeba-test": ([3000], True), "lfw-test": ([1711], False),
            "webphoto-test": ([407, 469], False), "wider-test": ([970], False),
            "celebchild-test": ([180], False)}


def write(path: Path, seed: int, size=(32, 32), channels=3):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = size if channels == 1 else (*size, channels)
    img = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    path.write_bytes(cv2.imencode(path.suffix, img)[1].tobytes())


def test_manifests_are_complete():
    assert not (REPO / "datasets" / "__init__.py").exists()
    for name, (counts, paired) in EXPECTED.items():
        data = tomllib.loads((REPO / "datasets" / f"{name}.toml").read_text())
        assert data["name"] == name and data["counts"] == counts and data["paired"] is paired
        assert data["resolution"] == [512, 512] and data["source"]["downloads"]
        metrics = set(data["paper_metrics"])
        assert metrics == ({"lpips", "fid", "niqe", "deg", "lmd", "psnr", "ssim"} if paired
                           else {"fid", "niqe"})
        assert ("hq" in data["layout"]) is paired
        assert data["source"]["terms"]


def test_absent_dataset_says_how_to_get_it(tmp_path):
    assert set(EXPECTED) <= set(registered_names(tmp_path))
    with pytest.raises(DatasetUnavailable) as info:
        open_dataset("celeba-test", tmp_path)
    text = str(info.value)
    assert "drive.google.com/drive/folders/1CPdaCijkhl8ojg9ZDCPXntQrnw-8tUeD" in text
    assert "vqfr-eval datasets import celeba-test" in text
    assert f"{tmp_path}/celeba-test/lq/ (3000 images, 512x512)" in text
    assert f"{tmp_path}/celeba-test/hq/" in text
    with pytest.raises(DatasetUnavailable, match="407 or 469 images"):
        open_dataset("webphoto-test", tmp_path)


def test_data_root_order(tmp_path, monkeypatch):
    monkeypatch.delenv(datasets.DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert datasets.data_root() == REPO / "datasets"          # checkout fallback
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "x.toml").write_text('name = "x"\ncounts = [1]\n')
    assert datasets.data_root() == tmp_path / "datasets"      # ./datasets with manifests
    monkeypatch.setenv(datasets.DATA_ENV, str(tmp_path / "env"))
    assert datasets.data_root() == tmp_path / "env"
    assert datasets.data_root(tmp_path / "arg") == tmp_path / "arg"


def test_custom_directory_paired_and_flat(tmp_path):
    for i, stem in enumerate(("b", "a", "c")):
        write(tmp_path / "set" / "lq" / f"{stem}.png", i)
        write(tmp_path / "set" / "hq" / f"{stem}.jpg", 10 + i)
    data = open_dataset(tmp_path / "set")
    assert data.paired and data.manifest_sha256 is None
    assert [(i.stem, i.lq_path.name, i.hq_path.name) for i in data.items] == [
        ("a", "a.png", "a.jpg"), ("b", "b.png", "b.jpg"), ("c", "c.png", "c.jpg")]
    assert len(data.file_list_sha256) == 64
    flat = open_dataset(tmp_path / "set" / "lq")
    assert not flat.paired and flat.count == 3 and flat.file_list_sha256 != data.file_list_sha256
    # one HQ file renamed: opening refuses rather than covering fewer images
    (tmp_path / "set" / "hq" / "c.jpg").rename(tmp_path / "set" / "hq" / "z.jpg")
    with pytest.raises(PairingError, match="c.png.*no counterpart"):
        open_dataset(tmp_path / "set")


MANIFEST = """name = "tiny"
title = "Tiny"
paired = true
counts = [3]
resolution = [32, 32]
paper_metrics = []
[layout]
lq = "lq"
hq = "hq"
"""


def test_verify_reports_every_bad_file_by_name(tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(MANIFEST)
    lq, hq = tmp_path / "tiny" / "lq", tmp_path / "tiny" / "hq"
    for i, stem in enumerate(("a", "b", "c")):
        write(lq / f"{stem}.png", i)
        write(hq / f"{stem}.png", 10 + i)
    assert verify_dataset("tiny", tmp_path).comparable
    assert main(["datasets", "verify", "tiny", "--root", str(tmp_path)]) == 0

    write(lq / "b.png", 1, channels=1)                 # greyscale: a note only
    report = verify_dataset("tiny", tmp_path)
    assert report.comparable and any(p.severity == "note" and p.file.endswith("b.png")
                                     for p in report.problems)
    write(hq / "c.png", 2, size=(16, 32))              # wrong size
    (hq / "a.png").write_bytes(b"")                    # zero-byte
    write(lq / "a.jpg", 3)                             # duplicate stem
    (lq / "notes.txt").write_text("x")                 # stray file
    report = verify_dataset("tiny", tmp_path)
    assert not report.comparable
    errors = {(Path(p.file).name, p.message) for p in report.problems if p.severity == "error"}
    assert ("c.png", "size 16x32 (HxW), expected 32x32") in errors
    assert ("a.png", "empty file (0 bytes)") in errors
    assert ("a", "several files share this name: a.jpg, a.png") in errors
    assert ("lq", "4 images, expected 3") in errors
    assert any(p.severity == "warning" and p.file.endswith("notes.txt") for p in report.problems)
    assert main(["datasets", "verify", "tiny", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "c.png" in out and "NOT paper-comparable" in out


def test_list_and_demo(tmp_path, capsys):
    assert main(["datasets", "demo", "--root", str(tmp_path), "--count", "2"]) == 0
    data = open_dataset(tmp_path / "demo")
    assert data.paired and [i.stem for i in data.items] == ["demo_000", "demo_001"]
    assert main(["datasets", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "celeba-test" in out and "absent" in out and "407/469" in out
    demo_line = next(line for line in out.splitlines() if line.startswith("demo "))
    assert demo_line.split()[1:4] == ["8", "2", "incomplete"]
