"""``vqfr-eval metrics`` on folders: files pair by stem (renamed outputs), the values are the
reference metric goldens (official scripts on the same images), and it works without GT."""
from __future__ import annotations

import csv
import hashlib
import json

import cv2
import pytest

from vqfr.cli import main

FACES = ("codeformer_0143.png", "codeformer_0240.png", "gfpgan_Adele_crop.png")


@pytest.fixture(scope="module")
def golden(reference_dir):
    return json.loads((reference_dir / "metrics" / "metrics_golden_public.json").read_text())


@pytest.fixture(scope="module")
def folders(tmp_path_factory, faces_dir, golden):
    """restored/ = the golden's "blur" degradation, saved under GFPGAN-style names
    (``<stem>_00.png``); gt/ = the faces."""
    root = tmp_path_factory.mktemp("metric_folders")
    (root / "restored").mkdir()
    (root / "gt").mkdir()
    for name in FACES:
        face = cv2.imread(str(faces_dir / name))
        blur = cv2.GaussianBlur(face, (0, 0), 2)
        assert hashlib.sha256(blur.tobytes()).hexdigest() == golden["inputs"][name]["blur_sha256"]
        cv2.imwrite(str(root / "restored" / name.replace(".png", "_00.png")), blur)
        cv2.imwrite(str(root / "gt" / name), face)
    return root


def niqe_asset(reference_dir) -> list[str]:
    return ["--asset", f"niqe-params={reference_dir / 'metrics' / 'niqe_pris_params.npz'}"]


def test_metrics_on_a_folder_pair(folders, golden, reference_dir, tmp_path):
    out = tmp_path / "m.json"
    code = main(["metrics", "--restored", str(folders / "restored"), "--gt", str(folders / "gt"),
                 "--metrics", "psnr,ssim,niqe", "--json", str(out), "--csv",
                 str(tmp_path / "m.csv"), "--quiet", *niqe_asset(reference_dir)])
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result) >= {"metrics", "per_image", "options", "provenance"}
    rows = {row["name"]: row for row in result["per_image"]}
    assert sorted(rows) == sorted(name.replace(".png", "_00") for name in FACES)
    for name in FACES:
        row = rows[name.replace(".png", "_00")]
        expected = golden["psnr_ssim"]["rgb_cmv"]["per_image"][name]["blur"]
        assert row["psnr"] == pytest.approx(expected["psnr"], abs=1e-4)
        assert row["ssim"] == pytest.approx(expected["ssim"], abs=1e-6)
        assert row["niqe"] == pytest.approx(golden["niqe_official"]["per_image"][name]["blur"],
                                            abs=1e-3)
    for metric in ("psnr", "ssim", "niqe"):
        mean = sum(row[metric] for row in rows.values()) / len(rows)
        assert result["metrics"][metric] == pytest.approx(mean, rel=1e-12)
    assert result["options"]["psnr"]["options"]["correct_mean_var"] is True
    with open(tmp_path / "m.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == [r["name"] for r in result["per_image"]]
    assert float(table[0]["psnr"]) == result["per_image"][0]["psnr"]


def test_metrics_without_gt(folders, golden, reference_dir, tmp_path, capsys):
    out = tmp_path / "m.json"
    code = main(["metrics", "--restored", str(folders / "restored"), "--metrics", "psnr,niqe",
                 "--json", str(out), "--quiet", *niqe_asset(reference_dir)])
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result["metrics"]) == {"niqe"}
    assert "psnr" in result["skipped"] and "psnr: skipped" in capsys.readouterr().out
    for row in result["per_image"]:
        name = row["name"].removesuffix("_00") + ".png"
        assert row["niqe"] == pytest.approx(golden["niqe_official"]["per_image"][name]["blur"],
                                            abs=1e-3)


def test_metrics_refuses_unpaired_files(folders, tmp_path, capsys):
    restored = tmp_path / "restored"
    restored.mkdir()
    for path in (folders / "restored").iterdir():
        (restored / path.name).write_bytes(path.read_bytes())
    (restored / "someone_else.png").write_bytes((folders / "gt" / FACES[0]).read_bytes())
    code = main(["metrics", "--restored", str(restored), "--gt", str(folders / "gt"),
                 "--metrics", "psnr", "--json", str(tmp_path / "m.json"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "someone_else.png" in err and "Traceback" not in err
    assert not (tmp_path / "m.json").exists()
