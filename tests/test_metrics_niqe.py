"""NIQE against the official metric_paper values (shared/reference/metrics)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from goldens import golden_inputs

from vqfr.metrics.niqe import NIQE

PICKED = [0, 3, 7, 11, 15, 19]  # per-image checks on a subset keep the suite fast


@pytest.fixture(scope="module")
def inputs(shared_dir):
    return golden_inputs(str(shared_dir))


@pytest.fixture(scope="module")
def params(reference_dir):
    return reference_dir / "metrics" / "niqe_pris_params.npz"


@pytest.mark.parametrize("kind", ["face", "blur", "down"])
def test_official_mode_per_image(inputs, params, kind):
    golden, names, images = inputs
    metric = NIQE(weights=params)
    metric.update(images[kind][PICKED], index=torch.tensor(PICKED))
    result = metric.compute()
    for i in PICKED:
        expected = golden["niqe_official"]["per_image"][names[i]][kind]
        assert abs(result.per_image[i] - expected) <= 1e-3, (kind, names[i])
    assert metric.options()["mode"] == "official"


def test_official_mode_means_all_faces(inputs, params):
    golden, _, images = inputs
    for kind in ("face", "blur", "down"):
        metric = NIQE(weights=params)
        for start in range(0, 24, 8):
            metric.update(images[kind][start:start + 8], index=torch.arange(start, start + 8))
        assert abs(metric.compute().value - golden["niqe_official"]["mean"][kind]) <= 1e-3


def test_torch_mode_mean(inputs, params):
    """The float64 torch path: within 0.03 of the official mean (and 0.15 per image)."""
    golden, names, images = inputs
    metric = NIQE(mode="torch", weights=params)
    metric.update(images["down"][PICKED], index=torch.tensor(PICKED))
    result = metric.compute()
    expected = [golden["niqe_official"]["per_image"][names[i]]["down"] for i in PICKED]
    assert abs(result.value - float(np.mean(expected))) <= 0.03
    assert max(abs(result.per_image[i] - e) for i, e in zip(PICKED, expected)) <= 0.15
    assert metric.options()["mode"] == "torch"


def test_two_shard_merge_and_order(inputs, params):
    _, _, images = inputs
    crops = images["face"][:3, :, 100:292, 100:292]  # 192x192: 4 blocks, fast
    single = NIQE(weights=params)
    single.update(crops, index=torch.tensor([0, 1, 2]))
    shards = [NIQE(weights=params), NIQE(weights=params)]
    shards[0].update(crops[2:], index=torch.tensor([2]))
    shards[1].update(crops[:2], index=torch.tensor([0, 1]))
    merged = NIQE(weights=params)
    merged.merge_states([s.states() for s in shards])
    assert merged.compute().per_image == single.compute().per_image


def test_rejects_small_images(params):
    with pytest.raises(ValueError, match="at least 96x96"):
        NIQE(weights=params).per_image(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
