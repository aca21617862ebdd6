"""LMD and the AWing FAN against ../shared/reference/awing_fan/golden_seed1.pt (the official
``awing_arch.FAN`` + ``calculate_landmark_distance.py`` run on synthetic weights, seed 1).

Tolerances (reference README, "AWing FAN"): heatmaps and stacked intermediates max|d| <= 1e-5 *
max|golden|; landmarks exactly; LMD per pair and mean within 1e-9; ``calculate_points_cases``
exactly. The README's "mistakes" table is checked against these very comparisons at the end."""
from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from goldens import manifest_layout, read_golden, read_manifest, state_dict_layout

from vqfr.archs.awing import FAN
from vqfr.metrics import create_metric
from vqfr.metrics.landmark import LMD, heatmap_points, landmark_distance, network_input

RELATIVE_TOL = 1e-5
LMD_TOL = 1e-9


@pytest.fixture(scope="module")
def golden(reference_dir):
    return read_golden(reference_dir, "awing_fan")


@pytest.fixture(scope="module")
def weights(reference_dir, synth_weights):
    return synth_weights.synth_state_dict(read_manifest(reference_dir, "awing_fan"), 1)


@pytest.fixture(scope="module")
def weights_file(weights, tmp_path_factory):
    """The official file's layout: the weights under ``state_dict`` (synth_weights --wrap)."""
    path = tmp_path_factory.mktemp("awing") / "alignment_WFLW_4HG.pth"
    torch.save({"state_dict": weights}, path)
    return path


@pytest.fixture(scope="module")
def metric(weights):
    return LMD(weights={"state_dict": weights})


def bgr_to_rgb_tensor(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack([i[:, :, ::-1] for i in images])).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def faces(faces_dir, golden):
    """(GT, blurred) uint8 RGB 4 x 3 x 512 x 512, each BGR array checked against its sha256."""
    gt, blurred = [], []
    for i, name in enumerate(golden["faces"]):
        face = cv2.imread(str(faces_dir / name))
        blur = cv2.GaussianBlur(face, (0, 0), 2)
        assert hashlib.sha256(face.tobytes()).hexdigest() == golden["inputs"]["gt_bgr_sha256"][i]
        assert hashlib.sha256(blur.tobytes()).hexdigest() == golden["inputs"]["deg_bgr_sha256"][i]
        gt.append(face)
        blurred.append(blur)
    return bgr_to_rgb_tensor(gt), bgr_to_rgb_tensor(blurred)


@pytest.fixture(scope="module")
def nonsquare(faces_dir, golden):
    info = golden["nonsquare"]
    bgr = cv2.resize(cv2.imread(str(faces_dir / info["from_face"])), (384, 512),
                     interpolation=cv2.INTER_AREA)
    assert hashlib.sha256(bgr.tobytes()).hexdigest() == info["bgr_sha256"]
    return bgr_to_rgb_tensor([bgr])


@pytest.fixture(scope="module")
def forward(metric, golden):
    """One batched forward of the 8 golden network inputs, with the stem output kept."""
    net = metric.detector.net
    stem = []
    hook = net.conv4.register_forward_hook(lambda module, args, out: stem.append(out))
    x = torch.cat([golden["inputs"]["gt_input"], golden["inputs"]["deg_input"]])
    with torch.inference_mode():
        outputs, coords = net(x)
    hook.remove()
    return outputs, coords, stem[0]


