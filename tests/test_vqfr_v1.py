"""VQFR v1 against the reference manifest and the synthetic-weight goldens (shared/reference/vqfr_v1).

Tolerances (reference README, "VQFR v1 / v2"): images PSNR >= 90 dB and max|d| <= 5e-4 on the raw
outputs, codes exactly equal, intermediates max|d| <= 1e-4 (constants and comparison in goldens.py).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from goldens import (
    GOLDEN_FACE,
    INTERMEDIATE_MAX_ABS,
    assert_matches_golden,
    compare_to_golden,
    manifest_layout,
    prepare_face,
    read_golden,
    read_manifest,
    state_dict_layout,
    synthetic_model,
)

from vqfr.archs.blocks import ConditionedDeformConv
from vqfr.archs.vqfr_v1 import VQFRv1


@pytest.fixture(scope="module")
def manifest(reference_dir):
    return read_manifest(reference_dir, "vqfr_v1")


@pytest.fixture(scope="module")
def model(manifest, synth_weights):
    return synthetic_model(VQFRv1, manifest, synth_weights, seed=1)


@pytest.fixture(scope="module")
def small_golden(reference_dir):
    return read_golden(reference_dir, "vqfr_v1", "golden_seed1_small.pt")


@pytest.fixture(scope="module")
def small_forward(model, small_golden):
    with torch.inference_mode():
        return model(small_golden["input"], return_offsets=True)


def test_state_dict_layout_matches_manifest(model, manifest):
    assert state_dict_layout(model) == manifest_layout(manifest)
    buffers = dict(model.named_buffers())
    for name in manifest["non_persistent_buffers_not_in_state_dict"]:
        assert name in buffers and name not in model.state_dict()


def test_parameter_counts(model, manifest):
    params = dict(model.named_parameters())
    assert sum(p.numel() for p in params.values()) == manifest["num_params"] == 76_563_583
    # fix_keys=['embedding'] freezes the codebook: 76.3M trainable, as the paper reports.
    assert sum(p.numel() for p in params.values() if p.requires_grad) == 76_301_439
    assert [k for k, p in params.items() if not p.requires_grad] == ["quantizer.quantize_dict.Level_32.embedding.weight"]
    for name, count in manifest["num_params_by_module"].items():
        assert sum(p.numel() for p in getattr(model, name).parameters()) == count, name


def test_official_config_builds_the_default_model(manifest):
    config = {k: v for k, v in manifest["config"].items() if k != "type"}
    assert state_dict_layout(VQFRv1(**config)) == manifest_layout(manifest)


@pytest.mark.parametrize("size", [128, None])
def test_input_preparation_matches_golden(faces_dir, reference_dir, size):
    name = "golden_seed1_small.pt" if size else "golden_seed1.pt"
    golden = read_golden(reference_dir, "vqfr_v1", name)
    assert golden["face"] == GOLDEN_FACE
    assert torch.equal(prepare_face(faces_dir / GOLDEN_FACE, size), golden["input"])


@pytest.mark.parametrize("key", ["main_dec", "dec"])
def test_small_golden_images(small_forward, small_golden, key):
    assert_matches_golden(small_forward[key], small_golden["outputs"][key], key)


def test_small_golden_codes_and_intermediates(small_forward, small_golden):
    assert torch.equal(small_forward["codes"], small_golden["codes"]["indices"])
    for key in ("enc_Level_32", "z_conv"):
        assert_matches_golden(small_forward[key], small_golden["intermediates"][key], key,
                              max_abs=INTERMEDIATE_MAX_ABS, min_psnr_db=None)


def test_offsets_per_level(small_forward):
    offsets = small_forward["offsets"]
    assert sorted(offsets) == [1, 2, 4, 8, 16, 32]
    for level, offset in offsets.items():
        assert offset.shape == (1, 2 * 4 * 9, 128 // level, 128 // level)
    assert all(offset.abs().max() > 0 for offset in offsets.values())


def test_restore_options_and_ablation(model, small_golden, small_forward):
    x = small_golden["input"]
    with torch.inference_mode():
        assert torch.equal(model.restore(x, branch="texture"), small_forward["dec"])
        assert torch.equal(model.restore(x, twm_disabled=()), small_forward["main_dec"])
        disabled, offsets = model.restore(x, twm_disabled=(1,), return_offsets=True)
    assert all(torch.equal(offsets[level], small_forward["offsets"][level]) for level in (32, 16, 8, 4, 2))
    assert not offsets[1].any()
    assert (disabled - small_forward["main_dec"]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="TWM level"):
        model.restore(x, twm_disabled=(64,))
    with pytest.raises(ValueError, match="branch"):
        model.restore(x, branch="fidelity")


def test_zero_offset_dcn_is_a_modulated_plain_conv():
    """The ablation semantics: zero offsets keep the mask; with mask 1 that is the plain conv."""
    torch.manual_seed(0)
    dcn = ConditionedDeformConv(32, deformable_groups=4)
    with torch.no_grad():
        dcn.conv_offset.weight.normal_()
        dcn.conv_offset.bias[2 * 4 * 9:] = 30.0  # mask logits -> sigmoid == 1
        dcn.conv_offset.weight[2 * 4 * 9:] = 0
        x, cond = torch.randn(2, 32, 12, 10), torch.randn(2, 32, 12, 10)
        warped, offset = dcn(x, cond)
        plain, zero = dcn(x, cond, zero_offset=True)
    assert offset.abs().max() > 0.1 and not zero.any()
    torch.testing.assert_close(plain, F.conv2d(x, dcn.weight, dcn.bias, padding=1), atol=1e-4, rtol=1e-4)
    assert (warped - plain).abs().max() > 1e-2


def test_golden_comparison_can_fail(model, small_golden):
    """Negative control: weight x (1 + 1e-3) on the last main-decoder conv must be reported."""
    weight = model.main_decoder.conv_out[0].weight
    original = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.mul_(1 + 1e-3)
        with torch.inference_mode():
            perturbed = model.restore(small_golden["input"])
    finally:
        with torch.no_grad():
            weight.copy_(original)
    assert not compare_to_golden(perturbed, small_golden["outputs"]["main_dec"]).ok


def test_input_sizes(model):
    with torch.inference_mode():
        assert model.restore(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
        assert model.restore(torch.zeros(2, 3, 64, 96), branch="texture").shape == (2, 3, 64, 96)
        for shape in [(1, 3, 100, 128), (1, 3, 128, 48), (1, 1, 64, 64), (3, 64, 64)]:
            with pytest.raises(ValueError, match="VQFRv1"):
                model.restore(torch.zeros(shape))


def test_reduced_precision_on_cpu(model):
    x = torch.zeros(1, 3, 64, 64)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.restore(x)
    assert out.shape == x.shape and torch.isfinite(out).all()


@pytest.fixture(scope="module")
def full_golden(reference_dir):
    return read_golden(reference_dir, "vqfr_v1")


@pytest.fixture(scope="module")
def full_forward(model, full_golden):
    with torch.inference_mode():
        return model(full_golden["input"])


@pytest.mark.slow
@pytest.mark.parametrize("key", ["main_dec", "dec"])
def test_full_golden_images(full_forward, full_golden, key):
    assert_matches_golden(full_forward[key], full_golden["outputs"][key], key)


@pytest.mark.slow
def test_full_golden_codes_and_intermediates(full_forward, full_golden):
    assert torch.equal(full_forward["codes"], full_golden["codes"]["indices"])
    for key in ("enc_Level_32", "z_conv"):
        assert_matches_golden(full_forward[key], full_golden["intermediates"][key], key,
                              max_abs=INTERMEDIATE_MAX_ABS, min_psnr_db=None)
