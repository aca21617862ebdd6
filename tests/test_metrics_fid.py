"""FID: the Inception port, the statistics, the Fréchet distance and the stats files, against the
official goldens (shared/reference/metrics) with synthetic Inception weights (seed 1)."""
from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch
from goldens import golden_inputs

from vqfr.errors import VqfrError
from vqfr.metrics.color import u8_to_minus1_1
from vqfr.metrics.fid import FID, feature_statistics, load_fid_stats
from vqfr.metrics.frechet import frechet_distance

KINDS = ("face", "blur", "down")


@pytest.fixture(scope="module")
def inputs(shared_dir):
    return golden_inputs(str(shared_dir))


@pytest.fixture(scope="module")
def fid_golden(reference_dir):
    return torch.load(reference_dir / "metrics/fid_features_public.pt", weights_only=False)


@pytest.fixture(scope="module")
def inception(reference_dir, synth_weights):
    from vqfr.archs.inception import FIDInceptionV3

    manifest = json.loads((reference_dir / "metrics/fid_inception_manifest.json").read_text())
    net = FIDInceptionV3()
    assert [e["key"] for e in manifest["tensors"]] == list(net.state_dict())
    net.load_state_dict(synth_weights.synth_state_dict(manifest, 1), strict=True)
    return net.eval()


@pytest.fixture(scope="module")
def blocks(inputs, inception):
    """Spatial means of blocks 0-2 and pool3 features of all 72 images: the one Inception pass
    of the session."""
    _, _, images = inputs
    out = {}
    with torch.inference_mode():
        for kind in KINDS:
            parts = [inception.blocks(u8_to_minus1_1(images[kind][i:i + 12]))
                     for i in range(0, 24, 12)]
            out[kind] = [torch.cat([p[b].mean((2, 3)) for p in parts]) for b in range(4)]
    return out


def test_resized_input(inputs, inception, fid_golden):
    x = inception.resize_input(u8_to_minus1_1(inputs[2]["face"][:1]))
    assert (x - fid_golden["resized_input_first_face"]).abs().max() <= 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_features_and_blocks(blocks, fid_golden, kind):
    assert (blocks[kind][3] - fid_golden["features"][kind]).abs().max() <= 1e-6
    for b in range(3):
        assert (blocks[kind][b] - fid_golden["block_means"][kind][b]).abs().max() <= 1e-5


def _fid_with_features(inception, reference, features_by_shard):
    metric = FID(reference=reference, model=inception)
    metric.merge_states([{"index": index, "features": feats,
                          "ref_index": torch.zeros(0, dtype=torch.long),
                          "ref_features": torch.zeros(0, 2048)}
                         for index, feats in features_by_shard])
    return metric


def test_fid_values_and_two_shard_merge(inputs, inception, blocks, fid_golden, tmp_path):
    golden = inputs[0]["fid"]["fid_sample_vs_real"]
    feats = {k: blocks[k][3].float() for k in KINDS}
    for kind in KINDS:  # the float32 mean, as np.mean of the float32 features
        mean = torch.from_numpy(feature_statistics(feats[kind].numpy())[0])
        assert mean.dtype == torch.float32
        assert (mean - fid_golden["mean"][kind]).abs().max() <= 1e-6
    mean, cov = feature_statistics(feats["face"].numpy())
    stats = tmp_path / "face_stats.pth"  # the official format: torch.save of numpy arrays
    torch.save({"name": "faces", "size": 256, "mean": mean, "cov": cov}, stats)
    index = torch.arange(24)
    for kind, key in (("blur", "blur_vs_face"), ("down", "down_vs_face")):
        single = _fid_with_features(inception, stats, [(index, feats[kind])])
        with pytest.warns(UserWarning, match="biased"):
            result = single.compute()
        assert result.value == pytest.approx(golden[key]["fid"], rel=1e-3)
        assert result.extra["count"] == 24 and "small_sample" in result.extra
        # Two shards, interleaved and out of order, give the same number bit for bit.
        odd, even = index % 2 == 1, index % 2 == 0
        shards = [(index[odd].flip(0), feats[kind][odd].flip(0)), (index[even], feats[kind][even])]
        merged = _fid_with_features(inception, stats, shards)
        with pytest.warns(UserWarning):
            assert merged.compute().value == result.value
    same = _fid_with_features(inception, stats, [(index, feats["face"])])
    with pytest.warns(UserWarning):
        assert abs(same.compute().value) <= 1e-9


def test_update_extracts_the_same_features(inputs, inception, blocks, tmp_path):
    _, _, images = inputs
    metric = FID(reference="gt", model=inception)
    metric.update(images["blur"][:2], images["face"][:2], torch.tensor([0, 1]))
    assert (metric.features - blocks["blur"][3][:2]).abs().max() <= 1e-6
    assert (metric.ref_features - blocks["face"][3][:2]).abs().max() <= 1e-6