def within(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    limit = RELATIVE_TOL * expected.abs().max().item()
    return (actual.double() - expected.double()).abs().max().item() <= limit


def both(golden, part: str, key: str) -> torch.Tensor:
    return torch.cat([golden[part][f"gt_{key}"], golden[part][f"deg_{key}"]])


# -- the network ------------------------------------------------------------------------------

def test_state_dict_is_the_official_layout(reference_dir, weights):
    manifest = read_manifest(reference_dir, "awing_fan")
    net = FAN()
    assert state_dict_layout(net) == manifest_layout(manifest)   # keys, shapes, dtypes, order
    assert sum(p.numel() for p in net.parameters()) == manifest["num_params"] == 24_153_036
    assert sum(b.numel() for b in net.buffers()) == manifest["num_buffer_elements"]
    net.load_state_dict(weights, strict=True)


def test_network_inputs_are_the_official_ones(faces, nonsquare, golden):
    """cv2.resize INTER_LINEAR of the uint8 RGB array, / 255: bit for bit the official input
    (BGR resize, then BGR->RGB), also for a non-square image."""
    gt, blurred = faces
    assert torch.equal(network_input(gt), golden["inputs"]["gt_input"])
    assert torch.equal(network_input(blurred), golden["inputs"]["deg_input"])
    assert torch.equal(network_input(nonsquare)[0], golden["nonsquare"]["input"])


def test_heatmaps_and_stacks_match_golden(forward, golden):
    outputs, coords, stem = forward
    assert within(outputs[-1][:, :98], both(golden, "outputs", "heatmaps"))
    boundary = both(golden, "intermediates", "boundary_heatmaps")
    for s in range(4):
        assert within(outputs[s][:, 98], boundary[:, s]), f"boundary heatmap of stack {s}"
    assert torch.equal(torch.stack([o[:, :98].flatten(2).argmax(2) for o in outputs], 1),
                       both(golden, "intermediates", "stack_argmax"))
    flat = [o[:, :98].flatten(1) for o in outputs]
    stats = torch.stack([torch.stack([f.mean(1), f.std(1), f.amin(1), f.amax(1)], 1)
                         for f in flat], 1)
    expected = both(golden, "intermediates", "stack_stats")
    for s in range(4):
        assert within(stats[:, s], expected[:, s]), f"statistics of stack {s}"
    masks = torch.stack([(o[:, 98].clamp(0, 1) > 0.05).flatten(1).sum(1) for o in outputs[:3]], 1)
    assert torch.equal(masks, both(golden, "intermediates", "boundary_mask_count"))
    detail = golden["intermediates"]
    assert within(outputs[0][0], detail["detail_stack0_output"])
    assert within(stem[0].mean((1, 2)), detail["detail_stem_channel_mean"])
    assert within(stem[0].flatten(1).std(1), detail["detail_stem_channel_std"])
    assert within(stem[0, :, :8, :8], detail["detail_stem_corner"])
    for s in range(4):   # the CoordConv channels are exact
        assert torch.equal(coords[s][0], detail["detail_coord_boundary_channels"][s])


# -- landmarks and LMD --------------------------------------------------------------------------

def assert_landmarks_equal(points, raises, expected, errors, argmax):
    for i, error in enumerate(errors):
        if error is None:
            assert raises[i] == -1 and np.array_equal(points[i], expected[i].numpy()), i
        else:   # the official IndexError: the first landmark whose argmax is the last pixel
            assert "IndexError" in error and torch.isnan(expected[i]).all()
            assert raises[i] == int((argmax[i] == 4095).nonzero()[0])


@pytest.fixture(scope="module")
def measured(metric, faces):
    """The 4 golden pairs through ``update`` in shuffled index order, with the landmarks the
    detector found for each side (restored first, then GT)."""
    gt, blurred = faces
    order = torch.tensor([2, 0, 3, 1])
    found = []
    detect = metric.detector.landmarks
    metric.detector.landmarks = lambda images: found.append(detect(images)) or found[-1]
    try:
        metric.reset()
        metric.update(blurred[order], gt[order], order)
    finally:
        del metric.detector.landmarks
    undo = torch.argsort(order).numpy()
    (deg_points, deg_raises), (gt_points, gt_raises) = found
    return (metric.compute(), (gt_points[undo], gt_raises[undo]),
            (deg_points[undo], deg_raises[undo]))


def test_landmarks_are_exactly_the_official_ones(measured, metric, nonsquare, golden):
    out = golden["outputs"]
    for (points, raises), side in zip(measured[1:], ("gt", "deg")):
        assert_landmarks_equal(points, raises, out[f"{side}_landmarks"], out[f"{side}_error"],
                               out[f"{side}_argmax"])
    heatmaps = metric.detector.heatmaps(nonsquare)
    assert within(heatmaps[0], golden["nonsquare"]["heatmaps"])
    points, raises = metric.detector.landmarks(nonsquare)    # scale (W/64, H/64) = (6, 8)
    assert raises[0] == -1 and golden["nonsquare"]["error"] is None
    assert np.array_equal(points[0], golden["nonsquare"]["landmarks"].numpy())


def test_lmd_per_pair_and_mean(measured, golden):
    """The Adele pair, where the official script raises, gets no value, is named with the
    reason and left out of the mean."""
    result = measured[0]
    expected = golden["outputs"]["lmd"].tolist()
    assert sorted(result.per_image) == [0, 1, 3]
    for i in (0, 1, 3):
        assert abs(result.per_image[i] - expected[i]) <= LMD_TOL
    assert abs(result.value - golden["outputs"]["lmd_mean_clean"]) <= LMD_TOL
    assert golden["faces"][2] == "gfpgan_Adele_crop.png"
    assert list(result.unmeasured) == [2] and "IndexError" in result.unmeasured[2]
    assert "restored image (landmark 79)" in result.unmeasured[2]
    assert "GT image (landmark 79)" in result.unmeasured[2]
    assert result.extra == {"count": 3, "unmeasured_count": 1}
    gt_points = measured[1][0]
    for pair in golden["extra_pairs"]:      # two different faces
        a, b = (golden["faces"].index(pair[k]) for k in ("gt", "restored"))
        assert abs(landmark_distance(gt_points[a], gt_points[b]) - pair["lmd"]) <= LMD_TOL


def test_states_merge_across_processes(metric, measured, faces):
    """Two shards' states merged (as ``sync`` does) equal one process's result bit for bit."""
    gt, blurred = faces
    parts = []
    for index in (torch.tensor([0, 2]), torch.tensor([3, 1])):
        metric.reset()
        metric.update(blurred[index], gt[index], index)
        parts.append({k: v.clone() for k, v in metric.states().items()})
    metric.reset()
    metric.merge_states(parts)
    merged, whole = metric.compute(), measured[0]
    assert merged.per_image == whole.per_image and merged.value == whole.value
    assert merged.unmeasured == whole.unmeasured


def test_the_gt_side_is_computed_once_per_batch_across_methods(metric, faces):
    """Methods of a run update LMD on the same GT batch in turn: the GT landmarks are kept
    for the last reference batch, so each further method costs only its restored side."""
    gt, blurred = faces
    forwards = []
    hook = metric.detector.net.register_forward_hook(lambda *args: forwards.append(1))
    metric.reset()
    for restored in (blurred[:1], gt[:1]):          # two "methods", one GT batch
        metric.update(restored, gt[:1], torch.tensor([0]))
    hook.remove()
    assert len(forwards) == 3


def test_registered_like_the_other_metrics(weights):
    from vqfr.metrics.registry import metric_class

    cls = metric_class("lmd")
    assert cls is LMD and cls.lower_is_better and cls.needs_reference
    assert cls.asset == "awing-fan"
    metric = create_metric("lmd", weights={"state_dict": weights})
    assert metric.options()["weights_sha256"] == "in-memory"
    assert dict(metric._reduce) == {"index": "cat", "values": "cat", "unmeasured_index": "cat",
                                    "unmeasured_landmark": "cat"}


# -- calculate_points ---------------------------------------------------------------------------

def case_heatmaps(cases, case) -> torch.Tensor:
    base = cases["base_heatmaps"]
    heatmaps = base.repeat(len(case.get("batch", [None])), 1, 1, 1).clone()
    flat = heatmaps.view(heatmaps.shape[0], 98, 4096)
    for b, k, i, value in case["edits"]:
        flat[b, k, i] = value
    return heatmaps


def test_calculate_points_cases(golden):
    cases = golden["calculate_points_cases"]
    for name, case in cases["cases"].items():
        points, raises = heatmap_points(case_heatmaps(cases, case))
        if name == "batch2_base_plus_bottom_row":
            continue
        if case["error"] is not None:
            assert "IndexError" in case["error"] and raises.tolist() == [0], name
        else:
            assert raises.tolist() == [-1] and np.array_equal(points, case["preds"].numpy()), name


def test_border_rules_hold_per_image(golden):
    """The official batched call couples images through its image-wide ``any``; ours does not:
    each image of the batch gets its one-image result, and the coupling reappears exactly when
    the two images are made one (their landmarks side by side)."""
    cases = golden["calculate_points_cases"]
    case = cases["cases"]["batch2_base_plus_bottom_row"]
    heatmaps = case_heatmaps(cases, case)
    points, raises = heatmap_points(heatmaps)
    assert raises.tolist() == [-1, -1]
    assert np.array_equal(points[0], cases["cases"]["base"]["preds"][0].numpy())
    assert np.array_equal(points[1], cases["cases"]["bottom_row"]["preds"][0].numpy())
    official = case["preds"].numpy()
    assert np.array_equal(points[1], official[1])
    assert (points[0] != official[0]).any(axis=1).sum() > 10   # coupled in the official batch
    coupled, _ = heatmap_points(heatmaps.reshape(1, 196, 64, 64))
    assert np.array_equal(coupled.reshape(2, 98, 2), official)


# -- through the CLI ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def folders(faces, golden, tmp_path_factory):
    """gt/ = the golden faces (PNG), restored/ = their blurred copies under other names."""
    root = tmp_path_factory.mktemp("lmd_folders")
    (root / "gt").mkdir()
    (root / "restored").mkdir()
    gt, blurred = faces
    for name, face, blur in zip(golden["faces"], gt, blurred):
        cv2.imwrite(str(root / "gt" / name), face.permute(1, 2, 0).numpy()[:, :, ::-1])
        cv2.imwrite(str(root / "restored" / name.replace(".png", "_00.png")),
                    blur.permute(1, 2, 0).numpy()[:, :, ::-1])
    return root


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vqfr", *args], capture_output=True, text=True,
                          **kwargs)


