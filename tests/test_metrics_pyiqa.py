"""The pyiqa bridge (NIQE end to end against pyiqa's golden values), offline weight handling, and
the collection's no-reference mode."""
from __future__ import annotations

import json
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from vqfr.errors import AssetUnavailable, VqfrError
from vqfr.metrics.collection import MetricCollection

pytest.importorskip("pyiqa", reason="pyiqa is the optional extra vqfr-eval[iqa]")
scipy_io = pytest.importorskip("scipy.io")


@pytest.fixture(scope="module")
def niqe_golden(reference_dir):
    golden = json.loads((reference_dir / "metrics" / "metrics_golden_public.json").read_text())
    return golden["niqe_pyiqa"]


@pytest.fixture(scope="module")
def niqe_mat(reference_dir, tmp_path_factory):
    """pyiqa's niqe_modelparameters.mat rebuilt from the official npz (README: same parameters)."""
    params = np.load(reference_dir / "metrics" / "niqe_pris_params.npz")
    path = tmp_path_factory.mktemp("pyiqa") / "niqe_modelparameters.mat"
    scipy_io.savemat(path, {"mu_prisparam": params["mu_pris_param"],
                            "cov_prisparam": params["cov_pris_param"]})
    return path


def test_metrics_package_does_not_import_pyiqa():
    code = ("import sys, vqfr.metrics, vqfr.metrics.collection, vqfr.metrics.identity, "
            "vqfr.metrics.lpips_vgg, vqfr.metrics.pyiqa_bridge; "
            "from vqfr.metrics import registry; registry.metric_class('pyiqa:niqe'); "
            "assert 'pyiqa' not in sys.modules, 'pyiqa imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_weights_fail_offline_with_guidance(tmp_path, monkeypatch):
    import pyiqa.utils.download_util as pyiqa_download

    from vqfr.metrics import create_metric

    cache = tmp_path / "pyiqa-cache"
    monkeypatch.setattr(pyiqa_download, "DEFAULT_CACHE_DIR", str(cache))
    with pytest.raises(AssetUnavailable) as error:
        create_metric("pyiqa:niqe")
    message = str(error.value)
    assert "niqe_modelparameters.mat" in message
    assert str(cache / "niqe_modelparameters.mat") in message and "weights=" in message
    assert not (cache / "niqe_modelparameters.mat").exists()


def test_niqe_ycbcr_matches_pyiqa_golden(faces_dir, niqe_golden, niqe_mat):
    """The JSON's niqe_pyiqa values are pyiqa 0.1.16's own output with these parameters on the
    decoded PNGs, so the bridge (uint8 RGB -> /255 -> pyiqa) must reproduce them to rounding."""
    names = sorted(niqe_golden["per_image"]["pyiqa_ycbcr"])[:3]
    images = torch.stack([torch.from_numpy(cv2.imread(str(faces_dir / n))[..., ::-1].copy())
                          .permute(2, 0, 1) for n in names])
    options = {"pyiqa:niqe": {"weights": niqe_mat, "color_space": "ycbcr"}}
    collection = MetricCollection(["pyiqa:niqe"], options=options, paired=False)
    order = torch.tensor([2, 0, 1])
    collection.update(images[order], None, order)
    result = collection.compute()["pyiqa:niqe"]
    expected = [niqe_golden["per_image"]["pyiqa_ycbcr"][n]["face"] for n in names]
    assert [result.per_image[i] for i in range(3)] == pytest.approx(expected, abs=1e-6)
    assert result.value == pytest.approx(np.mean(expected), abs=1e-6)
    assert collection.lower_is_better == {"pyiqa:niqe": True}
    assert collection.options()["pyiqa:niqe"]["color_space"] == "ycbcr"

    default = MetricCollection(["pyiqa:niqe"], options={"pyiqa:niqe": {"weights": niqe_mat}})
    default.update(images[:1], None, torch.tensor([0]))
    yiq = niqe_golden["per_image"]["pyiqa_default_yiq"][names[0]]["face"]
    assert default.compute()["pyiqa:niqe"].value == pytest.approx(yiq, abs=1e-6)
    assert abs(yiq - expected[0]) > 0.1  # the colour space option matters


def test_unpaired_collection_skips_or_refuses_full_reference(niqe_mat):
    names = ["lpips", "deg", "pyiqa:niqe"]
    options = {"pyiqa:niqe": {"weights": niqe_mat}}
    collection = MetricCollection(names, options=options, paired=False)
    assert list(collection) == ["pyiqa:niqe"]
    assert set(collection.skipped) == {"lpips", "deg"}
    assert "no ground truth" in collection.skipped["lpips"]
    with pytest.raises(VqfrError, match="lpips"):
        MetricCollection(names, options=options, paired=False, on_unpaired="error")
    with pytest.raises(ValueError, match="not in the collection"):
        MetricCollection(["pyiqa:niqe"], options={**options, "psnr": {}})


def test_full_reference_pyiqa_metric_needs_the_reference():
    assert "pyiqa:psnr" in MetricCollection(["pyiqa:psnr"], paired=False).skipped
    collection = MetricCollection(["pyiqa:psnr"])
    assert collection["pyiqa:psnr"].needs_reference and not collection.lower_is_better["pyiqa:psnr"]
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="no reference images"):
        collection.update(a, None, torch.tensor([0, 1]))
    collection.update(a, a.flip(0), torch.tensor([1, 0]))
    mse = ((a.double() - a.flip(0).double()) / 255).pow(2).mean(dim=(1, 2, 3))
    result = collection.compute()["pyiqa:psnr"]
    assert result.per_image[1] == pytest.approx(float(10 * torch.log10(1 / mse[0])), abs=1e-3)


def test_nothing_reaches_the_network_while_a_metric_is_built(tmp_path):
    from vqfr.metrics.pyiqa_bridge import _NetworkBlocked, _no_network

    with _no_network():
        with pytest.raises(_NetworkBlocked):
            torch.hub.load_state_dict_from_url("https://example.invalid/w.pth",
                                               model_dir=str(tmp_path))
        with pytest.raises(_NetworkBlocked):
            socket.create_connection(("127.0.0.1", 9), timeout=1)
    assert not list(tmp_path.iterdir())
