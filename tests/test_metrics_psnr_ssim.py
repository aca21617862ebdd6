"""PSNR / SSIM against the official metric_paper goldens (shared/reference/metrics)."""
from __future__ import annotations

import math

import pytest
import torch
from goldens import golden_inputs

from vqfr.metrics import psnr_ssim
from vqfr.metrics.psnr_ssim import PSNR, SSIM

SETTINGS = {
    "rgb_cmv": {},
    "rgb_nocmv": {"correct_mean_var": False},
    "y_cmv": {"test_y_channel": True},
    "y_nocmv": {"test_y_channel": True, "correct_mean_var": False},
    "rgb_cmv_crop4": {"crop_border": 4},
}


@pytest.fixture(scope="module")
def inputs(shared_dir):
    return golden_inputs(str(shared_dir))


def _measure(metric_cls, kw, restored, reference, batch=8):
    metric = metric_cls(**kw)
    for start in range(0, len(restored), batch):
        stop = min(start + batch, len(restored))
        metric.update(restored[start:stop], reference[start:stop], torch.arange(start, stop))
    return metric


@pytest.mark.parametrize("kind", ["blur", "down"])
def test_paper_default_all_faces(inputs, kind):
    golden, names, images = inputs
    ref = golden["psnr_ssim"]["rgb_cmv"]
    psnr = _measure(PSNR, {}, images[kind], images["face"])
    ssim = _measure(SSIM, {}, images[kind], images["face"])
    p, s = psnr.compute(), ssim.compute()
    for i, name in enumerate(names):
        assert abs(p.per_image[i] - ref["per_image"][name][kind]["psnr"]) <= 1e-4
        assert abs(s.per_image[i] - ref["per_image"][name][kind]["ssim"]) <= 1e-6
    assert abs(p.value - ref["mean"][kind]["psnr"]) <= 1e-4
    assert abs(s.value - ref["mean"][kind]["ssim"]) <= 1e-6
    assert psnr.options() == {"test_y_channel": False, "crop_border": 0, "correct_mean_var": True}


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s != "rgb_cmv"])
def test_other_settings(inputs, setting):
    golden, names, images = inputs
    ref = golden["psnr_ssim"][setting]["per_image"]
    picked = [0, 5, 11, 17]  # a subset keeps the suite fast; the default runs on all 24
    for kind in ("blur", "down"):
        restored, reference = images[kind][picked], images["face"][picked]
        p = PSNR(**SETTINGS[setting]).per_image(restored, reference)
        s = SSIM(**SETTINGS[setting]).per_image(restored, reference)
        for row, i in enumerate(picked):
            assert abs(float(p[row]) - ref[names[i]][kind]["psnr"]) <= 1e-4, (setting, kind, i)
            assert abs(float(s[row]) - ref[names[i]][kind]["ssim"]) <= 1e-6, (setting, kind, i)


def test_y_uses_rgb_order(inputs):
    """Negative control: treating the RGB tensor as BGR (the official reads BGR) breaks Y."""
    golden, names, images = inputs
    expected = golden["psnr_ssim"]["y_nocmv"]["per_image"][names[0]]["blur"]["psnr"]
    restored, reference = images["blur"][:1], images["face"][:1]
    ours = float(PSNR(test_y_channel=True, correct_mean_var=False).per_image(restored, reference))
    swapped = float(PSNR(test_y_channel=True, correct_mean_var=False).per_image(
        restored.flip(1), reference.flip(1)))
    assert abs(ours - expected) <= 1e-4
    assert abs(swapped - expected) > 1e-3


def test_identical_pair_gives_inf_and_inf_mean(inputs):
    golden, _, images = inputs
    identical = golden["psnr_ssim"]["identical_pair"]
    assert float(identical["psnr"]) == math.inf and float(identical["ssim"]) == 1.0
    face, blur = images["face"][:2], images["blur"][:2]
    psnr, ssim = PSNR(correct_mean_var=False), SSIM(correct_mean_var=False)
    for metric in (psnr, ssim):
        metric.update(torch.stack([face[0], blur[1]]), face, torch.tensor([0, 1]))
    p, s = psnr.compute(), ssim.compute()
    assert p.per_image[0] == math.inf and math.isfinite(p.per_image[1])
    assert p.value == math.inf and p.extra["infinite"] == 1  # arithmetic mean, as official
    assert s.per_image[0] == 1.0
    # With the float32 mean/std correction an identical copy moves by about an ulp, in the
    # official code too (150.4 dB there for this face): finite but far above any real value.
    assert float(PSNR().per_image(face[:1], face[:1])) > 140


def test_two_shard_merge_equals_single(inputs):
    _, _, images = inputs
    restored, reference = images["down"][:4], images["face"][:4]
    single = PSNR()
    single.update(restored, reference, torch.arange(4))
    shards = [PSNR(), PSNR()]
    shards[1].update(restored[1::2], reference[1::2], torch.tensor([1, 3]))  # any order
    shards[0].update(restored[0::2], reference[0::2], torch.tensor([0, 2]))
    merged = PSNR()
    merged.merge_states([s.states() for s in shards])
    a, b = single.compute(), merged.compute()
    assert a.per_image == b.per_image and a.value == b.value


def test_psnr_and_ssim_share_the_corrected_images(inputs, monkeypatch):
    _, _, images = inputs
    calls = []
    original = psnr_ssim.correct_mean_var
    monkeypatch.setattr(psnr_ssim, "correct_mean_var",
                        lambda *a: calls.append(1) or original(*a))
    restored, reference = images["blur"][:2], images["face"][:2]
    PSNR().update(restored, reference, torch.arange(2))
    SSIM().update(restored, reference, torch.arange(2))
    assert len(calls) == 1
    PSNR().update(restored.clone(), reference, torch.arange(2))  # another batch: recomputed
    assert len(calls) == 2
