"""`vqfr-eval ablate` (TWM, parallel decoder, fidelity variants) and `vqfr-eval --table SPEC`
on a tiny paired set (3 real faces at 32x32) with a synthetic VQFR v1 checkpoint."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from goldens import write_tiny_paired_set

from vqfr.cli import main
from vqfr.data.images import read_image
from vqfr.report.runs import find_method_runs
from vqfr.report.specs import load_spec
from vqfr.report.tables import spec_table
from vqfr.studies.ablation import TWM_LEVELS, study_methods, uses_twm
from vqfr.run.methods import parse_methods
from vqfr.studies.tables import load_table_spec, plan_table

pytestmark = pytest.mark.slow   # ~1 min on 2 cores: 12 VQFR v1 passes over 3 images + reports

SIZE = 32
FACES = 3
TWM_OFFSET_IMAGES = 1    # 9 variants: each offset map costs the report ~0.5 s
PD_OFFSET_IMAGES = 2     # one batch of two images
TWM_SLUGS = ["vqfr-v1", "vqfr-v1_twm_disabled32-16", "vqfr-v1_twm_disabled32-16-8-4-2-1",
             *(f"vqfr-v1_twm_disabled{level}" for level in TWM_LEVELS)]


@pytest.fixture(scope="module")
def paired_set(tmp_path_factory, faces_dir):
    """Named celeba-test so the ablation specs' rows (CelebA-Test columns) match its runs."""
    root = tmp_path_factory.mktemp("data") / "celeba-test"
    return write_tiny_paired_set(faces_dir, root, FACES, SIZE)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from vqfr.zoo import write_synthetic_checkpoint

    return write_synthetic_checkpoint("vqfr-v1", tmp_path_factory.mktemp("w") / "v1.pth", seed=1)


def common(paired_set, checkpoint, out):
    return ["--dataset", str(paired_set), "--out", str(out), "--metrics", "psnr,ssim",
            "--allow-size", "multiple-of-32", "--batch-size", "3", "--quiet",
            "--asset", f"vqfr-v1={checkpoint}"]


@pytest.fixture(scope="module")
def ablation_dir(paired_set, checkpoint, tmp_path_factory):
    """runs/: the twm study; pd_runs/: the parallel-decoder study (its own dir, so its report
    does not redraw the twm study's offset maps)."""
    tmp = tmp_path_factory.mktemp("ablate")
    assert main(["ablate", "--study", "twm", "--report", str(tmp / "twm"),
                 "--offsets-images", str(TWM_OFFSET_IMAGES),
                 *common(paired_set, checkpoint, tmp / "runs")]) == 0
    assert main(["ablate", "--study", "parallel-decoder", "--report", str(tmp / "pd"),
                 "--offsets-images", str(PD_OFFSET_IMAGES),
                 *common(paired_set, checkpoint, tmp / "pd_runs")]) == 0
    return tmp


