"""Identity metrics (Deg., IDS) and the ArcFace network against the ArcFace golden."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
import torch

from vqfr.archs.arcface import ResNetArcFace
from vqfr.metrics.collection import MetricCollection
from vqfr.metrics.identity import (
    Deg,
    IdentityEmbedder,
    angle_degrees,
    arcface_input,
    cosine_float32,
    load_arcface,
    png_gray,
)

# README "ArcFace identity network": tolerances against golden_seed1.pt
EMB_TOL, DEG_TOL, MEAN_TOL = 3e-4, 2e-3, 1e-3


@pytest.fixture(scope="module")
def golden(reference_dir):
    return torch.load(reference_dir / "arcface_resnet18" / "golden_seed1.pt", weights_only=False)


@pytest.fixture(scope="module")
def arcface_synthetic(reference_dir, synth_weights):
    manifest = json.loads((reference_dir / "arcface_resnet18" / "manifest.json").read_text())
    return synth_weights.synth_state_dict(manifest, 1)  # keys carry the 'module.' prefix


@pytest.fixture(scope="module")
def weights_file(arcface_synthetic, tmp_path_factory):
    path = tmp_path_factory.mktemp("arcface") / "resnet18_110.pth"
    torch.save(arcface_synthetic, path)
    return path


def read_rgb(path) -> torch.Tensor:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1)


def test_png_gray_is_opencv_png_decoder_gray(faces_dir):
    paths = sorted(faces_dir.glob("*.png")) + sorted(faces_dir.glob("holdout/*.png"))
    assert len(paths) >= 24
    differs_from_cvtcolor = 0
    for path in paths:
        expected = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        rgb = read_rgb(path)
        assert np.array_equal(png_gray(rgb[None])[0].numpy(), expected), path.name
        cvt = cv2.cvtColor(rgb.permute(1, 2, 0).numpy(), cv2.COLOR_RGB2GRAY)
        differs_from_cvtcolor += not np.array_equal(cvt, expected)
    assert differs_from_cvtcolor > len(paths) // 2  # the test tells the two conversions apart


def test_golden_grays_and_network_inputs(faces_dir, golden):
    inputs = golden["inputs"]
    for i, name in enumerate(golden["faces"]):
        gray = png_gray(read_rgb(faces_dir / name)[None])
        assert torch.equal(gray[0], inputs["gt_gray512_uint8"][i])
        assert torch.equal(arcface_input(gray), inputs["gt_128"][i:i + 1])
    assert torch.equal(arcface_input(inputs["deg_gray512_uint8"]), inputs["deg_128"])


def test_network_per_pair_batches_match_golden(golden, arcface_synthetic):
    """The official call: each pair [gt, degraded] as one batch, eval mode."""
    net = load_arcface(arcface_synthetic)
    assert sum(p.numel() for p in net.parameters()) == 25_627_081
    with torch.inference_mode():
        out = torch.stack([net(torch.stack([gt, deg])) for gt, deg in
                           zip(golden["inputs"]["gt_128"], golden["inputs"]["deg_128"])])
    emb_gt, emb_deg = out[:, 0], out[:, 1]
    assert (emb_gt - golden["outputs"]["emb_gt"]).abs().max() <= EMB_TOL
    assert (emb_deg - golden["outputs"]["emb_deg"]).abs().max() <= EMB_TOL
    deg = angle_degrees(cosine_float32(emb_gt.numpy(), emb_deg.numpy()))
    assert np.abs(deg - golden["outputs"]["deg"].numpy()).max() <= DEG_TOL
    # All 8 images in one batch (what IdentityEmbedder does): BatchNorm is in eval mode, only the
    # conv/GEMM rounding changes (measured 5.2e-5, README: honest variants <= 5.2e-5).
    with torch.inference_mode():
        batched = net(torch.cat([golden["inputs"]["gt_128"], golden["inputs"]["deg_128"]]))
    assert (batched - torch.cat([emb_gt, emb_deg])).abs().max() <= 1e-4


def test_strict_loading(arcface_synthetic):
    partial = {k: v for k, v in arcface_synthetic.items() if "bn5.running_var" not in k}
    with pytest.raises(Exception, match="bn5.running_var"):
        load_arcface(partial)
    assert set(ResNetArcFace().state_dict()) == {k.removeprefix("module.")
                                                  for k in arcface_synthetic}


def test_deg_and_ids_through_collection(faces_dir, golden, weights_file):
    """End to end from RGB uint8: the 4 golden pairs plus face 0 against itself, all in one batch
    in shuffled index order. The degraded images are JPEG-decoded greys, so they enter as
    R = G = B, which the PNG grey conversion maps back to the same grey exactly."""
    faces = torch.stack([read_rgb(faces_dir / n) for n in golden["faces"]])
    degraded = golden["inputs"]["deg_gray512_uint8"][:, None].expand(-1, 3, -1, -1)
    restored = torch.cat([degraded, faces[:1]])
    reference = torch.cat([faces, faces[:1]])
    order = torch.tensor([3, 0, 4, 2, 1])

    collection = MetricCollection(["deg", "ids"], options={"deg": {"weights": weights_file},
                                                           "ids": {"weights": weights_file}})
    embedder = collection["deg"].embedder
    assert collection["ids"].embedder is embedder
    calls = []
    handle = embedder.net.register_forward_hook(lambda *args: calls.append(1))
    collection.update(restored[order], reference[order], order)
    handle.remove()
    assert len(calls) == 1  # one forward for both metrics
    results = collection.compute()

    deg, ids = results["deg"], results["ids"]
    expected = golden["outputs"]["deg"].tolist()
    assert list(deg.per_image) == [0, 1, 2, 3, 4]
    assert max(abs(deg.per_image[i] - e) for i, e in enumerate(expected)) <= DEG_TOL
    # Self pair: golden 0. A float32 cosine one ulp below 1 is already 0.0198 deg (arccos is
    # ill-conditioned at 1), which is why the protocol calls pairs under 1 deg identical.
    assert golden["outputs"]["deg_self_pair"].item() == 0.0 and deg.per_image[4] < 0.02
    expected.append(deg.per_image[4])
    assert abs(deg.value - golden["metrics"]["deg_mean_with_self_pair"]) <= MEAN_TOL
    assert abs(deg.value - golden["metrics"]["deg_mean"]) <= MEAN_TOL
    assert deg.extra["identical_count"] == golden["metrics"]["identical_count_with_self_pair"] == 1
    assert deg.extra["mean_including_identical"] == pytest.approx(sum(expected) / 5, abs=MEAN_TOL)

    golden_cos = cosine_float32(golden["outputs"]["emb_gt"].numpy(),
                                golden["outputs"]["emb_deg"].numpy()).tolist() + [1.0]
    assert max(abs(ids.per_image[i] - c) for i, c in enumerate(golden_cos)) <= 1e-6
    assert ids.value == pytest.approx(np.mean(golden_cos), abs=1e-6)
    assert collection.lower_is_better == {"deg": True, "ids": False}
    assert collection.options()["deg"]["exclude_identical"] is True


def test_exclude_identical_option(arcface_synthetic):
    rng = np.random.default_rng(0)
    a = torch.from_numpy(rng.integers(0, 256, (2, 3, 64, 64), dtype=np.uint8))
    b = a.clone()
    b[1] = torch.from_numpy(rng.integers(0, 256, (3, 64, 64), dtype=np.uint8))
    kept = IdentityEmbedder.shared(arcface_synthetic)
    metric = Deg(weights=arcface_synthetic, exclude_identical=False)
    assert metric.embedder is kept
    metric.update(b, a, torch.tensor([0, 1]))
    result = metric.compute()
    assert result.per_image[0] == 0.0 and result.per_image[1] >= 1.0
    assert result.value == pytest.approx(result.per_image[1] / 2)
    assert result.extra["mean_excluding_identical"] == pytest.approx(result.per_image[1])


# -- Deg. on JPEG files: the decoder's own grey, as cv2.imread(path, 0) reads it ----------------

def official_cosines(net, gt_paths, restored_paths) -> np.ndarray:
    """calculate_cos_dist.py: cv2.imread(path, 0) of both, each pair [gt, restored] as a batch,
    float32 cosine (Deg. = angle_degrees of it)."""
    cosines = []
    with torch.inference_mode():
        for gt, restored in zip(gt_paths, restored_paths):
            gray = torch.from_numpy(np.stack([cv2.imread(str(p), 0) for p in (gt, restored)]))
            emb = net(arcface_input(gray)).numpy()
            cosines.append(cosine_float32(emb[:1], emb[1:])[0])
    return np.array(cosines, dtype=np.float32)


@pytest.fixture(scope="module")
def jpeg_folders(faces_dir, golden, tmp_path_factory):
    """gt/ = the golden faces (PNG); jpeg/ = their degraded copies as the golden's JPEG bytes."""
    root = tmp_path_factory.mktemp("jpeg_results")
    (root / "gt").mkdir()
    (root / "jpeg").mkdir()
    for name, data in zip(golden["faces"], golden["inputs"]["deg_jpeg_bytes"]):
        (root / "gt" / name).write_bytes((faces_dir / name).read_bytes())
        (root / "jpeg" / name.replace(".png", ".jpg")).write_bytes(data.numpy().tobytes())
    return root


