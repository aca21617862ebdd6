"""The catalogue against the reference manifests, --asset parsing, and `vqfr-eval models`."""
from __future__ import annotations

import hashlib
import json
import re

import pytest

from vqfr.cli import main
from vqfr.errors import VqfrError
from vqfr.zoo import ASSETS, MODELS, get_model_spec, list_models, parse_asset_overrides

MANIFEST_OF = {"vqfr-v1": "vqfr_v1", "vqfr-v2": "vqfr_v2", "gfpgan-v1.3": "gfpgan_v1.4",
               "gfpgan-v1.4": "gfpgan_v1.4", "codeformer": "codeformer",
               "arcface-resnet18": "arcface_resnet18", "awing-fan": "awing_fan"}


def test_models_and_their_defaults():
    assert list_models() == ["codeformer", "gfpgan-v1.3", "gfpgan-v1.4", "vqfr-v1", "vqfr-v2"]
    expected = {
        "vqfr-v1": ("vqfr.archs.vqfr_v1:VQFRv1", {"branch": "main"}, "multiple-of-32"),
        "vqfr-v2": ("vqfr.archs.vqfr_v2:VQFRv2", {"fidelity_ratio": 0.0}, "512"),
        "gfpgan-v1.3": ("vqfr.archs.gfpgan:GFPGANv1Clean", {"noise": "random", "seed": 0}, "512"),
        "gfpgan-v1.4": ("vqfr.archs.gfpgan:GFPGANv1Clean", {"noise": "random", "seed": 0}, "512"),
        "codeformer": ("vqfr.archs.codeformer:CodeFormer", {"fidelity_weight": 0.5, "gray_threshold": 10.0}, "512"),
    }
    for name, (arch, options, size) in expected.items():
        spec = get_model_spec(name)
        assert (spec.arch, spec.options, spec.input_size) == (arch, options, size)
        assert spec.asset in ASSETS and ASSETS[spec.asset].format == "state_dict"


def test_hashes_are_well_formed_and_match_file_names():
    for asset in ASSETS.values():
        assert asset.urls or asset.manual, asset.name
        if asset.sha256:
            assert re.fullmatch(r"[0-9a-f]{64}", asset.sha256), asset.name
        if asset.sha256_prefix:
            assert re.fullmatch(r"[0-9a-f]{8}", asset.sha256_prefix), asset.name
            assert f"-{asset.sha256_prefix}." in asset.filename, asset.name
        for url in asset.urls:
            assert url.startswith("https://") and url.endswith(asset.filename), asset.name


def test_catalogue_agrees_with_reference_manifests(reference_dir):
    for name, folder in MANIFEST_OF.items():
        manifest = json.loads((reference_dir / folder / "manifest.json").read_text())
        asset = ASSETS[name]
        assert asset.checkpoint_key == manifest["checkpoint_key"], name
        assert asset.key_prefix == (manifest.get("key_prefix") or ""), name
        release = {"gfpgan-v1.3": "v1.3", "gfpgan-v1.4": "v1.4", "codeformer": "codeformer"}
        if name in release:
            entry = manifest["checkpoints"][release[name]]
            assert entry["url"] in asset.urls and asset.sha256 == entry["sha256_unverified"]
    awing = json.loads((reference_dir / "awing_fan" / "manifest.json").read_text())
    entry = awing["checkpoints"]["alignment_WFLW_4HG"]
    assert ASSETS["awing-fan"].urls == (entry["url"],) and entry["sha256"] is None
    assert ASSETS["awing-fan"].sha256 is None and ASSETS["awing-fan"].sha256_prefix is None
    assert ASSETS["awing-fan"].filename == entry["file"].rsplit("/", 1)[1]
    assert "VQFR_v1-33a1fac5.pth" in json.loads(
        (reference_dir / "vqfr_v1" / "manifest.json").read_text())["checkpoint_note"]
    niqe = (reference_dir / "metrics" / "niqe_pris_params.npz").read_bytes()
    assert hashlib.sha256(niqe).hexdigest() == ASSETS["niqe-params"].sha256


def test_parse_asset_overrides(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("a.pth", "n.npz"):
        (tmp_path / name).write_bytes(b"x")
    parsed = parse_asset_overrides([f"vqfr-v1={tmp_path}/a.pth", "niqe-params = ~/n.npz"])
    assert parsed["vqfr-v1"] == tmp_path / "a.pth"
    assert parsed["niqe-params"] == tmp_path / "n.npz"
    assert parse_asset_overrides(None) == {}
    for bad, message in (("vqfr-v1", "expected NAME=PATH"), ("=x.pth", "expected NAME=PATH"),
                         ("vqfr-v1=", "expected NAME=PATH"), ("nope=x.pth", "unknown asset"),
                         (f"vqfr-v1={tmp_path}/typo.pth", "typo.pth does not exist"),
                         (f"vqfr-v1={tmp_path}", "is not a file")):
        with pytest.raises(VqfrError, match=message):
            parse_asset_overrides([bad])
    with pytest.raises(VqfrError, match="given twice"):
        parse_asset_overrides([f"vqfr-v1={tmp_path}/a.pth", f"vqfr-v1={tmp_path}/n.npz"])


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VQFR_EVAL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_models_command_lists_everything(home, capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in [*MODELS, *ASSETS]:
        assert name in out
    for asset in ASSETS.values():
        assert asset.filename in out and str(home / "weights" / asset.filename) in out
        assert all(url in out for url in asset.urls)
    assert "drive.google.com/drive/folders/1lczKYEbARwe27FJlKoFdng7UnffGDjO2" in out
    assert "--asset vqfr-v1=/path/to/VQFR_v1-33a1fac5.pth" in out


def test_models_command_verifies(home, reference_dir, tmp_path, capsys):
    official = reference_dir / "metrics" / "niqe_pris_params.npz"
    assert main(["models", "--verify", "--asset", f"niqe-params={official}"]) == 0
    out = capsys.readouterr().out
    assert f"present (override): {official}" in out and "verified" in out

    other = tmp_path / "niqe_pris_params.npz"
    other.write_bytes(b"not the parameters")
    assert main(["models", "--verify", "--asset", f"niqe-params={other}"]) == 1
    assert "MISMATCH" in capsys.readouterr().out


def test_models_fetch_guidance(home, capsys):
    assert main(["models", "fetch", "vqfr-v1"]) == 2
    err = capsys.readouterr().err
    assert "1lczKYEbARwe27FJlKoFdng7UnffGDjO2" in err
    assert str(home / "weights" / "VQFR_v1-33a1fac5.pth") in err
    assert "--asset vqfr-v1=" in err
    assert main(["models", "--asset", "nope=x"]) == 2
    assert "unknown asset 'nope'" in capsys.readouterr().err
    assert main(["models", "fetch"]) == 2
