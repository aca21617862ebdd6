"""Run directories for the report tests, written through the runner's real result writer
(`vqfr.run.results.write_summary` / `write_per_image_csv`) from real faces: "restorations" are
blends of a blurred copy and the ground truth, scored with PSNR computed here, so every number
in the report has a known, independent value. Used by test_report, test_report_browser and
test_profile."""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np

from vqfr.cli import main
from vqfr.metrics.base import MetricResult
from vqfr.run.results import write_per_image_csv, write_summary

SIZE = 128
NASTY_STEM = "<img src=x onerror=alert(1)>"          # '/' cannot appear in a file name
NASTY_LABEL = "<script>alert(1)</script>"


class _PsnrInfo:
    """What write_summary reads from a metric object: name, direction and protocol options."""
    name = "psnr"
    lower_is_better = False

    def options(self):
        return {"correct_mean_var": False, "test_y_channel": False, "crop_border": 0}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / mse))


def _write_method(root: Path, dataset: dict, name: str, label: str, options: dict,
                  images: dict[str, np.ndarray], gts: dict[str, np.ndarray]) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{name}-{json.dumps(options, sort_keys=True)}")
    folder = root / dataset["name"] / slug
    (folder / "images").mkdir(parents=True)
    stems = list(images)
    for stem, image in images.items():
        cv2.imwrite(str(folder / "images" / f"{stem}.png"), image)
    values = {i: psnr(images[s], gts[s]) for i, s in enumerate(stems)}
    results = {"psnr": MetricResult(float(np.mean(list(values.values()))), values)}
    write_per_image_csv(folder / "per_image.csv", stems, results)
    write_summary(folder / "summary.json", dataset=dataset,
                  method={"name": name, "label": label, "options": options,
                          "weights": {"asset": name, "path": None, "sha256": "0" * 64,
                                      "synthetic_seed": 1}},
                  results=results, metrics={"psnr": _PsnrInfo()},
                  counts={"images": len(stems), "restored": len(stems), "reused": 0,
                          "failed": []},
                  provenance={"device": "cpu", "dtype": "fp32", "batch_size": 2,
                              "world_size": 1, "command": "test fixture"})
    return folder


def make_runs(faces_dir: Path, tmp: Path) -> tuple[Path, dict]:
    """A run dir on a 4-face 'celeba-test' (LQ = blurred faces) with: lq, a CodeFormer
    fidelity_weight sweep (GT/LQ blends), a method with a hostile label, and TWM offsets."""
    data = tmp / "data" / "mini"
    (data / "lq").mkdir(parents=True)
    (data / "hq").mkdir()
    faces = sorted(p for p in faces_dir.glob("*.png"))[:4]
    stems = [p.stem for p in faces[:3]] + [NASTY_STEM]
    gts, lqs = {}, {}
    for stem, path in zip(stems, faces):
        gt = cv2.resize(cv2.imread(str(path)), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        # the hostile stem is blurred most, so it is every method's worst image and shown
        gts[stem], lqs[stem] = gt, cv2.GaussianBlur(gt, (0, 0), 4 if stem == NASTY_STEM else 2)
        cv2.imwrite(str(data / "hq" / f"{stem}.png"), gt)
        cv2.imwrite(str(data / "lq" / f"{stem}.png"), lqs[stem])
    dataset = {"name": "celeba-test", "root": str(data), "count": 4, "paired": True,
               "manifest_sha256": None, "file_list_sha256": "f" * 64}
    run = tmp / "run"
    folders = {"lq": _write_method(run, dataset, "lq", "Input", {}, lqs, gts)}
    for w in (0.0, 0.5, 1.0):   # w = 1 is the most faithful: closest to GT here
        blend = {s: np.clip(np.rint(w * 0.8 * gts[s] + (1 - w * 0.8) * lqs[s]), 0, 255)
                 .astype(np.uint8) for s in stems}
        folders[w] = _write_method(run, dataset, "codeformer", f"CodeFormer (w={w})",
                                   {"fidelity_weight": w}, blend, gts)
    folders["nasty"] = _write_method(run, dataset, "vqfr-v1", NASTY_LABEL,
                                     {"branch": "main", "note": "<b>x</b>"}, lqs, gts)
    rng = np.random.default_rng(0)
    (folders["nasty"] / "offsets").mkdir()
    offsets = {"Level_32": rng.normal(size=(72, 4, 4)).astype(np.float32),
               "Level_16": rng.normal(size=(72, 8, 8)).astype(np.float32)}
    np.savez(folders["nasty"] / "offsets" / f"{stems[0]}.npz", **offsets)
    return run, {"folders": folders, "gts": gts, "lqs": lqs, "stems": stems, "offsets": offsets}


def make_real_run(faces_dir: Path, tmp: Path) -> Path:
    """A real small run: `vqfr-eval run` on 3 faces (128 px; LQ = blur sigma 2) with the input
    itself and a folder of results made elsewhere (blur sigma 1), scored with PSNR and SSIM."""
    data, done = tmp / "mini", tmp / "elsewhere"
    for sub in ("lq", "hq"):
        (data / sub).mkdir(parents=True)
    done.mkdir()
    for path in sorted(faces_dir.glob("*.png"))[:3]:
        gt = cv2.resize(cv2.imread(str(path)), (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(data / "hq" / path.name), gt)
        cv2.imwrite(str(data / "lq" / path.name), cv2.GaussianBlur(gt, (0, 0), 2))
        cv2.imwrite(str(done / path.name), cv2.GaussianBlur(gt, (0, 0), 1))
    run = tmp / "real-run"
    assert main(["run", "--dataset", str(data), "--method", f"lq,folder:{done}",
                 "--metrics", "psnr,ssim", "--out", str(run), "--quiet"]) == 0
    return run
