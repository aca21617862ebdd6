"""eval/*.toml: every spec parses, names known metrics, models and datasets, and every published
number carries a source and a status (unknown cells stay empty)."""
from __future__ import annotations

import importlib
import json
import math

import pytest

from vqfr.data.datasets import registered_names
from vqfr.metrics.registry import METRICS
from vqfr.report.specs import (EFFICIENCY_QUANTITIES, INPUT_METHODS, LOWER_IS_BETTER, STATUSES,
                               SpecError, available_specs, load_spec)
from vqfr.zoo.registry import MODELS

SPECS = available_specs()


def test_there_is_a_spec_per_paper_table():
    assert {"vqfr_celeba_test", "vqfr_real_world", "vqfr_efficiency", "vqfr_ablation_twm",
            "vqfr_ablation_parallel_decoder", "codeformer_celeba_test", "codeformer_real_world",
            "gfpgan_celeba_test"} <= set(SPECS)


@pytest.mark.parametrize("name", SPECS)
def test_spec_is_valid(name):
    spec = load_spec(name)
    assert spec.name == name
    datasets = set(registered_names())
    assert set(spec.datasets) <= datasets, set(spec.datasets) - datasets
    if spec.kind == "efficiency":
        assert set(spec.metrics) <= set(EFFICIENCY_QUANTITIES)
    for row in spec.rows:
        assert row.model is None or row.model in MODELS or row.model in INPUT_METHODS, row.model
        assert set(row.values) == set(spec.columns)
        for cell in row.values.values():
            assert cell.status in STATUSES and cell.source
            assert (cell.value is None) == (cell.status == "unknown")
            assert cell.value is None or math.isfinite(cell.value)


@pytest.mark.parametrize("name", ["vqfr_celeba_test", "gfpgan_celeba_test",
                                  "codeformer_celeba_test"])
def test_every_celeba_test_column_is_measured(name):
    """No column of the CelebA-Test tables is paper-only: LMD included, the suite computes
    every metric they list."""
    spec = load_spec(name)
    assert "lmd" in spec.metrics and set(spec.metrics) <= set(METRICS)


@pytest.mark.parametrize("metric", sorted(set(LOWER_IS_BETTER) & set(METRICS)))
def test_directions_agree_with_the_metric_classes(metric):
    module, cls = METRICS[metric].split(":")
    try:
        metric_cls = getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        pytest.skip(f"{module} is not written yet ({exc})")
    assert metric_cls.lower_is_better == LOWER_IS_BETTER[metric]


def test_efficiency_figures_agree_with_the_official_model(reference_dir):
    """The paper's 76.3M is VQFR v1 without its frozen codebook, and its 1.07 'TFlops' is the
    FlopCounterMode count of the official forward in multiply-accumulates, DCNs left out."""
    spec = load_spec("vqfr_efficiency")
    cells = {m: spec.rows[0].values[("", m)] for m in spec.metrics}
    ref = json.loads((reference_dir / "vqfr_v1" / "manifest.json").read_text())
    codebook = next(t["shape"] for t in ref["tensors"] if t["key"].endswith("embedding.weight"))
    trainable = ref["num_params"] - math.prod(codebook)
    assert round(trainable / 1e6, 1) == cells["params_m"].value
    macs = ref["measured"]["flops_flopcountermode"] / 2
    assert round(macs / 1e12, 2) == cells["tflops"].value


@pytest.mark.parametrize("body, message", [
    ('[[rows]]\nlabel = "x"\n[rows.values]\npsnr = { value = 1.0, status = "unknown", source = "p" }',
     "no value"),
    ('[[rows]]\nlabel = "x"\n[rows.values]\npsnr = { value = 1.0, status = "confirmed", source = "" }',
     "needs a source"),
    ('[[rows]]\nlabel = "x"\n[rows.values]\npsnr = { status = "confirmed", source = "p" }',
     "numeric value"),
    ('[[rows]]\nlabel = "x"\n[rows.values]\npnsr = 1.0', "unknown columns"),
    ('[[rows]]\nlabel = "x"\n[rows.values]\npsnr = { value = 1.0, status = "guessed", source = "p" }',
     "status must be"),
])
def test_malformed_specs_are_rejected(tmp_path, body, message):
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\ntitle = "t"\npaper = "p"\nkind = "comparison"\n'
                    'datasets = ["celeba-test"]\nmetrics = ["psnr"]\n' + body + "\n")
    with pytest.raises(SpecError, match=message):
        load_spec(path)


def test_unknown_metric_is_rejected(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\ntitle = "t"\npaper = "p"\nkind = "comparison"\n'
                    'datasets = ["celeba-test"]\nmetrics = ["psnrr"]\nrows = []\n')
    with pytest.raises(SpecError, match="unknown metric"):
        load_spec(path)
