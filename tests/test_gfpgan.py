"""GFPGAN v1.3/v1.4 (clean) against the reference manifest and synthetic-weight goldens
(../shared/reference/gfpgan_v1.4, README section "GFPGAN v1.3 / v1.4")."""
from __future__ import annotations

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

from vqfr.archs.gfpgan import GFPGANv1Clean

TOLERANCE = 1e-3  # README: max|diff| on `image` and `out_rgb_*`


@pytest.fixture(scope="module")
def manifest(reference_dir):
    return read_manifest(reference_dir, "gfpgan_v1.4")


@pytest.fixture(scope="module")
def golden(reference_dir):
    return read_golden(reference_dir, "gfpgan_v1.4")


@pytest.fixture(scope="module")
def model(manifest, golden, synth_weights):
    return synthetic_model(GFPGANv1Clean, manifest, synth_weights, seed=golden["seed"])


@pytest.fixture(scope="module")
def stored_noise_pass(model, golden):
    """One full-size forward with the stored noise buffers and the U-Net side outputs."""
    with torch.inference_mode():
        return model(golden["inputs"]["x"], return_rgb=True)


@pytest.fixture(scope="module")
def random_noise_pair(model, golden):
    """restore() on a batch of two copies of the golden face, official random-noise path."""
    x = golden["inputs"]["x"].repeat(2, 1, 1, 1)
    with torch.inference_mode():
        return model.restore(x, noise="random", seed=golden["seed"])


def test_state_dict_layout_matches_manifest(manifest, model):
    ours, ref = state_dict_layout(model), manifest_layout(manifest)
    assert len(ours) == manifest["num_tensors"] == 285
    assert ours == ref


def test_parameter_and_buffer_counts(manifest, model):
    assert sum(p.numel() for p in model.parameters()) == manifest["num_params"] == 86_444_252
    assert sum(b.numel() for b in model.buffers()) == manifest["num_buffer_elements"] == 699_024
    for name, count in manifest["num_params_by_module"].items():
        assert sum(p.numel() for p in getattr(model, name).parameters()) == count, name


def test_rejects_other_sizes(model):
    for shape in [(1, 3, 256, 256), (1, 4, 512, 512), (3, 512, 512)]:
        with pytest.raises(ValueError, match="512 x 512"):
            model.restore(torch.zeros(shape), noise="stored")
    with pytest.raises(ValueError, match="noise"):
        model.restore(torch.zeros(1, 3, 512, 512), noise="fresh")


def test_official_noise_draws_are_bit_exact_and_leave_global_rng_alone(model, golden):
    state = torch.get_rng_state()
    draws = model.official_random_noise(golden["seed"])
    assert torch.equal(torch.get_rng_state(), state)
    reference = golden["inputs"]["noise_random"]
    assert [tuple(t.shape) for t in draws] == [tuple(t.shape) for t in reference]
    assert all(torch.equal(a, b) for a, b in zip(draws, reference))
    # another seed draws other maps
    assert not torch.equal(model.official_random_noise(golden["seed"] + 1)[0], reference[0])


@pytest.mark.slow
def test_stored_noise_image_matches_golden(stored_noise_pass, golden):
    image, _ = stored_noise_pass
    assert max_abs_diff(image, golden["outputs"]["image"]) <= TOLERANCE


@pytest.mark.slow
def test_unet_rgb_side_outputs_match_golden(stored_noise_pass, golden):
    _, rgbs = stored_noise_pass
    assert [rgb.shape[-1] for rgb in rgbs] == [8, 16, 32, 64, 128, 256, 512]
    for rgb in rgbs:
        assert max_abs_diff(rgb, golden["outputs"][f"out_rgb_{rgb.shape[-1]}"]) <= TOLERANCE


@pytest.mark.slow
def test_random_noise_restore_reproduces_official_call_for_every_batch_item(random_noise_pair, golden):
    reference = golden["outputs"]["image_random_noise"][0]
    for restored in random_noise_pair:
        assert max_abs_diff(restored, reference) <= TOLERANCE
    # batch position does not matter: the two copies agree to float noise
    assert max_abs_diff(random_noise_pair[0], random_noise_pair[1]) <= 1e-5


@pytest.mark.slow
def test_negative_control_comparison_detects_wrong_noise(stored_noise_pass, random_noise_pair, golden):
    """The same comparison rejects outputs made with the other noise source."""
    assert max_abs_diff(stored_noise_pass[0], golden["outputs"]["image_random_noise"]) > 0.5
    assert max_abs_diff(random_noise_pair[:1], golden["outputs"]["image"]) > 0.5