def test_frechet_formula_cases(reference_dir, inputs):
    cases = torch.load(reference_dir / "metrics/fid_formula_cases.pt", weights_only=True)
    golden = inputs[0]["fid_formula"]["cases"]
    assert len(cases) == 6
    for name, case in cases.items():
        args = (case["mu1"].numpy(), case["sigma1"].numpy(), case["mu2"].numpy(),
                case["sigma2"].numpy())
        for method in ("eigh", "sqrtm"):
            value = frechet_distance(*args, method=method)
            if name.startswith("identical"):
                assert abs(value) <= 1e-9
            else:
                assert value == pytest.approx(golden[name]["fid"], rel=1e-6), (name, method)


def test_frechet_rejects_non_psd():
    sigma = np.diag([1.0, -1.0])
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), sigma)


def test_stats_files(tmp_path):
    mean, cov = np.arange(4, dtype=np.float32), np.eye(4)
    torch.save({"name": "x", "size": 256, "mean": mean, "cov": cov}, tmp_path / "s.pth")
    np.savez(tmp_path / "s.npz", mu=mean, sigma=cov)
    for path in (tmp_path / "s.pth", tmp_path / "s.npz"):
        m, c = load_fid_stats(path)
        assert m.dtype == np.float32 and np.array_equal(m, mean) and np.array_equal(c, cov)
    # Negative control: a pickle that would run code is refused, not executed.
    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"mean": mean, "cov": cov, "x": pickle.Unpickler}, handle, protocol=2)
    with pytest.raises(VqfrError, match="arbitrary pickled code"):
        load_fid_stats(tmp_path / "evil.pth")


def test_cli_fid_stats(inputs, inception, blocks, tmp_path):
    import cv2

    from vqfr.cli import main

    _, _, images = inputs
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        rgb = images["blur"][i].permute(1, 2, 0).numpy()
        cv2.imwrite(str(folder / f"{i:02d}.png"), np.ascontiguousarray(rgb[:, :, ::-1]))
    weights = tmp_path / "inception.pth"
    torch.save(inception.state_dict(), weights)
    out = tmp_path / "stats.pth"
    assert main(["fid-stats", str(folder), "-o", str(out), "--asset",
                 f"fid-inception={weights}", "--batch-size", "2"]) == 0
    stats = torch.load(out, weights_only=False)  # as the official script reads it
    assert set(stats) == {"name", "size", "mean", "cov"}
    mean, cov = feature_statistics(blocks["blur"][3][:3].numpy())
    assert np.abs(stats["mean"] - mean).max() <= 1e-6 and stats["mean"].dtype == np.float32
    assert np.abs(stats["cov"] - cov).max() <= 1e-9 and stats["cov"].dtype == np.float64


def test_kid_shares_fids_features_and_equals_its_definition(inputs, inception, blocks,
                                                            tmp_path, monkeypatch):
    """FID and KID in one collection: one Inception pass per batch for both (the network is
    shared, the features cached per batch); KID is the unbiased MMD^2 of those features."""
    from goldens import spy

    from vqfr.metrics.collection import MetricCollection
    from vqfr.metrics.kid import KID
    from vqfr.metrics.mmd import kid

    _, _, images = inputs
    weights = tmp_path / "inception.pth"
    torch.save(inception.state_dict(), weights)
    collection = MetricCollection(["fid", "kid"], options={"fid": {"reference": "gt"}},
                                  assets={"fid-inception": str(weights)})
    assert collection["fid"].net is collection["kid"].net
    calls = spy(monkeypatch, type(collection["fid"].net), "forward")
    restored, gt = images["blur"][:4], images["face"][:4]
    collection.update(restored, gt, torch.arange(4))
    assert len(calls) == 2                                   # restored + reference, once each
    result = collection["kid"].compute()
    expected = kid(blocks["blur"][3][:4].numpy(), blocks["face"][3][:4].numpy(), paired=True)
    assert result.value == pytest.approx(expected.value, rel=1e-4)
    assert result.extra["standard_error"] == pytest.approx(expected.standard_error, rel=1e-3)
    with pytest.raises(VqfrError, match="statistics file has none"):
        KID(reference=weights, model=inception)
    # two images a side: no value, and a warning that says why (was: a silent NaN)
    two = KID(model=inception)
    two.update(restored[:2], gt[:2], torch.arange(2))
    with pytest.warns(UserWarning, match="kid needs at least 3 images on each side, got 2 "
                                         "restored and 2 reference: no value"):
        assert math.isnan(two.compute().value)