def test_the_loader_gives_a_jpegs_own_grey(jpeg_folders, golden):
    from vqfr.data.images import read_image_and_gray

    differs = 0
    for i, name in enumerate(golden["faces"]):
        path = jpeg_folders / "jpeg" / name.replace(".png", ".jpg")
        rgb, _, gray = read_image_and_gray(path)
        assert np.array_equal(gray, cv2.imread(str(path), 0))
        assert np.array_equal(gray, golden["inputs"]["deg_gray512_uint8"][i].numpy())
        converted = png_gray(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0].numpy()
        differs += not np.array_equal(converted, gray)
    assert differs == 3     # all but the face that is grey itself (Julia Roberts)
    png = next((jpeg_folders / "gt").iterdir())
    rgb, _, gray = read_image_and_gray(png)
    assert gray is None and np.array_equal(rgb, read_rgb(png).permute(1, 2, 0).numpy())


def test_deg_on_jpeg_files_is_the_official_value(jpeg_folders, golden, weights_file,
                                                 arcface_synthetic, tmp_path):
    """``vqfr-eval metrics`` with JPEG results (then JPEG ground truth): the official per-pair
    values of calculate_cos_dist.py, which reads every file with cv2.imread(path, 0)."""
    from vqfr.cli import main

    net = load_arcface(arcface_synthetic)
    names = golden["faces"]
    gt_paths = [jpeg_folders / "gt" / n for n in names]
    jpeg_paths = [jpeg_folders / "jpeg" / n.replace(".png", ".jpg") for n in names]
    official = angle_degrees(official_cosines(net, gt_paths, jpeg_paths))
    assert np.abs(official - golden["outputs"]["deg"].numpy()).max() <= DEG_TOL
    for restored, gt in (("jpeg", "gt"), ("gt", "jpeg")):
        out = tmp_path / f"{restored}.json"
        assert main(["metrics", "--restored", str(jpeg_folders / restored), "--gt",
                     str(jpeg_folders / gt), "--metrics", "deg", "--asset",
                     f"arcface-resnet18={weights_file}", "--json", str(out), "--quiet"]) == 0
        rows = {r["name"]: r["deg"] for r in json.loads(out.read_text())["per_image"]}
        ours = np.array([rows[n.removesuffix(".png")] for n in names])
        assert np.abs(ours - official).max() <= DEG_TOL, (restored, ours - official)
    # the grey converted from the decoded colour pixels is measurably another number
    converted = []
    with torch.inference_mode():
        for gt, jpeg in zip(gt_paths, jpeg_paths):
            gray = png_gray(torch.stack([read_rgb(gt), read_rgb(jpeg)]))
            emb = net(arcface_input(gray)).numpy()
            converted.append(angle_degrees(cosine_float32(emb[:1], emb[1:]))[0])
    assert np.abs(np.array(converted) - official).max() > 5 * DEG_TOL     # 0.011 deg