@pytest.fixture(scope="module")
def plain_run(paired_set, checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("plain")
    assert main(["run", "--method", "vqfr-v1", *common(paired_set, checkpoint, out)]) == 0
    return out / "celeba-test"


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def per_image(folder: Path) -> list[dict]:
    with (folder / "per_image.csv").open() as handle:
        return list(csv.DictReader(handle))


def images(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem: read_image(p) for p in sorted((folder / "images").glob("*.png"))}


def test_twm_study_variants(ablation_dir, paired_set):
    runs = ablation_dir / "runs" / "celeba-test"
    baseline = images(runs / "vqfr-v1")
    assert len(baseline) == FACES
    for slug in TWM_SLUGS:
        data = summary(runs / slug)
        assert set(data["metrics"]) == {"psnr", "ssim"} and data["counts"]["images"] == FACES
        disabled = data["method"]["options"]["twm_disabled"]
        assert data["method"]["options"]["branch"] == "main"
        if slug == "vqfr-v1":
            assert disabled == []
            continue
        assert disabled and set(disabled) <= set(TWM_LEVELS)
        variant = images(runs / slug)
        assert variant.keys() == baseline.keys()
        assert any(not np.array_equal(variant[s], baseline[s]) for s in baseline), slug


def test_baseline_variant_equals_a_plain_run(ablation_dir, plain_run):
    ablated = ablation_dir / "runs" / "celeba-test" / "vqfr-v1"
    plain = plain_run / "vqfr-v1"
    assert summary(ablated)["metrics"] == summary(plain)["metrics"]
    assert per_image(ablated) == per_image(plain)
    a, b = images(ablated), images(plain)
    assert a.keys() == b.keys() and all(np.array_equal(a[s], b[s]) for s in a)


def test_offsets_files(ablation_dir, paired_set, checkpoint):
    from vqfr.run.restorer import to_model_input
    from vqfr.zoo import create_model

    runs = ablation_dir / "runs" / "celeba-test"
    pd_runs = ablation_dir / "pd_runs" / "celeba-test"
    stems = sorted(p.stem for p in (paired_set / "lq").glob("*.png"))[:PD_OFFSET_IMAGES]
    model = create_model("vqfr-v1", {"vqfr-v1": checkpoint})
    lq = np.stack([read_image(paired_set / "lq" / f"{s}.png") for s in stems])
    lq = torch.from_numpy(lq.transpose(0, 3, 1, 2).copy())
    with torch.inference_mode():
        _, expected = model.restore(to_model_input(lq), return_offsets=True)
    for run_dir, slug in [(pd_runs, "vqfr-v1"), *((runs, slug) for slug in TWM_SLUGS)]:
        folder = run_dir / slug / "offsets"
        count = PD_OFFSET_IMAGES if run_dir == pd_runs else TWM_OFFSET_IMAGES
        assert sorted(p.stem for p in folder.glob("*.npz")) == stems[:count], slug
        disabled = set(summary(run_dir / slug)["method"]["options"]["twm_disabled"])
        for i, stem in enumerate(stems[:count]):
            with np.load(folder / f"{stem}.npz") as data:
                assert sorted(data.files) == sorted(f"Level_{r}" for r in TWM_LEVELS)
                for level in TWM_LEVELS:
                    array = data[f"Level_{level}"].astype(np.float32)
                    assert array.shape == (72, SIZE // level, SIZE // level)
                    if level in disabled:
                        assert not array.any(), (slug, level)
                    elif slug == "vqfr-v1":     # the arch's own offsets, stored as float16
                        np.testing.assert_allclose(array, expected[level][i].numpy(),
                                                   rtol=1e-3, atol=1e-3)
                    else:
                        assert np.abs(array).max() > 0, (slug, level)
    # the texture branch has no TWM, so no offsets
    assert not (pd_runs / "vqfr-v1_branchtexture" / "offsets").exists()


def test_offsets_kept_on_rerun(ablation_dir, paired_set, checkpoint):
    folder = ablation_dir / "pd_runs" / "celeba-test" / "vqfr-v1" / "offsets"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    assert main(["ablate", "--study", "parallel-decoder", "--offsets-images",
                 str(PD_OFFSET_IMAGES), *common(paired_set, checkpoint,
                                             ablation_dir / "pd_runs")]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    for slug in ("vqfr-v1", "vqfr-v1_branchtexture"):   # nothing restored twice either
        counts = summary(folder.parents[1] / slug)["counts"]
        assert counts["reused"] == FACES and counts["restored"] == 0


def test_twm_report(ablation_dir):
    text = (ablation_dir / "twm" / "index.html").read_text(encoding="utf-8")
    assert "VQFR ablation: texture warping module" in text
    assert "Texture warping module: offset magnitude per level" in text
    runs = find_method_runs([ablation_dir / "runs"])
    table = spec_table(load_spec("vqfr_ablation_twm"), runs)
    matched = {row.label: [r.slug for r in row.runs] for row in table.rows}
    assert matched["VQFR (TWM at all levels)"] == ["vqfr-v1"]
    assert matched["TWM disabled at 32 and 16"] == ["vqfr-v1_twm_disabled32-16"]
    assert matched["TWM disabled at all levels"] == ["vqfr-v1_twm_disabled32-16-8-4-2-1"]
    for level in TWM_LEVELS:
        assert matched[f"TWM disabled at {level}"] == [f"vqfr-v1_twm_disabled{level}"]
    measured = summary(ablation_dir / "runs" / "celeba-test" / "vqfr-v1")["metrics"]["psnr"]
    assert f"{measured:.2f}" in text


def test_parallel_decoder_study(ablation_dir):
    runs = ablation_dir / "pd_runs" / "celeba-test"
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["vqfr-v1",
                                                                    "vqfr-v1_branchtexture"]
    assert {(c["metric"], c["a"], c["b"]) for c in json.loads(
        (runs / "comparisons.json").read_text())} == {
        (m, "vqfr-v1", "vqfr-v1_branchtexture") for m in ("psnr", "ssim")}
    texture = summary(runs / "vqfr-v1_branchtexture")
    assert texture["method"]["options"]["branch"] == "texture"
    assert set(texture["metrics"]) == {"psnr", "ssim"}
    main_branch = images(ablation_dir / "runs" / "celeba-test" / "vqfr-v1")
    assert all(np.array_equal(main_branch[s], img) for s, img in images(runs / "vqfr-v1").items())
    textured = images(runs / "vqfr-v1_branchtexture")
    assert any(not np.array_equal(main_branch[s], textured[s]) for s in main_branch)
    text = (ablation_dir / "pd" / "index.html").read_text(encoding="utf-8")
    assert "VQFR ablation: parallel decoder" in text
    assert f"{texture['metrics']['psnr']:.2f}" in text
    table = spec_table(load_spec("vqfr_ablation_parallel_decoder"),
                       find_method_runs([ablation_dir / "pd_runs"]))
    matched = {row.label: [r.slug for r in row.runs] for row in table.rows}
    assert matched == {"Texture branch only": ["vqfr-v1_branchtexture"],
                       "Parallel decoder (main branch)": ["vqfr-v1"]}


def test_table_runs_a_spec(plain_run, paired_set, checkpoint, tmp_path, capsys):
    spec = tmp_path / "tiny_table.toml"
    spec.write_text('''name = "tiny_table"
title = "Tiny table"
paper = "test"
kind = "comparison"
datasets = ["celeba-test"]
metrics = ["psnr", "ssim", "musiq"]
source = "test"
status = "unknown"
[metric_options.psnr]
correct_mean_var = true
[[rows]]
label = "Input"
model = "lq"
[[rows]]
label = "VQFR"
model = "vqfr-v1"
options = { branch = "main" }
[[rows]]
label = "Paper only"
''')
    out = plain_run.parent
    report = tmp_path / "report"
    args = common(paired_set, checkpoint, out)
    args.remove("--metrics"), args.remove("psnr,ssim")        # the spec's metrics
    assert main(["--table", str(spec), "--report", str(report), *args]) == 0
    err = capsys.readouterr().err
    assert "musiq" in err and "Paper only" in err
    assert set(summary(out / "celeba-test" / "lq")["metrics"]) == {"psnr", "ssim"}
    vqfr = summary(out / "celeba-test" / "vqfr-v1")
    assert vqfr["counts"]["reused"] == FACES           # the plain run's images
    assert vqfr["metric_info"]["psnr"]["options"]["correct_mean_var"] is True
    text = (report / "index.html").read_text(encoding="utf-8")
    assert "Tiny table" in text and f"{vqfr['metrics']['psnr']:.2f}" in text


def test_table_spec_names_and_plan():
    assert load_table_spec("vqfr-celeba-test").name == "vqfr_celeba_test"
    assert load_table_spec("vqfr_celeba_test").name == "vqfr_celeba_test"
    plan = plan_table("vqfr-celeba-test", metrics=["psnr", "ssim"])
    assert plan.methods == ["lq", "gfpgan-v1.3", "vqfr-v1"] and plan.datasets == ["celeba-test"]
    assert plan.metric_options["psnr"]["correct_mean_var"] is True
    assert main(["--table", "vqfr-celeba-test", "--method", "vqfr-v1", "--quiet"]) == 2


def test_fidelity_and_v2_variants():
    fidelity = parse_methods(study_methods("fidelity"))
    v2 = [m for m in fidelity if m.name == "vqfr-v2"]
    cf = [m for m in fidelity if m.name == "codeformer"]
    assert [m.options["fidelity_ratio"] for m in v2] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [m.options["fidelity_weight"] for m in cf] == [0.0, 0.25, 0.5, 0.75, 1.0]
    # the official defaults share the plain model's directory (and restore cache)
    assert {m.slug for m in fidelity} >= {"vqfr-v2", "codeformer"}
    assert [uses_twm(m) for m in v2] == [False, True, True, True, True]
    assert study_methods("fidelity", "codeformer") == [
        "codeformer:fidelity_weight=0.0", "codeformer:fidelity_weight=0.25", "codeformer",
        "codeformer:fidelity_weight=0.75", "codeformer:fidelity_weight=1.0"]
    twm_v2 = parse_methods(study_methods("twm", "vqfr-v2"))
    assert len(twm_v2) == 9 and all(m.options["fidelity_ratio"] == 1.0 for m in twm_v2)
    assert all(uses_twm(m) for m in twm_v2)
    pd = parse_methods(study_methods("parallel-decoder", "vqfr-v2", 0.5))
    assert [m.options["fidelity_ratio"] for m in pd] == [0.5, 0.0]
    assert [m.options["branch"] for m in pd] == ["main", "texture"]
    with pytest.raises(Exception, match="fidelity_ratio 0"):
        study_methods("twm", "vqfr-v2", 0.0)
    with pytest.raises(Exception, match="no fidelity knob"):
        study_methods("fidelity", "vqfr-v1")
