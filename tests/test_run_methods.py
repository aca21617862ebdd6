"""Method spellings, the restore cache's journal, tensor2img, and the size policy (no models)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vqfr.errors import VqfrError
from vqfr.run.cache import RestoreCache
from vqfr.run.methods import parse_method, parse_methods, split_methods
from vqfr.run.restorer import size_error, tensor2img


def test_method_spellings():
    assert split_methods(["vqfr-v1,lq", "codeformer:fidelity_weight=0.7"]) == \
        ["vqfr-v1", "lq", "codeformer:fidelity_weight=0.7"]
    v2 = parse_method("vqfr-v2", {"fidelity_ratio": 0.5, "fidelity_weight": 0.9})
    assert v2.options["fidelity_ratio"] == 0.5 and "fidelity_weight" not in v2.options
    assert v2.slug == "vqfr-v2_fidelity_ratio0.5" and v2.label == "vqfr-v2 (fidelity_ratio=0.5)"
    cf = parse_method("codeformer:fidelity_weight=1:label=CodeFormer w=1",
                      {"fidelity_weight": 0.3})
    assert cf.options["fidelity_weight"] == 1.0 and isinstance(cf.options["fidelity_weight"], float)
    assert cf.label == "CodeFormer w=1"
    ablation = parse_method("vqfr-v1:twm_disabled=32+16")
    assert ablation.options["twm_disabled"] == (32, 16) and "return_offsets" not in ablation.options
    assert parse_method("vqfr-v1:twm_disabled=32").options["twm_disabled"] == (32,)
    assert parse_method("lq").label == "Input"
    assert parse_method("gfpgan-v1.4", {"seed": 3}).options == {"noise": "random", "seed": 3}


def test_method_errors(tmp_path):
    with pytest.raises(VqfrError, match="unknown method"):
        parse_method("vqfr-v3")
    with pytest.raises(VqfrError, match="no option 'fidelity_weight'"):
        parse_method("vqfr-v2:fidelity_weight=0.5")
    with pytest.raises(VqfrError, match="not a directory"):
        parse_method(f"folder:{tmp_path / 'absent'}")
    with pytest.raises(VqfrError, match="listed twice"):
        parse_methods("vqfr-v1,vqfr-v1")
    folder = parse_method(f"folder:{tmp_path}")
    assert folder.kind == "folder" and folder.folder == tmp_path.resolve()


def test_tensor2img_matches_basicsr_numpy():
    """basicsr: clamp_, (x - min) / (max - min), numpy float32 * 255.0, .round(), uint8."""
    y = torch.linspace(-1.2, 1.2, 100_003).reshape(1, 1, 1, -1) + 1e-7
    expected = ((y.clamp(-1, 1) - (-1)) / 2).numpy()
    expected = (expected * 255.0).round().astype(np.uint8)
    assert np.array_equal(tensor2img(y).numpy(), expected)
    # Exact half levels round to even, as numpy does: (2k+1)/255*... hits k+0.5 exactly.
    halves = torch.tensor([0.5, 1.5, 2.5]) / 255 * 2 - 1
    assert tensor2img(halves).tolist() == np.round(((halves.numpy() + 1) / 2) * 255.0).tolist()


def test_size_policy():
    v1, v2 = parse_method("vqfr-v1"), parse_method("vqfr-v2")
    assert size_error(v1, 512, 512) is None
    assert "--allow-size multiple-of-32" in size_error(v1, 128, 128)
    assert size_error(v1, 128, 96, allow_size="multiple-of-32") is None
    assert "multiples of 32" in size_error(v1, 100, 96, allow_size="multiple-of-32")
    assert "512x512" in size_error(v2, 128, 128, allow_size="multiple-of-32")
    assert size_error(parse_method("lq"), 100, 100) is None


def test_restore_cache_journal_survives_a_torn_line(tmp_path):
    key = {"method": "x", "weights_sha256": "a" * 64}
    cache = RestoreCache(tmp_path, key)
    cache.record({"a": {"input_sha256": "i1", "output_sha256": "o1"}})
    cache.record({"b": {"input_sha256": "i2", "output_sha256": "o2"}})
    cache.close()
    with open(tmp_path / "journal-0.jsonl", "a") as f:
        f.write('{"stem": "c", "input_sha')          # a write cut by SIGKILL
    again = RestoreCache(tmp_path, key)
    assert again.lookup("a", "i1") == "o1" and again.lookup("b", "i2") == "o2"
    assert again.lookup("c", "i3") is None
    assert again.lookup("a", "changed input") is None
    again.record({"d": {"input_sha256": "i4", "output_sha256": "o4"}})   # appends after it
    again.close()
    assert RestoreCache(tmp_path, key).lookup("d", "i4") == "o4"
    assert RestoreCache(tmp_path, {**key, "weights_sha256": "b" * 64}).lookup("a", "i1") is None
    again.save()
    saved = json.loads((tmp_path / "cache.json").read_text())
    assert set(saved["images"]) == {"a", "b", "d"} and not list(tmp_path.glob("journal-*"))
    assert RestoreCache(tmp_path, key).lookup("b", "i2") == "o2"
