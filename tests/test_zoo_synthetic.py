"""Our synthetic-weights rule against the reference script, on every reference manifest."""
from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch

from vqfr.zoo import (create_model, load_state_dict_file, synthetic_state_dict,
                      write_synthetic_checkpoint)
from vqfr.zoo.synthetic import synthetic_tensor, tensor_layout


def manifests(reference_dir):
    paths = sorted(reference_dir.glob("*/manifest.json"))
    paths += sorted(reference_dir.glob("metrics/*_manifest.json"))
    assert len(paths) >= 5
    return paths


SMALL = 1 << 16  # elements; the small tensors of every manifest cover every branch of the rule


def compare_with_reference(reference_dir, synth_weights, keep) -> int:
    checked = 0
    for path in manifests(reference_dir):
        for entry in json.loads(path.read_text())["tensors"]:
            if not keep(math.prod(entry["shape"])):
                continue
            dtype = entry.get("dtype", "float32")
            ours = synthetic_tensor(1, entry["key"], entry["shape"], getattr(torch, dtype))
            reference = synth_weights.synth_tensor(1, entry["key"], entry["shape"], dtype)
            assert ours.dtype == reference.dtype and torch.equal(ours, reference), \
                f"{path.parent.name}: {entry['key']}"
            checked += 1
    return checked


def test_rule_matches_reference_on_small_tensors(reference_dir, synth_weights):
    assert compare_with_reference(reference_dir, synth_weights, lambda n: n <= SMALL) > 1500


@pytest.mark.slow
def test_rule_matches_reference_on_large_tensors(reference_dir, synth_weights):
    assert compare_with_reference(reference_dir, synth_weights, lambda n: n > SMALL) > 500


def test_other_seed_and_layout_kinds(reference_dir, synth_weights):
    manifest = json.loads((reference_dir / "arcface_resnet18" / "manifest.json").read_text())
    reference = synth_weights.synth_state_dict(manifest, 7)
    ours = synthetic_state_dict(manifest, 7)
    assert list(ours) == list(reference)
    assert all(torch.equal(ours[k], reference[k]) for k in ours)
    # A manifest, a state dict and (key, shape, dtype) triples describe the same layout.
    layout = tensor_layout(manifest)
    assert tensor_layout(reference) == layout
    assert tensor_layout([(k, list(s), str(d)) for k, s, d in layout]) == layout


def test_checkpoint_format_with_key_prefix(reference_dir, synth_weights, tmp_path):
    """arcface: a flat dict whose keys carry 'module.', which is part of what is hashed."""
    manifest = json.loads((reference_dir / "arcface_resnet18" / "manifest.json").read_text())
    module_layout = [(e["key"].removeprefix("module."), e["shape"], e["dtype"])
                     for e in manifest["tensors"]]
    path = write_synthetic_checkpoint("arcface-resnet18", tmp_path / "arc.pth", seed=1,
                                      layout=module_layout)
    written = torch.load(path, weights_only=True)
    reference = synth_weights.synth_state_dict(manifest, 1)
    assert list(written) == list(reference)
    assert all(torch.equal(written[k], reference[k]) for k in written)
    loaded = load_state_dict_file(path, None, "module.")
    assert list(loaded) == [k for k, _, _ in module_layout]


@pytest.mark.slow
def test_vqfr_v1_round_trip(reference_dir, synth_weights, tmp_path):
    if importlib.util.find_spec("vqfr.archs.vqfr_v1") is None:
        pytest.skip("vqfr.archs.vqfr_v1 is not written yet")
    path = write_synthetic_checkpoint("vqfr-v1", tmp_path / "VQFR_v1-33a1fac5.pth", seed=1)
    written = torch.load(path, weights_only=True)
    manifest = json.loads((reference_dir / "vqfr_v1" / "manifest.json").read_text())
    assert list(written) == ["params"]
    # The official file layout: the reference manifest's keys, in order, with the rule's values.
    assert [(k, list(v.shape)) for k, v in written["params"].items()] == \
        [(e["key"], e["shape"]) for e in manifest["tensors"]]
    for entry in manifest["tensors"][:: max(1, len(manifest["tensors"]) // 40)]:
        reference = synth_weights.synth_tensor(1, entry["key"], entry["shape"])
        assert torch.equal(written["params"][entry["key"]], reference)

    with pytest.warns(UserWarning, match="not the official"):
        model = create_model("vqfr-v1", overrides={"vqfr-v1": path})
    assert not model.training
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in written["params"].items())
