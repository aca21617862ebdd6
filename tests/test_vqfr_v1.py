"""VQFR v1 against the reference manifest and the synthetic-weight goldens (shared/reference/vqfr_v1).

Tolerances (reference README, "VQFR v1 / v2"): images PSNR >= 90 dB and max|d| <= 5e-4 on the raw
outputs, codes exactly equal, intermediates max|d| <= 1e-4. ``compare_to_golden`` is also used by
test_vqfr_v2.py.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vqfr.archs.blocks import ConditionedDeformConv
from vqfr.archs.vqfr_v1 import VQFRv1

IMAGE_MIN_PSNR_DB = 90.0
IMAGE_MAX_ABS = 5e-4
INTERMEDIATE_MAX_ABS = 1e-4
GOLDEN_FACE = "vqfr_00000052_lq.png"


@dataclass(frozen=True)
class GoldenComparison:
    psnr_db: float
    max_abs: float
    ok: bool

    def __str__(self) -> str:
        return f"PSNR {self.psnr_db:.1f} dB, max|d| {self.max_abs:.2e}"


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """The reference README's PSNR of raw [-1, 1] outputs: 10 log10(1 / mean(((a - b) / 2)^2))."""
    mse = ((a.double() - b.double()) / 2).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def compare_to_golden(actual: torch.Tensor, expected: torch.Tensor, max_abs: float = IMAGE_MAX_ABS,
                      min_psnr_db: float | None = IMAGE_MIN_PSNR_DB) -> GoldenComparison:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = (actual.double() - expected.double()).abs().max().item()
    psnr = psnr_db(actual, expected)
    ok = diff <= max_abs and (min_psnr_db is None or psnr >= min_psnr_db)
    return GoldenComparison(psnr, diff, ok)


def assert_matches_golden(actual, expected, name, **tolerance) -> None:
    result = compare_to_golden(actual, expected, **tolerance)
    assert result.ok, f"{name}: {result} is outside the tolerance"


def prepare_face(path, size: int | None = None) -> torch.Tensor:
    """The official input preparation: cv2.imread BGR uint8 -> [INTER_AREA resize] -> RGB -> /255 ->
    (x - 0.5) / 0.5 -> 1 x 3 x H x W."""
    bgr = cv2.imread(str(path))
    if size is not None:
        bgr = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
    rgb = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255
    return ((rgb - 0.5) / 0.5).unsqueeze(0)


@pytest.fixture(scope="module")
def manifest(reference_dir):
    return json.loads((reference_dir / "vqfr_v1" / "manifest.json").read_text())


@pytest.fixture(scope="module")
def model(manifest, synth_weights):
    checkpoint = {manifest["checkpoint_key"]: synth_weights.synth_state_dict(manifest, 1)}
    net = VQFRv1()
    net.load_state_dict(checkpoint["params"], strict=True)
    return net.eval()


@pytest.fixture(scope="module")
def small_golden(reference_dir):
    return torch.load(reference_dir / "vqfr_v1" / "golden_seed1_small.pt", weights_only=False)


@pytest.fixture(scope="module")
def small_forward(model, small_golden):
    with torch.inference_mode():
        return model(small_golden["input"], return_offsets=True)


def test_state_dict_layout_matches_manifest(model, manifest):
    expected = [(t["key"], tuple(t["shape"])) for t in manifest["tensors"]]
    assert [(k, tuple(v.shape)) for k, v in model.state_dict().items()] == expected
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
    layout = [(k, tuple(v.shape)) for k, v in VQFRv1(**config).state_dict().items()]
    assert layout == [(t["key"], tuple(t["shape"])) for t in manifest["tensors"]]


@pytest.mark.parametrize("size", [128, None])
def test_input_preparation_matches_golden(faces_dir, reference_dir, size):
    name = "golden_seed1_small.pt" if size else "golden_seed1.pt"
    golden = torch.load(reference_dir / "vqfr_v1" / name, weights_only=False)
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
    return torch.load(reference_dir / "vqfr_v1" / "golden_seed1.pt", weights_only=False)


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
