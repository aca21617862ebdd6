"""CodeFormer against the reference manifest and synthetic-weight goldens
(../shared/reference/codeformer, README section "CodeFormer")."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from goldens import (
    manifest_layout,
    max_abs_diff,
    read_golden,
    read_manifest,
    state_dict_layout,
    synthetic_model,
)
from torch import nn

from vqfr.archs.codeformer import CodeFormer, CodeFormerPass, official_gray_output, official_is_gray

WEIGHTS = (0.0, 0.5, 1.0)
OUTPUT_TOLERANCE = 1e-3   # out_w*, lq_feat (README)
LOGIT_TOLERANCE = 1e-4    # logits (README)


@pytest.fixture(scope="module")
def manifest(reference_dir):
    return read_manifest(reference_dir, "codeformer")


@pytest.fixture(scope="module")
def golden(reference_dir):
    return read_golden(reference_dir, "codeformer")


@pytest.fixture(scope="module")
def model(manifest, golden, synth_weights):
    return synthetic_model(CodeFormer, manifest, synth_weights, seed=golden["seed"])


@pytest.fixture(scope="module")
def sweep(model, golden) -> CodeFormerPass:
    """The three golden weights from one encoder + transformer pass (one full-size forward)."""
    with torch.inference_mode():
        return model.forward_sweep(golden["inputs"]["x"], WEIGHTS)


def test_state_dict_layout_matches_manifest(manifest, model):
    ours, ref = state_dict_layout(model), manifest_layout(manifest)
    assert len(ours) == manifest["num_tensors"] == 515
    assert ours == ref


def test_parameter_counts(manifest, model):
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"] == 94_112_707
    assert not list(model.buffers())
    for name, count in manifest["num_params_by_module"].items():
        module = getattr(model, name)
        params = [module] if isinstance(module, nn.Parameter) else list(module.parameters())
        assert sum(p.numel() for p in params) == count, name


def test_norm_epsilons(model):
    """The goldens cannot see the transformer LayerNorm eps (1e-6 moves logits by 1.8e-5 only)."""
    layer_norms = [m for m in model.modules() if isinstance(m, nn.LayerNorm)]
    assert len(layer_norms) == 2 * 9 + 1  # norm1/norm2 per layer + the logit head
    assert all(m.eps == 1e-5 for m in layer_norms)
    group_norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert group_norms and all(m.eps == 1e-6 and m.num_groups == 32 for m in group_norms)
    # the eps is used: tokens with a tiny spread are normalised as (x - mean) / sqrt(var + 1e-5)
    norm = model.ft_layers[0].norm1
    tokens = 1e-3 * torch.randn(4, 1, 512, generator=torch.Generator().manual_seed(0))
    variance = tokens.var(-1, unbiased=False, keepdim=True)
    expected = (tokens - tokens.mean(-1, keepdim=True)) / torch.sqrt(variance + 1e-5)
    assert max_abs_diff(norm(tokens), expected * norm.weight + norm.bias) < 1e-5


def test_rejects_other_sizes(model):
    for shape in [(1, 3, 256, 256), (1, 1, 512, 512), (3, 512, 512)]:
        with pytest.raises(ValueError, match="512 x 512"):
            model.restore(torch.zeros(shape))


@pytest.mark.slow
def test_encoder_output_matches_golden(sweep, golden):
    assert max_abs_diff(sweep.lq_feat, golden["outputs"]["lq_feat"]) <= OUTPUT_TOLERANCE


@pytest.mark.slow
def test_logits_and_codes_match_golden(sweep, golden):
    assert max_abs_diff(sweep.logits, golden["outputs"]["logits"]) <= LOGIT_TOLERANCE
    assert torch.equal(sweep.codes, golden["codes"])


@pytest.mark.slow
def test_adain_codebook_features_match_golden(sweep, golden):
    assert max_abs_diff(sweep.quant_feat, golden["outputs"]["quant_feat_adain"]) <= OUTPUT_TOLERANCE


@pytest.mark.slow
@pytest.mark.parametrize("w", WEIGHTS)
def test_fidelity_outputs_match_golden(sweep, golden, w):
    assert max_abs_diff(sweep.outputs[w], golden["outputs"][f"out_w{w}"]) <= OUTPUT_TOLERANCE


@pytest.mark.slow
def test_negative_control_comparison_detects_wrong_weight(sweep, golden):
    assert max_abs_diff(sweep.outputs[0.0], golden["outputs"]["out_w0.5"]) > 0.1
    assert max_abs_diff(sweep.outputs[0.5], golden["outputs"]["out_w1.0"]) > 0.1


def test_token_path_batched_equals_single(model, golden):
    """Transformer, code selection, lookup and AdaIN at batch 2 (golden latent plus a flipped copy)."""
    lq = golden["outputs"]["lq_feat"]
    batch = torch.cat([lq.flip(-1), lq])
    with torch.inference_mode():
        logits = model.predict_logits(batch)
        codes = model.select_codes(logits)
        feats = model.code_features(codes, batch)
        single_logits = model.predict_logits(batch[:1])
        single_feats = model.code_features(model.select_codes(single_logits), batch[:1])
    assert max_abs_diff(logits[1:], golden["outputs"]["logits"]) <= LOGIT_TOLERANCE
    assert torch.equal(codes[1:], golden["codes"])
    assert max_abs_diff(feats[1:], golden["outputs"]["quant_feat_adain"]) <= OUTPUT_TOLERANCE
    assert max_abs_diff(logits[:1], single_logits) <= 1e-5
    assert max_abs_diff(feats[:1], single_feats) <= 1e-5


def test_encoder_batched_equals_single(model):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # small: 1x1 latent
    with torch.inference_mode():
        batched, skips = model.encode(x)
        single, single_skips = model.encode(x[1:])
    assert max_abs_diff(batched[1:], single) <= 1e-4  # float noise; features reach ~30
    assert skips.keys() == single_skips.keys()
    for size in skips:
        assert max_abs_diff(skips[size][1:], single_skips[size]) <= 1e-4


# -- grey inputs: facelib is_gray + bgr2gray, as inference_codeformer.py --has_aligned does ---

def _official_is_gray(bgr: np.ndarray, threshold: float) -> bool:
    channels = [bgr[:, :, i].astype(np.int16) for i in range(3)]
    spread = sum((channels[i] - channels[(i + 1) % 3]).var() for i in range(3)) / 3.0
    return bool(spread <= threshold)


def _normalised(rgb_uint8: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(rgb_uint8.transpose(2, 0, 1).copy()).float()[None] / 255
    return (x - 0.5) / 0.5


def test_gray_detection_matches_facelib(faces_dir):
    bgr = cv2.imread(str(min(faces_dir.glob("*.png"))))
    gray_bgr = cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    faded = (0.8 * gray_bgr + 0.2 * bgr).round().astype(np.uint8)  # spread 7.5: between 5 and 10
    assert _official_is_gray(faded, 10.0) and not _official_is_gray(faded, 5.0)
    for image in (bgr, gray_bgr, faded):
        x = _normalised(image[:, :, ::-1])
        for threshold in (5.0, 10.0, 40.0):
            assert official_is_gray(x, threshold).item() == _official_is_gray(image, threshold)
    assert official_is_gray(_normalised(gray_bgr[:, :, ::-1])).item()
    assert not official_is_gray(_normalised(bgr[:, :, ::-1])).item()


def _official_saved_gray_face(restored_bgr: np.ndarray, input_bgr: np.ndarray) -> tuple[np.ndarray, bool]:
    """facelib add_restored_face for a grey input (bgr2gray, then adain_npy colour transfer from
    the input face), then the uint8 conversion cv2 applies when writing a float64 image."""
    b, g, r = restored_bgr[:, :, 0], restored_bgr[:, :, 1], restored_bgr[:, :, 2]
    content = np.repeat((0.2989 * r + 0.5870 * g + 0.1140 * b)[:, :, None], 3, axis=2)

    def mean_std(feat):
        flat = feat.reshape(-1, 3)
        return flat.mean(axis=0), np.sqrt(flat.var(axis=0) + 1e-5)

    style_mean, style_std = mean_std(input_bgr)
    content_mean, content_std = mean_std(content)
    normalized = (content - content_mean) / content_std
    result = normalized * style_std + style_mean
    a_min, a_max = result.min(axis=(0, 1)), result.max(axis=(0, 1))
    i_min, i_max = np.argmin(a_min), np.argmax(a_max)
    rescaled = bool(a_max[i_max] > 256 or a_min[i_min] < 0)
    if rescaled:
        mean_min, mean_max = style_mean[i_min], style_mean[i_max]
        ratio = min(mean_min / (mean_min - a_min[i_min]), (256 - 1e-12 - mean_max) / (a_max[i_max] - mean_max))
        result = normalized * (style_std * ratio) + style_mean
    ok, png = cv2.imencode(".png", result)
    assert ok
    return cv2.imdecode(png, cv2.IMREAD_UNCHANGED), rescaled


def test_gray_output_matches_official_uint8_path(faces_dir):
    face = cv2.imread(str(sorted(faces_dir.glob("*.png"))[1]))[200:232, 200:232]
    gray = cv2.cvtColor(cv2.cvtColor(face, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR).astype(np.int16)
    inputs_bgr = [np.clip(gray * [1.0, 1.1, 0.9] + [0, 3, -2], 0, 255).astype(np.uint8),   # wide spread
                  np.clip(0.2 * gray + [100, 102, 99], 0, 255).astype(np.uint8)]         # narrow spread
    generator = torch.Generator().manual_seed(0)
    y = torch.stack([1.5 * torch.randn(3, 32, 32, generator=generator),
                     0.3 * torch.randn(3, 32, 32, generator=generator)])
    y[0, :, :29] = -1  # a few bright pixels far from the mean: the recoloured range overflows
    x = torch.cat([_normalised(bgr[:, :, ::-1]) for bgr in inputs_bgr])
    ours = ((official_gray_output(y, x) + 1) / 2 * 255).round().to(torch.uint8)
    rescaled = []
    for restored, input_bgr, mine in zip(y, inputs_bgr, ours):
        restored_bgr = (((restored.clamp(-1, 1) + 1) / 2).numpy().transpose(1, 2, 0)[:, :, ::-1] * 255.0).round()
        official, was_rescaled = _official_saved_gray_face(restored_bgr.astype(np.uint8), input_bgr)
        assert np.array_equal(mine.numpy().transpose(1, 2, 0)[:, :, ::-1], official)
        rescaled.append(was_rescaled)
    assert rescaled == [True, False]  # both branches of adain_npy are exercised


def test_restore_applies_gray_conversion_only_to_gray_inputs(model, monkeypatch):
    color = torch.rand(1, 3, 512, 512) * 2 - 1
    gray = color[:, :1].expand(-1, 3, -1, -1)
    x = torch.cat([color, gray])
    raw = 3 * torch.randn(2, 3, 512, 512)
    canned = CodeFormerPass({0.5: raw}, logits=None, lq_feat=None, codes=None, quant_feat=None)
    monkeypatch.setattr(model, "forward_sweep", lambda inp, weights: canned)
    out = model.restore(x, fidelity_weight=0.5)
    assert torch.equal(out[0], raw[0])
    assert torch.equal(out[1], official_gray_output(raw[1:], x[1:])[0])
    assert torch.equal(model.restore(x, fidelity_weight=0.5, gray_threshold=None), raw)


def test_fidelity_sweep_equals_single_weight_restore(model, sweep, golden):
    """One weight restored alone equals the same weight within the sweep, bit for bit (the
    benchmark restores sweep members from one forward; one more full-size forward here)."""
    with torch.inference_mode():
        single = model.restore(golden["inputs"]["x"], fidelity_weight=0.5)
    assert torch.equal(single, sweep.outputs[0.5])
