"""Safe checkpoint loading (key layouts, weights_only) and create_model with a small module."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vqfr.errors import VqfrError
from vqfr.zoo import (Asset, CheckpointError, ModelSpec, create_model, load_asset_state_dict,
                      load_checkpoint_file, load_state_dict_file, synthetic_state_dict,
                      write_synthetic_checkpoint)
from vqfr.zoo.registry import ASSETS, MODELS

EXECUTED: list[str] = []


def _record(tag):
    EXECUTED.append(tag)
    return tag


class Payload:
    """Unpickling this object would call _record: weights_only loading must refuse it."""

    def __reduce__(self):
        return _record, ("payload ran",)


def small_state():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).state_dict()


def assert_same(a, b):
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("layout, key, prefix", [
    ("params", "params", ""),
    ("params_ema+params", "params_ema", ""),   # GFPGAN: params_ema preferred
    ("params_only", "params_ema", ""),         # GFPGANer falls back to params
    ("params_ema_only", "params", ""),         # VQFR demo takes params_ema when present
    ("bare", None, ""),
    ("module", None, "module."),               # arcface-pytorch DataParallel file
    ("params+module", "params", ""),           # VQFR BaseModel strips module. anyway
])
def test_key_layouts(tmp_path, layout, key, prefix):
    state = small_state()
    other = {k: torch.zeros_like(v) for k, v in state.items()}
    prefixed = {f"module.{k}": v for k, v in state.items()}
    checkpoint = {
        "params": {"params": state},
        "params_ema+params": {"params_ema": state, "params": other},
        "params_only": {"params": state},
        "params_ema_only": {"params_ema": state},
        "bare": state,
        "module": prefixed,
        "params+module": {"params": prefixed},
    }[layout]
    path = tmp_path / "ckpt.pth"
    torch.save(checkpoint, path)
    assert_same(load_state_dict_file(path, key, prefix), state)


def test_params_chosen_over_params_ema_when_asked(tmp_path):
    state = small_state()
    other = {k: torch.zeros_like(v) for k, v in state.items()}
    torch.save({"params": state, "params_ema": other}, tmp_path / "c.pth")
    assert_same(load_state_dict_file(tmp_path / "c.pth", "params"), state)


def test_weights_only_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"params": small_state(), "extra": Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only") as info:
        load_state_dict_file(path, "params")
    assert str(path) in str(info.value)
    assert EXECUTED == []


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "noise.pth"
    path.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="not a valid PyTorch checkpoint") as info:
        load_state_dict_file(path, "params")
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state_dict_file(tmp_path / "absent.pth")


def test_missing_key_lists_what_the_file_has(tmp_path):
    path = tmp_path / "train_state.pth"
    torch.save({"optimizers": [{"lr": 1e-4}], "iter": 3}, path)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_file(path, "params")
    message = str(info.value)
    for expected in (str(path), "'params'", "'optimizers'", "'iter'"):
        assert expected in message


# --- create_model with a small registered spec ------------------------------------------------

@pytest.fixture
def tiny_model(monkeypatch):
    monkeypatch.setitem(ASSETS, "tiny-weights", Asset(
        name="tiny-weights", filename="tiny.pth", checkpoint_key="params",
        manual="test only", description="test weights"))
    monkeypatch.setitem(MODELS, "tiny", ModelSpec(
        name="tiny", arch="torch.nn:Conv2d", asset="tiny-weights",
        config={"in_channels": 3, "out_channels": 4, "kernel_size": 3}))
    return "tiny"


def test_create_model_from_file_and_synthetic(tmp_path, tiny_model):
    path = write_synthetic_checkpoint(tiny_model, tmp_path / "tiny.pth", seed=3)
    on_disk = torch.load(path, weights_only=True)
    expected = synthetic_state_dict(torch.nn.Conv2d(3, 4, 3), seed=3)
    assert list(on_disk) == ["params"]
    assert_same(on_disk["params"], expected)

    model = create_model(tiny_model, overrides={"tiny-weights": path})
    assert not model.training
    assert_same(model.state_dict(), expected)
    assert_same(create_model(tiny_model, synthetic_seed=3).state_dict(), expected)
    # Constructor overrides reach the architecture.
    assert create_model(tiny_model, synthetic_seed=3, bias=False).bias is None


def test_strict_mismatch_names_the_keys_and_file(tmp_path, tiny_model):
    state = synthetic_state_dict(torch.nn.Conv2d(3, 4, 3), seed=0)
    state["extra.weight"] = state.pop("bias")
    path = tmp_path / "wrong.pth"
    torch.save({"params": state}, path)
    with pytest.raises(CheckpointError) as info:
        create_model(tiny_model, overrides={"tiny-weights": path})
    message = str(info.value)
    for expected in (str(path), "missing keys: bias", "unexpected keys: extra.weight"):
        assert expected in message

    torch.save({"params": synthetic_state_dict(torch.nn.Conv2d(3, 5, 3), seed=0)}, path)
    with pytest.raises(CheckpointError, match=r"weight: file \(5, 3, 3, 3\), model \(4, 3, 3, 3\)"):
        create_model(tiny_model, overrides={"tiny-weights": path})


def test_old_batchnorm_files_without_num_batches_tracked(tmp_path, monkeypatch):
    monkeypatch.setitem(ASSETS, "bn-weights", Asset(name="bn-weights", filename="bn.pth"))
    monkeypatch.setitem(MODELS, "bn", ModelSpec(name="bn", arch="torch.nn:BatchNorm2d",
                                                asset="bn-weights", config={"num_features": 4}))
    state = synthetic_state_dict(torch.nn.BatchNorm2d(4), seed=0)
    del state["num_batches_tracked"]
    torch.save(state, tmp_path / "bn.pth")
    model = create_model("bn", overrides={"bn-weights": tmp_path / "bn.pth"})
    assert torch.equal(model.running_var, state["running_var"])


def test_unknown_names_and_non_weight_assets():
    with pytest.raises(VqfrError, match="unknown model 'nope'"):
        create_model("nope")
    with pytest.raises(VqfrError, match="npz data, not network weights"):
        load_asset_state_dict("niqe-params")


def test_numpy_statistics_files_load_safely(tmp_path):
    """The official FID statistics are a torch.save'd dict of numpy arrays written with numpy 1
    (``numpy.core`` names); they load without weights_only=False, and only on request."""
    stats = {"name": "FFHQ", "size": 256, "mean": np.arange(4, dtype=np.float32),
             "cov": np.eye(4)}
    path = tmp_path / "inception_FFHQ_512.pth"
    torch.save(stats, path, _use_new_zipfile_serialization=False)  # pickles in the clear
    raw = path.read_bytes()
    assert b"numpy._core.multiarray" in raw
    path.write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))

    loaded = load_checkpoint_file(path, allow_numpy=True)
    assert loaded["name"] == "FFHQ" and loaded["mean"].dtype == np.float32
    assert np.array_equal(loaded["cov"], stats["cov"])
    with pytest.raises(CheckpointError, match="numpy.core.multiarray._reconstruct"):
        load_checkpoint_file(path)
