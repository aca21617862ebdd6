"""A real 2-process torch.distributed run (gloo, CPU): every metric that can run with synthetic
weights, 5 images sharded unevenly over 2 ranks; after ``sync()`` each rank's ``compute()`` must
equal the single-process result exactly (per image and aggregate)."""
from __future__ import annotations

import datetime
import json
import socket

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vqfr.metrics.collection import MetricCollection

WORLD_SIZE = 2
SIZE = 192  # NIQE needs at least two 96-px blocks per side


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def shard(rank: int, count: int) -> torch.Tensor:
    """DistributedSampler-style strided shard: rank 0 gets 3 images of 5, rank 1 gets 2."""
    return torch.arange(rank, count, WORLD_SIZE)


def worker(rank: int, port: int, names: list[str], options: dict, data: dict, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD_SIZE, timeout=datetime.timedelta(seconds=120))
    try:
        metrics = MetricCollection(names, options=options)
        index = shard(rank, len(data["restored"]))
        metrics.update(data["restored"][index], data["reference"][index], index)
        metrics.sync()
        torch.save(metrics.compute(), f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def metric_setup(reference_dir, synth_weights, tmp_path_factory):
    """(names, options): every metric of the suite, with synthetic weights (FID against the
    reference images given to ``update``, so its states hold both feature sets)."""
    folder = tmp_path_factory.mktemp("weights")
    vgg = json.loads((reference_dir / "metrics" / "vgg16_features_manifest.json").read_text())
    arcface = json.loads((reference_dir / "arcface_resnet18" / "manifest.json").read_text())
    torch.save(synth_weights.synth_state_dict(vgg, 1), folder / "vgg16.pth")
    torch.save(synth_weights.synth_state_dict(arcface, 1), folder / "arcface.pth")
    inception = json.loads((reference_dir / "metrics" / "fid_inception_manifest.json").read_text())
    torch.save(synth_weights.synth_state_dict(inception, 1), folder / "inception.pth")
    wanted = {
        "psnr": {}, "ssim": {},
        "niqe": {"weights": str(reference_dir / "metrics" / "niqe_pris_params.npz")},
        "lpips": {"weights": str(folder / "vgg16.pth")},
        "deg": {"weights": str(folder / "arcface.pth")},
        "ids": {"weights": str(folder / "arcface.pth")},
        "fid": {"weights": str(folder / "inception.pth"), "reference": "gt"},
    }
    return list(wanted), wanted


def _to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def images(faces_dir):
    paths = sorted(faces_dir.glob("*.png"))[:5]
    reference = [cv2.resize(cv2.imread(str(p))[..., ::-1], (SIZE, SIZE),
                            interpolation=cv2.INTER_AREA) for p in paths]
    restored = [cv2.GaussianBlur(im, (0, 0), 1.5) for im in reference]
    return {"restored": _to_tensor(restored), "reference": _to_tensor(reference)}


@pytest.mark.slow
def test_two_process_sync_equals_single_process(metric_setup, images, tmp_path):
    names, options = metric_setup
    assert {"psnr", "ssim", "niqe", "lpips", "deg", "ids", "fid"} <= set(names)
    out = str(tmp_path / "result")
    mp.spawn(worker, args=(free_port(), names, options, images, out), nprocs=WORLD_SIZE,
             join=True)

    # Single process: the same per-rank batches, fed in the opposite order, with the workers'
    # thread count (CPU kernels may sum in another order with more threads; under synthetic
    # weights FID is ~1e-8 and sees that).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = MetricCollection(names, options=options)
        for rank in reversed(range(WORLD_SIZE)):
            index = shard(rank, 5)
            single.update(images["restored"][index], images["reference"][index], index)
        expected = single.compute()
    finally:
        torch.set_num_threads(threads)

    for rank in range(WORLD_SIZE):
        results = torch.load(f"{out}.{rank}", weights_only=False)
        assert list(results) == names
        for name in names:
            assert results[name].per_image == expected[name].per_image, (rank, name)
            if expected[name].per_image is not None:
                assert list(results[name].per_image) == [0, 1, 2, 3, 4]
            assert results[name].value == expected[name].value, (rank, name)
            assert results[name].extra == expected[name].extra, (rank, name)