def test_metrics_command(folders, weights_file, golden, tmp_path):
    out = tmp_path / "lmd.json"
    done = cli("metrics", "--restored", str(folders / "restored"), "--gt", str(folders / "gt"),
               "--metrics", "lmd", "--asset", f"awing-fan={weights_file}", "--json", str(out),
               "--quiet")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    rows = {row["name"]: row for row in result["per_image"]}
    for name, expected in zip(golden["faces"], golden["outputs"]["lmd"].tolist()):
        row = rows[name.replace(".png", "_00")]
        if np.isnan(expected):
            assert "lmd" not in row
        else:
            assert abs(row["lmd"] - expected) <= LMD_TOL
    assert abs(result["metrics"]["lmd"] - golden["outputs"]["lmd_mean_clean"]) <= LMD_TOL
    info = result["options"]["lmd"]
    assert info["count"] == 3 and info["lower_is_better"] is True
    assert list(info["unmeasured"]) == ["gfpgan_Adele_crop_00"]
    assert info["options"]["weights_sha256"] == hashlib.sha256(
        weights_file.read_bytes()).hexdigest()
    assert "gfpgan_Adele_crop_00: no value" in done.stdout and "Traceback" not in done.stderr


def test_a_file_that_refuses_safe_loading_says_what_to_do(weights, folders, tmp_path):
    """A checkpoint holding more than tensors (here an argparse.Namespace beside the weights)
    is refused by weights_only=True; the message gives the one safe way around it, which then
    works as documented."""
    import argparse

    bad = tmp_path / "alignment_WFLW_4HG.pth"
    torch.save({"state_dict": weights, "args": argparse.Namespace(lr=1e-4)}, bad)
    done = cli("metrics", "--restored", str(folders / "restored"), "--gt", str(folders / "gt"),
               "--metrics", "lmd", "--asset", f"awing-fan={bad}", "--json",
               str(tmp_path / "x.json"), "--quiet")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "weights_only=True" in done.stderr and "--asset awing-fan=" in done.stderr
    assert not (tmp_path / "x.json").exists()
    command = next(line for line in done.stderr.splitlines() if "python -c" in line)
    subprocess.run(command.strip(), shell=True, cwd=tmp_path, check=True)
    from vqfr.metrics.landmark import load_awing_fan

    load_awing_fan(tmp_path / "alignment_WFLW_4HG_weights.pth")


