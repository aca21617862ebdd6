"""The CelebA-Test degradation against shared/reference/metrics/degradation_example_public.npz
(tolerances from the reference README: 1e-5 per float step, final image within 1 level), and
the per-(seed, stem) determinism of ``synth``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vqfr.cli import main
from vqfr.data import degradation as D
from vqfr.data.images import read_image, write_png_atomic


@pytest.fixture(scope="module")
def example(reference_dir):
    golden = json.loads((reference_dir / "metrics" / "metrics_golden_public.json").read_text())
    params = golden["degradation_example"]["params"]
    return dict(np.load(reference_dir / "metrics" / "degradation_example_public.npz")), params


def test_steps_match_reference(example):
    g, p = example
    assert (p["kernel"], p["kernel_size"], p["scale"], p["jpeg_quality"]) == ("iso", 41, 4.0, 60)
    kernel = D.gaussian_kernel(41, p["sigma"])
    np.testing.assert_allclose(kernel, g["kernel_iso"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(D.gaussian_kernel(41, 3.0, 1.5, np.pi / 4),
                               g["kernel_aniso_sx3_sy1p5_theta_pi4"], rtol=0, atol=1e-12)
    img = g["input_bgr_uint8"].astype(np.float32) / 255.0
    np.testing.assert_allclose(D.blur(img, kernel), g["blurred"], rtol=0, atol=1e-5)
    down = D.downsample(g["blurred"], p["scale"])
    assert down.shape == (128, 128, 3)
    np.testing.assert_allclose(down, g["down"], rtol=0, atol=1e-5)
    noise = D.gaussian_noise(np.random.RandomState(p["noise_seed"]), (128, 128, 3),
                             p["noise_sigma"])
    assert noise.dtype == np.float32
    np.testing.assert_allclose(noise, g["noise"], rtol=0, atol=1e-7)
    np.testing.assert_allclose(D.add_noise(g["down"], g["noise"]), g["noisy"], rtol=0, atol=1e-5)
    # JPEG depends on the libjpeg build: allow one level
    jpeg = D.jpeg(g["noisy"], p["jpeg_quality"])
    assert np.abs(jpeg - g["jpeg"]).max() <= 1 / 255 + 1e-6
    np.testing.assert_allclose(D.upsample(g["jpeg"], (512, 512)), g["up"], rtol=0, atol=1e-5)
    final = D.to_uint8(np.ascontiguousarray(g["up"][:, :, ::-1]))
    assert np.abs(final.astype(int) - g["final_rgb_uint8"]).max() <= 1


def test_end_to_end_with_fixed_draws(example):
    g, p = example
    params = D.DegradationParams("iso", p["sigma"], p["sigma"], 0.0, p["scale"], p["noise_sigma"],
                                 p["jpeg_quality"])
    out = D.degrade(np.ascontiguousarray(g["input_bgr_uint8"][:, :, ::-1]), params, g["noise"])
    assert out.dtype == np.uint8 and out.shape == (512, 512, 3)
    diff = np.abs(out.astype(int) - g["final_rgb_uint8"])
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_sampled_ranges():
    for name, config in D.CONFIGS.items():
        for stem in ("a", "b", "c", "d", "e", "f"):
            p = D.sample_params(config, D.image_rng(3, stem))
            assert config.blur_sigma[0] <= p.sigma_x <= config.blur_sigma[1]
            assert config.downsample_range[0] <= p.scale <= config.downsample_range[1]
            assert config.noise_range[0] <= p.noise_sigma <= config.noise_range[1]
            assert isinstance(p.jpeg_quality, int)
            assert config.jpeg_range[0] <= p.jpeg_quality < config.jpeg_range[1]
            if name != "gfpgan":
                assert p.color_shift is None and not p.gray and p.pt_jitter is None


def test_gfpgan_extras_apply():
    rng = np.random.default_rng(0)
    hq = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    base = D.DegradationParams("aniso", 2.0, 1.0, 0.3, 2.0, 5.0, 80)
    plain = D.degrade(hq, base, np.zeros((32, 32, 3), np.float32))
    gray = D.degrade(hq, D.DegradationParams(**{**base.__dict__, "gray": True}),
                     np.zeros((32, 32, 3), np.float32))
    assert (gray[:, :, 0] == gray[:, :, 1]).all() and not (plain[:, :, 0] == plain[:, :, 1]).all()
    jitter = D.degrade(hq, D.DegradationParams(**{**base.__dict__,
                                                  "pt_jitter": (("brightness", 1.4),)}),
                       np.zeros((32, 32, 3), np.float32))
    assert jitter.astype(int).sum() > plain.astype(int).sum()


def test_synth_is_order_and_shard_independent(tmp_path):
    hq_dir = tmp_path / "hq_in"
    rng = np.random.default_rng(1)
    for name in ("c", "a", "b", "d"):
        write_png_atomic(hq_dir / f"{name}.png", rng.integers(0, 256, (64, 64, 3), np.uint8))
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    assert D.synthesize(hq_dir, whole, seed=5, config="vqfr-v2") == ["a", "b", "c", "d"]
    for k in (1, 0):  # shards in reverse order
        assert main(["datasets", "synth", "--hq", str(hq_dir), "--out", str(sharded),
                     "--seed", "5", "--config", "vqfr-v2", "--shard", f"{k}/2"]) == 0
    for stem in "abcd":
        np.testing.assert_array_equal(read_image(whole / "lq" / f"{stem}.png"),
                                      read_image(sharded / "lq" / f"{stem}.png"))
        np.testing.assert_array_equal(read_image(whole / "hq" / f"{stem}.png"),
                                      read_image(hq_dir / f"{stem}.png"))
    lq = {s: read_image(whole / "lq" / f"{s}.png") for s in "abcd"}
    assert not np.array_equal(lq["a"], lq["b"])
    other_seed = D.degrade_image(read_image(hq_dir / "a.png"), D.CONFIGS["vqfr-v2"], 6, "a")[0]
    assert not np.array_equal(other_seed, lq["a"])
    record = json.loads((whole / "params" / "a.json").read_text())
    assert record["seed"] == 5 and record["config"] == "vqfr-v2"
