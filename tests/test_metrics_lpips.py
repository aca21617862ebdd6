"""LPIPS-VGG against the public metrics golden (synthetic VGG16 backbone, real v0.1 heads)."""
from __future__ import annotations

import hashlib
import json

import cv2
import numpy as np
import pytest
import torch
from goldens import spy

from vqfr.metrics import create_metric
from vqfr.metrics.lpips_vgg import LPIPS, vgg16_to_lpips_keys
from vqfr.zoo.checkpoint import CheckpointError

TOLERANCE = 1e-7  # README "Recommended tolerances": LPIPS (synthetic backbone) 1e-7 absolute


@pytest.fixture(scope="module")
def golden(reference_dir):
    return json.loads((reference_dir / "metrics" / "metrics_golden_public.json").read_text())


@pytest.fixture(scope="module")
def vgg_synthetic(reference_dir, synth_weights):
    manifest = json.loads((reference_dir / "metrics" / "vgg16_features_manifest.json").read_text())
    return synth_weights.synth_state_dict(manifest, 1)


@pytest.fixture(scope="module")
def metric(vgg_synthetic):
    return LPIPS(weights=vgg_synthetic)


def rgb_batch(bgr_images):
    return torch.from_numpy(np.stack([im[..., ::-1] for im in bgr_images])).permute(0, 3, 1, 2)


def degraded(bgr, kind):
    """The golden's degradations (README "Files in metrics/"), on BGR uint8."""
    if kind == "blur":
        return cv2.GaussianBlur(bgr, (0, 0), 2)
    h, w = bgr.shape[:2]
    small = cv2.resize(bgr, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def test_vgg_layouts_map_onto_lpips_slices(vgg_synthetic):
    mapped = vgg16_to_lpips_keys(vgg_synthetic)
    assert mapped["net.slice1.0.weight"] is vgg_synthetic["0.weight"]
    assert mapped["net.slice2.5.bias"] is vgg_synthetic["5.bias"]
    assert mapped["net.slice5.28.weight"] is vgg_synthetic["28.weight"]
    torchvision_layout = {f"features.{k}": v for k, v in vgg_synthetic.items()}
    torchvision_layout["classifier.0.weight"] = torch.zeros(2, 2)
    assert vgg16_to_lpips_keys(torchvision_layout).keys() == mapped.keys()
    with pytest.raises(KeyError, match="unexpected key"):
        vgg16_to_lpips_keys({**vgg_synthetic, "30.weight": torch.zeros(1)})


def test_incomplete_backbone_is_refused(vgg_synthetic):
    partial = {k: v for k, v in vgg_synthetic.items() if k != "28.bias"}
    with pytest.raises(CheckpointError, match="missing keys: slice5.28.bias"):
        LPIPS(weights=partial)


def test_weights_file_in_torchvision_layout(tmp_path, vgg_synthetic, metric):
    path = tmp_path / "vgg16-397923af.pth"
    torch.save({**{f"features.{k}": v for k, v in vgg_synthetic.items()},
                "classifier.6.bias": torch.zeros(1000)}, path)
    from_file = create_metric("lpips", weights=str(path))
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.integers(0, 256, (2, 3, 48, 48), dtype=np.uint8))
    b = torch.from_numpy(rng.integers(0, 256, (2, 3, 48, 48), dtype=np.uint8))
    assert torch.equal(from_file.distances(a, b), metric.distances(a, b))
    assert torch.equal(metric.distances(a, a), torch.zeros(2))
    order = torch.tensor([1, 0])
    metric.reset()
    metric.update(a[order], b[order], index=order + 10)
    result = metric.compute()
    expected = metric.distances(a, b).double()
    assert list(result.per_image) == [10, 11]
    assert result.per_image == {10: expected[0].item(), 11: expected[1].item()}
    assert result.value == pytest.approx(expected.mean().item(), abs=1e-15)


@pytest.mark.slow
def test_golden_pairs_layers_and_negative_controls(faces_dir, golden, metric):
    """Three faces blurred and one downscaled, at 512 x 512 in one batch."""
    reference = golden["lpips"]
    names = sorted(reference["per_layer_first3"])
    assert names == sorted(p.name for p in faces_dir.glob("*.png"))[:3]
    faces = [cv2.imread(str(faces_dir / n)) for n in names]
    pairs = [(n, "blur") for n in names] + [(names[0], "down")]
    for name, kind in pairs:  # same inputs as the golden, byte for byte (HWC BGR)
        bgr = faces[names.index(name)]
        for what, array in (("face", bgr), (kind, degraded(bgr, kind))):
            digest = hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
            assert digest == golden["inputs"][name][f"{what}_sha256"], (name, what)
    gt = rgb_batch([faces[names.index(n)] for n, _ in pairs])
    restored = rgb_batch([degraded(faces[names.index(n)], kind) for n, kind in pairs])

    values, layers = metric.distances(restored, gt, per_layer=True)
    for i, (name, kind) in enumerate(pairs):
        assert abs(values[i].item() - reference["per_image"][name][kind]) <= TOLERANCE
        expected_layers = torch.tensor(reference["per_layer_first3"][name][kind])
        assert (layers[i].double() - expected_layers).abs().max().item() <= TOLERANCE
        if kind == "blur":  # the common mistakes give numbers well away from ours
            for mistake, wrong in reference["negative_controls_blur_first3"][name].items():
                if mistake != "correct":
                    assert abs(values[i].item() - wrong) > 1e-6, mistake


def test_split_forward_equals_lpips_and_reuses_the_reference(faces_dir, metric, monkeypatch):
    """distances() is lpips.LPIPS.forward split in two, bit for bit, and the methods of a run
    measured on the same reference batch compute its features once."""
    from vqfr.metrics.color import u8_to_minus1_1

    faces = [cv2.resize(cv2.imread(str(p)), (64, 64), interpolation=cv2.INTER_AREA)
             for p in sorted(faces_dir.glob("*.png"))[:2]]
    reference = rgb_batch(faces)
    method_outputs = [rgb_batch([degraded(f, kind) for f in faces]) for kind in ("blur", "down")]
    calls = spy(monkeypatch, LPIPS, "_features", lambda self, images: images.shape[0])
    metric._reference_memo = None
    for restored in method_outputs:
        with torch.inference_mode():
            value, layers = metric.net(u8_to_minus1_1(restored, torch.float32),
                                       u8_to_minus1_1(reference, torch.float32), retPerLayer=True)
        got, got_layers = metric.distances(restored, reference, per_layer=True)
        assert torch.equal(got, value.flatten(1).squeeze(1))
        assert torch.equal(got_layers, torch.stack([t.flatten(1).squeeze(1) for t in layers], 1))
    # the reference batch once, each method's outputs once
    assert calls == [2, 2, 2]
    other = reference.flip(0).contiguous()            # another reference batch: recomputed
    metric.distances(method_outputs[0], other)
    assert calls == [2, 2, 2, 2, 2]
