"""Speed of LMD against the official one-image-at-a-time loop, measured in one run at equal values.

    python benchmarks/bench_lmd.py [--shared ../shared] [--pairs 8] [--batch-size 8]
                                   [--device cuda] [--threads N] [--repeats 3]

Pairs: the real faces of ``shared/faces`` as GT, their Gaussian-blurred copies (sigma 2) as the
restored images, decoded once beforehand (both sides time the work from uint8 pixels to LMD).
Weights: the synthetic AWing FAN (seed 1; the speed does not depend on the values).

- ours: ``vqfr.metrics.landmark.LMD`` on batches of ``--batch-size`` pairs (restored and GT
  batches through the network, border rules per image on the device);
- baseline: the official ``calculate_landmark_distance.py`` loop transcribed below: per pair,
  ``get_landmarks`` on the restored then the GT image (BGR resize, one-image forward, numpy
  ``calculate_points``), then ``get_landmark_distance``; same network module on the same device.
  Where the official code raises (synthetic weights make most faces do so), the loop catches it
  after the forward and goes on, so both sides run every detection.

The two give the same per-pair values (checked; pairs where the official code raises are
skipped by both). Prints ms per image (one landmark detection) and the ratio.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from vqfr.archs.awing import FAN
from vqfr.metrics.landmark import LMD
from vqfr.zoo.synthetic import synthetic_state_dict


# ---- baseline: the official get_landmarks / calculate_points, transcribed ---------------------
def official_calculate_points(heatmaps: np.ndarray) -> np.ndarray:
    batch, count, height, width = heatmaps.shape
    rows = np.arange(batch * count)
    heatline = heatmaps.reshape(batch, count, height * width)
    indexes = np.argmax(heatline, axis=2)
    preds = np.stack((indexes % width, indexes // width), axis=2).astype(np.float64)
    flat = indexes.ravel()
    heatline = heatline.reshape(batch * count, height * width)
    x_up = heatline[rows, flat + 1]          # IndexError at the last pixel, as the original
    x_down = heatline[rows, flat - 1]
    y_up = heatline[rows, 4095] if any(flat + width >= 4096) else heatline[rows, flat + width]
    y_down = heatline[rows, 0] if any(flat - width <= 0) else heatline[rows, flat - width]
    shift = np.sign(np.stack((x_up - x_down, y_up - y_down), axis=1)) * 0.25
    return preds + shift.reshape(batch, count, 2) + 0.5


@torch.no_grad()
def official_get_landmarks(net: FAN, bgr: np.ndarray, device: torch.device) -> np.ndarray:
    height, width = bgr.shape[:2]
    small = cv2.resize(bgr, (256, 256))[..., ::-1]
    x = torch.from_numpy(np.ascontiguousarray(small.transpose(2, 0, 1))).float().to(device)
    x = x.div_(255.0).unsqueeze_(0)
    heatmaps = net(x)[0][-1][:, :-1].detach().cpu().numpy()
    return official_calculate_points(heatmaps).reshape(-1, 2) * (width / 64, height / 64)


def official_loop(net: FAN, pairs: list[tuple[np.ndarray, np.ndarray]],
                  device: torch.device) -> list[float | None]:
    values = []
    for restored, gt in pairs:
        landmarks = []
        for image in (restored, gt):
            try:
                landmarks.append(official_get_landmarks(net, image, device))
            except IndexError:       # the official script stops here; the loop goes on
                landmarks.append(None)
        pred, ref = landmarks
        values.append(None if pred is None or ref is None else
                      float(np.sqrt(((ref - pred) ** 2).sum(1)).mean()))
    return values


# ---- ours ---------------------------------------------------------------------------------------
def ours(metric: LMD, pairs: list[tuple[np.ndarray, np.ndarray]], batch_size: int,
         device: torch.device) -> list[float | None]:
    metric.reset()
    # the GT landmarks kept from the last batch (shared by the methods of a run) would let a
    # repeat skip the GT detections: every timed pass detects both sides, as the loop does
    metric._reference_memo = None
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        restored, gt = (torch.from_numpy(np.stack([p[k][..., ::-1] for p in chunk]))
                        .permute(0, 3, 1, 2).to(device) for k in (0, 1))
        metric.update(restored, gt, torch.arange(start, start + len(chunk)))
    per_image = metric.compute().per_image
    return [per_image.get(i) for i in range(len(pairs))]


def timed(function, device: torch.device) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    result = function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, result


def read_pairs(faces_dir: Path, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(restored, GT) BGR pairs: the faces' Gaussian-blurred copies (sigma 2) and the faces."""
    pairs = []
    for path in sorted(faces_dir.glob("*.png"))[:count]:
        face = cv2.imread(str(path))
        pairs.append((cv2.GaussianBlur(face, (0, 0), 2), face))
    return pairs


def measure(pairs: list[tuple[np.ndarray, np.ndarray]], device: torch.device,
            batch_size: int = 8, repeats: int = 3) -> dict:
    """Both sides timed alternately, best of ``repeats``; raises SystemExit where the values
    differ. Returns ms per image (one landmark detection) of each and the ratio."""
    weights = synthetic_state_dict(FAN(), seed=1)
    metric = LMD(weights={"state_dict": weights}, device=device)
    net = metric.detector.net            # the very same module for the baseline
    ours(metric, pairs[:1], 1, device)   # warm-up (allocator, cuDNN autotuning)
    official_loop(net, pairs[:1], device)

    # alternated, best of each: on a shared machine both sides meet the same load
    t_ours = t_official = float("inf")
    for _ in range(repeats):
        seconds, values = timed(lambda: ours(metric, pairs, batch_size, device), device)
        t_ours = min(t_ours, seconds)
        seconds, expected = timed(lambda: official_loop(net, pairs, device), device)
        t_official = min(t_official, seconds)
    mismatch = [i for i, (a, b) in enumerate(zip(values, expected))
                if (a is None) != (b is None) or (a is not None and abs(a - b) > 1e-9)]
    if mismatch:
        raise SystemExit(f"values differ from the official loop for pairs {mismatch}")
    images = 2 * len(pairs)
    return {"pairs": len(pairs), "batch_size": batch_size, "repeats": repeats,
            "threads": torch.get_num_threads(),
            "pairs_without_value": sum(v is None for v in values),
            "ours_ms_per_image": 1e3 * t_ours / images,
            "official_ms_per_image": 1e3 * t_official / images,
            "speedup": t_official / t_ours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] /
                        "shared")
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3,
                        help="best of N timed runs of each side, alternated")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    row = measure(read_pairs(args.shared / "faces", args.pairs), device, args.batch_size,
                  args.repeats)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"LMD, {row['pairs']} pairs of 512x512 faces ({2 * row['pairs']} landmark "
          f"detections), {name}, {row['threads']} threads, best of {args.repeats}; "
          f"{row['pairs_without_value']} pairs without a value (official IndexError)")
    print(f"  ours, batch {args.batch_size}:  {row['ours_ms_per_image']:8.1f} ms per image")
    print(f"  official loop:     {row['official_ms_per_image']:8.1f} ms per image")
    print(f"  speed-up:          {row['speedup']:8.2f}x  (same values)")


if __name__ == "__main__":
    main()
