"""VQFR v2 against the reference manifest and the synthetic-weight golden (shared/reference/vqfr_v2).

v2 only takes H = 512, so the cheap tests use 512 x 32/64 strips; the three 512x512 golden ratios
come from one forward.
"""
from __future__ import annotations

import pytest
import torch
from goldens import (
    GOLDEN_FACE,
    INTERMEDIATE_MAX_ABS,
    assert_matches_golden,
    manifest_layout,
    prepare_face,
    read_golden,
    read_manifest,
    state_dict_layout,
    synthetic_model,
)

from vqfr.archs.vqfr_v2 import VQFRv2

RATIOS = (0.0, 0.5, 1.0)


@pytest.fixture(scope="module")
def manifest(reference_dir):
    return read_manifest(reference_dir, "vqfr_v2")


@pytest.fixture(scope="module")
def model(manifest, synth_weights):
    return synthetic_model(VQFRv2, manifest, synth_weights, seed=1)


@pytest.fixture(scope="module")
def golden(reference_dir):
    return read_golden(reference_dir, "vqfr_v2")


@pytest.fixture(scope="module")
def strip(golden):
    """A 512 x 32 strip of the golden input: the cheapest input v2 accepts, with real content."""
    return golden["input"][..., 240:272].contiguous()


@pytest.fixture(scope="module")
def strip_forward(model, strip):
    with torch.inference_mode():
        return model(strip, fidelity_ratios=RATIOS, return_offsets=True)


def test_state_dict_layout_matches_manifest(model, manifest):
    assert state_dict_layout(model) == manifest_layout(manifest)
    buffers = dict(model.named_buffers())
    for name in manifest["non_persistent_buffers_not_in_state_dict"]:
        assert name in buffers and name not in model.state_dict()


def test_parameter_counts(model, manifest):
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"] == 83_486_539
    assert all(p.requires_grad for p in model.parameters())  # the official v2 freezes nothing
    for name, count in manifest["num_params_by_module"].items():
        assert sum(p.numel() for p in getattr(model, name).parameters()) == count, name


def test_official_config_builds_the_default_model(manifest):
    config = {k: v for k, v in manifest["config"].items() if k != "type"}
    assert state_dict_layout(VQFRv2(**config)) == manifest_layout(manifest)


def test_input_preparation_matches_golden(faces_dir, golden):
    assert golden["face"] == GOLDEN_FACE
    assert torch.equal(prepare_face(faces_dir / GOLDEN_FACE), golden["input"])


def test_fidelity_ratio_semantics(model, strip, strip_forward):
    main = strip_forward["main_dec"]
    assert torch.equal(main[0.0], strip_forward["texture_dec"])
    assert (main[1.0] - main[0.0]).abs().max() > 1e-3
    with torch.inference_mode():
        assert torch.equal(model.restore(strip, fidelity_ratio=0.5), main[0.5])
        assert torch.equal(model.restore(strip), main[0.0])  # default: the yml / demo ratio 0
        assert torch.equal(model.restore(strip, fidelity_ratio=1.0, branch="texture"), main[0.0])
        sweep = model.restore_fidelity_sweep(strip, RATIOS)
    assert list(sweep) == list(RATIOS)
    assert all(torch.equal(sweep[r], main[r]) for r in RATIOS)


def test_offsets_and_ablation(model, strip, strip_forward):
    offsets = strip_forward["offsets"]
    assert sorted(offsets) == [1, 2, 4, 8, 16, 32]
    for level, offset in offsets.items():
        assert offset.shape == (1, 2 * 4 * 9, 512 // level, 32 // level)
    with torch.inference_mode():
        same = model.restore_fidelity_sweep(strip, (0.0, 1.0), twm_disabled=())
        disabled = model.restore_fidelity_sweep(strip, (0.0, 1.0), twm_disabled=(32, 16))
        _, disabled_offsets = model.restore(strip, fidelity_ratio=1.0, twm_disabled=(32,), return_offsets=True)
    assert torch.equal(same[1.0], strip_forward["main_dec"][1.0])
    assert torch.equal(disabled[0.0], strip_forward["texture_dec"])  # r = 0 never uses the TWMs
    assert (disabled[1.0] - same[1.0]).abs().max() > 1e-3
    assert not disabled_offsets[32].any() and disabled_offsets[16].abs().max() > 0
    with pytest.raises(ValueError, match="TWM level"):
        model.restore(strip, twm_disabled=(3,))


def test_input_sizes(model):
    with torch.inference_mode():
        assert model.restore(torch.zeros(2, 3, 512, 32), branch="texture").shape == (2, 3, 512, 32)
        for shape in [(1, 3, 256, 256), (1, 3, 544, 544), (1, 3, 512, 48), (1, 4, 512, 32)]:
            with pytest.raises(ValueError, match="VQFRv2"):
                model.restore(torch.zeros(shape))


def test_reduced_precision_on_cpu(model):
    x = torch.zeros(1, 3, 512, 32)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.restore(x, fidelity_ratio=1.0)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.fixture(scope="module")
def full_forward(model, golden):
    with torch.inference_mode():
        return model(golden["input"], fidelity_ratios=RATIOS)


@pytest.mark.slow
@pytest.mark.parametrize("ratio", RATIOS)
def test_full_golden_main_images(full_forward, golden, ratio):
    assert_matches_golden(full_forward["main_dec"][ratio], golden["outputs"][f"main_dec_fr{ratio}"], f"r={ratio}")


@pytest.mark.slow
def test_full_golden_texture_codes_and_intermediates(full_forward, golden):
    assert_matches_golden(full_forward["texture_dec"], golden["outputs"]["texture_dec"], "texture_dec")
    assert torch.equal(full_forward["codes"], golden["codes"]["indices"])
    for key in ("enc_feat", "quant_logit"):
        assert_matches_golden(full_forward[key], golden["intermediates"][key], key,
                              max_abs=INTERMEDIATE_MAX_ABS, min_psnr_db=None)


@pytest.mark.parametrize("twm_disabled", [(), (32, 1)])
def test_fidelity_sweep_equals_single_ratio_restores(model, strip, twm_disabled):
    """The benchmark restores a ratio sweep's members from one forward
    (``vqfr.run.restorer.SweepRestorer``); each output must be exactly what restore() gives for
    that ratio alone, so either way fills the same restore cache."""
    with torch.inference_mode():
        sweep = model.restore_fidelity_sweep(strip, RATIOS, twm_disabled=twm_disabled)
        for ratio in RATIOS:
            single = model.restore(strip, fidelity_ratio=ratio, twm_disabled=twm_disabled)
            assert torch.equal(sweep[float(ratio)], single), ratio