def test_runs_with_jpeg_results_measure_their_own_grey(jpeg_folders, faces_dir, golden,
                                                       weights_file, arcface_synthetic, tmp_path):
    """A run with ``folder:`` JPEG results gives the official Deg.; IDS added on a rerun, from
    the results read back through the run's cache, is the official cosine too."""
    from vqfr.cli import main

    names = golden["faces"]
    cosines = official_cosines(load_arcface(arcface_synthetic),
                               [jpeg_folders / "gt" / n for n in names],
                               [jpeg_folders / "jpeg" / n.replace(".png", ".jpg") for n in names])
    expected = {n.removesuffix(".png"): {"deg": d, "ids": c}
                for n, d, c in zip(names, angle_degrees(cosines), cosines)}
    data = tmp_path / "set"
    for sub in ("lq", "hq"):
        (data / sub).mkdir(parents=True)
        for name in names:
            (data / sub / name).write_bytes((faces_dir / name).read_bytes())
    args = ["run", "--dataset", str(data), "--method", f"folder:{jpeg_folders / 'jpeg'}",
            "--out", str(tmp_path / "runs"), "--quiet", "--asset",
            f"arcface-resnet18={weights_file}"]
    for metrics, tolerance in (("deg", {"deg": DEG_TOL}), ("deg,ids", {"ids": 1e-6})):
        assert main([*args, "--metrics", metrics]) == 0
        method_dir = next((tmp_path / "runs" / "set").iterdir())
        with open(method_dir / "per_image.csv") as f:
            for row in csv.DictReader(f):
                for metric, tol in tolerance.items():
                    assert abs(float(row[metric]) - expected[row["name"]][metric]) <= tol