def test_celeba_test_run_measures_lmd_by_default(faces, golden, weights_file, reference_dir,
                                                 synth_weights, tmp_path, monkeypatch):
    """``vqfr-eval --dataset celeba-test`` (its paper metrics) on 4 faces with the blurred copies
    as the LQ row: LMD is among them; assets not given here (LPIPS, FID) are skipped, not
    downloaded (a wrong file sits in the cache)."""
    from vqfr.cli import main
    from vqfr.zoo import ASSETS

    home = tmp_path / "home"
    for asset in ("lpips-vgg16", "fid-inception"):
        (home / "weights").mkdir(parents=True, exist_ok=True)
        (home / "weights" / ASSETS[asset].filename).write_bytes(b"not the official file")
    monkeypatch.setenv("VQFR_EVAL_HOME", str(home))
    root = tmp_path / "data" / "celeba-test"
    (root / "lq").mkdir(parents=True)
    (root / "hq").mkdir()
    gt, blurred = faces
    for name, face, blur in zip(golden["faces"], gt, blurred):
        cv2.imwrite(str(root / "hq" / name), face.permute(1, 2, 0).numpy()[:, :, ::-1])
        cv2.imwrite(str(root / "lq" / name), blur.permute(1, 2, 0).numpy()[:, :, ::-1])
    arcface = tmp_path / "resnet18_110.pth"
    torch.save(synth_weights.synth_state_dict(read_manifest(reference_dir, "arcface_resnet18"),
                                              1), arcface)
    out = tmp_path / "runs"
    code = main(["--dataset", "celeba-test", "--root", str(tmp_path / "data"), "--method", "lq",
                 "--out", str(out), "--quiet", "--asset", f"awing-fan={weights_file}",
                 "--asset", f"arcface-resnet18={arcface}", "--asset",
                 f"niqe-params={reference_dir / 'metrics' / 'niqe_pris_params.npz'}"])
    assert code == 0
    summary = json.loads((out / "celeba-test" / "lq" / "summary.json").read_text())
    assert {"lmd", "deg", "niqe", "psnr", "ssim"} <= set(summary["metrics"])
    assert {"lpips", "fid"} <= set(summary["skipped_metrics"])
    assert abs(summary["metrics"]["lmd"] - golden["outputs"]["lmd_mean_clean"]) <= LMD_TOL
    assert list(summary["metric_info"]["lmd"]["unmeasured"]) == ["gfpgan_Adele_crop"]
    log = (out / "log.txt").read_text()
    assert "lmd: 1 image(s) without a value" in log and "gfpgan_Adele_crop: no value" in log
    with open(out / "celeba-test" / "lq" / "per_image.csv") as f:
        rows = {row["name"]: row for row in csv.DictReader(f)}
    assert rows["gfpgan_Adele_crop"]["lmd"] == "" and rows["gfpgan_Adele_crop"]["psnr"]
    assert float(rows["codeformer_0478"]["lmd"]) == golden["outputs"]["lmd"][1].item()
    # the report shows LMD in the paper table's column, with the count it has no value for
    assert main(["report", str(out), "--spec", "vqfr_celeba_test", "-o",
                 str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert f"{summary['metrics']['lmd']:.3f}" in text
    assert "LMD: 3 images (1 without a value, left out of the mean" in text


# -- the README's mistakes are caught by the comparisons above ------------------------------

def test_the_comparisons_catch_the_documented_mistakes(faces, nonsquare, forward, golden):
    gt = faces[0]
    expected = golden["inputs"]["gt_input"]
    rgb = gt.permute(0, 2, 3, 1).numpy()

    def resized(interpolation, images=rgb):
        return torch.from_numpy(np.stack([cv2.resize(np.ascontiguousarray(a), (256, 256),
                                                     interpolation=interpolation)
                                          for a in images])).permute(0, 3, 1, 2).float() / 255
    for interpolation in (cv2.INTER_CUBIC, cv2.INTER_NEAREST):          # wrong resize
        assert not torch.equal(resized(interpolation), expected)
    square_area = resized(cv2.INTER_AREA)                               # equal at 512 ...
    assert torch.equal(square_area, expected)
    nonsquare_area = resized(cv2.INTER_AREA, nonsquare.permute(0, 2, 3, 1).numpy())
    assert not torch.equal(nonsquare_area[0], golden["nonsquare"]["input"])   # ... not here
    float_resize = torch.nn.functional.interpolate(gt.float() / 255, size=(256, 256),
                                                   mode="bilinear", align_corners=False)
    assert not torch.equal(float_resize, expected)                     # no uint8 rounding
    assert not torch.equal(network_input(gt.flip(1)), expected)         # BGR input
    assert not torch.equal(network_input(gt) * 2 - 1, expected)        # [-1, 1] input
    outputs = forward[0]
    heatmaps = both(golden, "outputs", "heatmaps")
    assert not within(outputs[-2][:, :98], heatmaps)                    # wrong stack
    # a missing border rule: the bottom/top-row cases move landmarks other than the edited one
    cases = golden["calculate_points_cases"]["cases"]
    base = cases["base"]["preds"][0]
    for name in ("bottom_row", "top_row", "index_64"):
        moved = (cases[name]["preds"][0] != base).any(1)
        assert moved[1:].sum() > 10, name
    # LMD itself is blind to some mistakes (+0.5 dropped shifts both sides alike), which is why
    # the landmarks are compared exactly (test_landmarks_are_exactly_the_official_ones)


def test_tf32_is_off_while_the_network_runs_on_cuda():
    """The scoped switch (flags only, so it is checked without a GPU): cuDNN convolutions in
    IEEE float32 inside, the previous setting back after, also after an error; and under every
    run policy, the policy's flags stay readable inside and after (a mix of torch's legacy and
    per-operator TF32 APIs makes the legacy getter raise)."""
    from vqfr.archs.awing import ieee_fp32_convolutions
    from vqfr.precision import PRECISIONS, precision, tf32_flags

    exact = {"cudnn_conv_tf32": False, "cuda_matmul_tf32": False}
    for policy in PRECISIONS:
        with precision(policy):
            before = tf32_flags()
            with ieee_fp32_convolutions(torch.device("cuda")):
                assert tf32_flags() == exact
            assert tf32_flags() == before
            with pytest.raises(RuntimeError, match="inside"), \
                    ieee_fp32_convolutions(torch.device("cuda")):
                raise RuntimeError("inside")
            assert tf32_flags() == before
            with ieee_fp32_convolutions(torch.device("cpu")):
                assert tf32_flags() == before
    with precision("official"):
        assert tf32_flags()["cudnn_conv_tf32"]      # PyTorch's default lets cuDNN use TF32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_landmarks_are_the_official_ones(faces, golden, weights):
    from vqfr.precision import tf32_flags

    before = tf32_flags()
    seen = []
    metric = LMD(weights={"state_dict": weights}, device="cuda")
    metric.detector.net.l3.register_forward_pre_hook(
        lambda *args: seen.append(tf32_flags()["cudnn_conv_tf32"]))
    out = golden["outputs"]
    for images, side in zip(faces, ("gt", "deg")):
        points, raises = metric.detector.landmarks(images.cuda())
        assert_landmarks_equal(points, raises, out[f"{side}_landmarks"], out[f"{side}_error"],
                               out[f"{side}_argmax"])
    assert seen == [False, False] and tf32_flags() == before
