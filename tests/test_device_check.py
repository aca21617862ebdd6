"""benchmarks/device_check.py, the prepared GPU check: its CPU dry run end to end (every section,
tiny sizes), so the one command a GPU session runs cannot rot; the reduced reference folder it
carries; and that its equivalence checks fail on a wrong output."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "device_check.py"
SECTIONS = ["environment", "limits", "models", "metrics", "speed", "kernels", "protocol",
            "extras", "targets"]


def run_check(*args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def prepared(reference_dir, tmp_path_factory) -> Path:
    """What device_prep.sh copies for a GPU machine (goldens reduced), here from ../shared."""
    folder = tmp_path_factory.mktemp("devref")
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import device_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    assert device_check.prepare(reference_dir, folder) == 0
    return folder


@pytest.mark.slow
def test_quick_dry_run_covers_every_section(prepared, tmp_path):
    out = tmp_path / "device_check.json"
    proc = run_check("--quick", "--reference", str(prepared / "reference"), "--json", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "failures: none" in proc.stdout
    record = json.loads(out.read_text())
    assert record["schema"] == "vqfr-eval/device-check/1" and record["failures"] == []
    sections = record["sections"]
    assert list(sections) == SECTIONS
    for name, entry in sections.items():
        assert entry["status"] == "ok" and entry["skipped"] == [], (name, entry)
    # the CPU against the CPU goldens: VQFR v1 is bit-identical there (README)
    v1 = sections["models"]["result"]["vqfr-v1 128"]
    assert all(row["ok"] for row in v1["exact_vs_golden"].values())
    assert v1["exact_vs_golden"]["main_dec"]["max_abs"] == 0
    metrics = sections["metrics"]["result"]
    assert len(metrics["checks"]) == 10 and all(row["ok"] for row in metrics["checks"].values())
    assert metrics["lmd"]["landmarks_equal_golden"] and metrics["lmd"]["images"] == 2
    assert metrics["lmd"]["lmd_max_abs_vs_golden"] <= 1e-9
    assert metrics["lmd"]["speed"]["pairs"] == 2 and metrics["lmd"]["speed"]["speedup"] > 0
    for kind in ("fp32 exact", "bf16"):
        assert sections["limits"]["result"][kind]["matmul_flops_per_s"] > 0
    rows = sections["speed"]["result"]["vqfr-v1"]["settings"]
    assert [(r["dtype"], r["batch_size"]) for r in rows] == [("fp32", 1), ("bf16", 2)]
    assert all(r["images_per_s"] > 0 and r["achieved_flops_per_s"] > 0 for r in rows)
    assert rows[1]["psnr_vs_fp32"] > 30          # bf16 autocast, DCN and codes in fp32
    assert sections["kernels"]["result"]["fp32"]["top"]
    protocol = sections["protocol"]["result"]
    assert protocol["images"] == 3 and set(protocol["ratios"]) == {
        "first pass (restore + all metrics)", "metric stage only", "rerun (everything cached)"}
    assert protocol["ratios"]["rerun (everything cached)"] > 1
    assert set(protocol["values"]) == {"lpips", "fid", "deg", "psnr", "ssim"}
    targets = sections["targets"]["result"]
    assert targets["applicable"] is False
    assert all(targets[label]["value"] is not None for label in (
        "vqfr-v1 bf16 images/s", "vqfr-v1 exact fp32 images/s",
        "metric stage vs the official scripts (x)", "CelebA-Test protocol, 3000 images (s)"))


def test_prepared_reference_keeps_what_is_compared(prepared, reference_dir):
    sizes = sum(p.stat().st_size for p in prepared.rglob("*") if p.is_file())
    assert sizes < 58 * 2 ** 20          # with the repository, under the 64 MiB that travels
    assert len(list((prepared / "faces").glob("*.png"))) == 24
    reduced = torch.load(prepared / "reference/codeformer/golden_seed1.pt", weights_only=False)
    original = torch.load(reference_dir / "codeformer/golden_seed1.pt", weights_only=False)
    assert sorted(reduced["outputs"]) == ["logits", "lq_feat", "out_w0.0", "out_w0.5",
                                          "out_w1.0"]
    assert torch.equal(reduced["outputs"]["logits"], original["outputs"]["logits"])
    assert torch.equal(reduced["codes"], original["codes"])


def reference_with_one_golden_changed(prepared: Path, tmp_path: Path, folder: str,
                                      golden_name: str, change) -> Path:
    """A copy (by links) of the prepared reference folder and faces where ``folder``'s golden
    ``golden_name`` is ``change(golden)``; returns its reference folder."""
    wrong = tmp_path / "devref"
    (wrong / "reference" / folder).mkdir(parents=True)
    (wrong / "faces").symlink_to(prepared / "faces")
    for item in (prepared / "reference").iterdir():
        if item.name != folder:
            (wrong / "reference" / item.name).symlink_to(item)
    for item in (prepared / "reference" / folder).iterdir():
        if item.name != golden_name:
            (wrong / "reference" / folder / item.name).symlink_to(item)
    golden = torch.load(prepared / "reference" / folder / golden_name, weights_only=False)
    change(golden)
    torch.save(golden, wrong / "reference" / folder / golden_name)
    return wrong / "reference"


def _move_v1_image(golden):
    golden["outputs"]["main_dec"] = golden["outputs"]["main_dec"] + 1e-3


def _move_one_landmark(golden):
    golden["outputs"]["deg_landmarks"][0, 5, 0] += 0.25


# Negative controls: the small VQFR v1 golden's image moved by 1e-3; one golden landmark moved by
# a quarter pixel (the landmarks are compared exactly: a TF32 flip moves one by a quarter cell or
# more). Each must be reported as the one failure, and the summary must say so.
@pytest.mark.parametrize("folder,golden_name,change,section,failure,printed", [
    ("vqfr_v1", "golden_seed1_small.pt", _move_v1_image, "models",
     "vqfr-v1 128 main_dec exact vs golden", "main_dec: PSNR"),
    ("awing_fan", "golden_seed1.pt", _move_one_landmark, "metrics",
     "metric lmd landmarks vs golden (exact)", "landmarks DIFFER from the golden"),
], ids=["vqfr-v1-output", "lmd-landmark"])
def test_a_wrong_golden_value_fails_the_check(prepared, tmp_path, folder, golden_name, change,
                                              section, failure, printed):
    reference = reference_with_one_golden_changed(prepared, tmp_path, folder, golden_name,
                                                  change)
    out = tmp_path / "check.json"
    proc = run_check("--quick", "--sections", section, "--reference", str(reference),
                     "--json", str(out))
    assert proc.returncode == 1
    assert json.loads(out.read_text())["failures"] == [failure]
    assert printed in proc.stdout
