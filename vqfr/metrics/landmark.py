"""LMD: landmark distance between restored and GT faces (VQFR and CodeFormer CelebA-Test tables).

Protocol of TencentARC/VQFR ``metric_paper/calculate_landmark_distance.py`` (AWing FAN
``get_landmarks``, checkpoint ``alignment_WFLW_4HG.pth``), per image:

1. ``cv2.resize(img, (256, 256))`` (INTER_LINEAR) on the uint8 image. OpenCV resizes each
   channel alone, so resizing our RGB array equals the official BGR resize followed by BGR->RGB.
2. RGB, float32, / 255: the input is in [0, 1] (the script's "[-1, 1]" comment is wrong).
3. The last stack's 98 landmark heatmaps (64 x 64; the boundary channel 98 is dropped).
4. ``calculate_points``: argmax over the flattened 4096 values (first maximum wins), x = idx % 64,
   y = idx // 64; x moves by 0.25 * sign(h[idx+1] - h[idx-1]) in *flat* indices (so across row
   ends, and idx 0 reads h[4095]); y by 0.25 * sign(h[idx+64] - h[idx-64]), except for two rules
   over the whole image: if any landmark lies in the bottom row, h[4095] replaces h[idx+64] for
   all of them; if any has idx - 64 <= 0, h[0] replaces h[idx-64] for all. Then + 0.5.
5. x times W / 64 and y times H / 64 (original size), float64.

LMD of a pair = mean over the 98 landmarks of the Euclidean distance (float64); the value is the
mean over pairs. Two departures, both where the official script is wrong rather than the
protocol: pairs match by file stem (the script zips two sorted globs), and the border rules
hold per image (the script runs one image at a time; in a batch its ``any`` would couple them).
Where the official code raises (an argmax at flat index 4095 makes ``h[idx+1]`` an IndexError
and stops the script), the pair gets no value: it is reported with the reason
(``MetricResult.unmeasured``), left out of the mean and counted.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from vqfr.archs.awing import FAN, HEATMAP_SIZE, INPUT_SIZE
from vqfr.metrics.base import Metric, MetricResult, check_images, ordered_rows
from vqfr.metrics.weights import Weights, metric_state_dict

ASSET = "awing-fan"
LAST_PIXEL = HEATMAP_SIZE * HEATMAP_SIZE - 1

UNSAFE_FILE_HINT = """\
The AWing file may hold more than its weights under 'state_dict' (download lists give the
published file as about 185 MB; the weights are 96.8 MB), and this suite loads checkpoints only
with weights_only=True, which never runs code from a file. The one safe way around it: in a separate Python process, and only
for a file you trust (the facexlib release or the VQFR Google Drive folder), keep the weights once:
  python -c "import torch; c = torch.load('alignment_WFLW_4HG.pth', map_location='cpu', \
weights_only=False); torch.save({'state_dict': c['state_dict']}, 'alignment_WFLW_4HG_weights.pth')"
then pass --asset awing-fan=alignment_WFLW_4HG_weights.pth (its sha256 is recorded with LMD)."""


def load_awing_fan(weights: Weights = None,
                   assets: Mapping[str, str] | None = None) -> tuple[FAN, str]:
    """The FAN loaded strictly (eval mode) and the sha256 of the file used (``"in-memory"`` for
    a state dict given as such). ``weights``: a checkpoint path, a (wrapped) state dict, or None
    for the ``awing-fan`` asset (``--asset`` overrides in ``assets``)."""
    from vqfr.zoo import resolve_asset, sha256_file
    from vqfr.zoo.checkpoint import UnsafeCheckpointError, load_into

    path = None
    if not isinstance(weights, Mapping):       # a file: its sha256 is recorded with LMD
        path = Path(weights) if weights is not None else resolve_asset(ASSET, assets).path
    try:
        state, origin = metric_state_dict(ASSET, weights if path is None else path)
    except UnsafeCheckpointError as exc:
        raise UnsafeCheckpointError(f"{exc}\n{UNSAFE_FILE_HINT}") from None
    digest = "in-memory" if path is None else sha256_file(path)
    model = FAN()
    load_into(model, state, origin)
    return model.eval().requires_grad_(False), digest


def network_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 B x 3 x H x W RGB -> float32 B x 3 x 256 x 256 in [0, 1] (CPU), as
    ``get_landmarks`` prepares it: OpenCV's uint8 INTER_LINEAR resize, then / 255."""
    arrays = images.permute(0, 2, 3, 1).cpu().numpy()
    small = np.stack([cv2.resize(np.ascontiguousarray(a), (INPUT_SIZE, INPUT_SIZE),
                                 interpolation=cv2.INTER_LINEAR) for a in arrays])
    return torch.from_numpy(small).permute(0, 3, 1, 2).float().div_(255.0)


def heatmap_points(heatmaps: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The official ``calculate_points`` on B x N x 64 x 64 heatmaps, with its border rules
    applied per image. Returns (float64 B x N x 2 (x, y) in heatmap cells, + 0.5 included;
    int64 B: the first landmark whose argmax is the last pixel, where the official code
    raises IndexError, else -1). Runs on the heatmaps' device; the few numbers come to the CPU."""
    batch, count, height, width = heatmaps.shape
    cells = height * width
    flat = heatmaps.reshape(batch, count, cells)
    index = flat.argmax(dim=2)          # the first maximum, as numpy's

    def at(i: torch.Tensor) -> torch.Tensor:
        return flat.gather(2, i.clamp(0, cells - 1).unsqueeze(2)).squeeze(2)

    x_up, x_down = at(index + 1), at((index - 1) % cells)    # idx 0: numpy's h[-1] = h[4095]
    bottom = (index + width >= cells).any(dim=1, keepdim=True)
    top = (index - width <= 0).any(dim=1, keepdim=True)
    y_up = torch.where(bottom, flat[:, :, cells - 1], at(index + width))
    y_down = torch.where(top, flat[:, :, 0], at(index - width))
    sign = torch.sign(torch.stack((x_up - x_down, y_up - y_down), dim=2))
    at_last = index == cells - 1
    raises = torch.where(at_last.any(dim=1), at_last.int().argmax(dim=1), -1)
    grid = torch.stack((index % width, index // width), dim=2)
    points = grid.cpu().double().numpy() + sign.cpu().double().numpy() * 0.25 + 0.5
    return points, raises.cpu().numpy().astype(np.int64)


def landmark_distance(gt: np.ndarray, restored: np.ndarray) -> float:
    """``get_landmark_distance``: mean Euclidean distance over the landmarks, numpy float64."""
    return float(np.sqrt(((gt - restored) ** 2).sum(1)).mean())


class LandmarkDetector:
    """The AWing FAN with the official ``get_landmarks`` protocol, batched."""

    def __init__(self, weights: Weights = None, device: str | torch.device = "cpu",
                 assets: Mapping[str, str] | None = None) -> None:
        self.device = torch.device(device)
        net, self.weights_sha256 = load_awing_fan(weights, assets)
        self.net = net.to(self.device)

    @torch.inference_mode()
    def heatmaps(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 B x 3 x H x W RGB -> float32 B x 98 x 64 x 64 (on the detector's device)."""
        return self.net.landmark_heatmaps(network_input(images).to(self.device))

    def landmarks(self, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(float64 B x 98 x 2 (x, y) in original pixels, int64 B: the landmark at the last
        heatmap pixel where the official code raises, else -1)."""
        height, width = images.shape[-2:]
        points, raises = heatmap_points(self.heatmaps(images))
        return points * np.array([width / HEATMAP_SIZE, height / HEATMAP_SIZE]), raises


def unmeasured_reason(restored_landmark: int, reference_landmark: int) -> str:
    where = " and ".join(f"in the {side} (landmark {k})" for k, side in
                         ((restored_landmark, "restored image"), (reference_landmark, "GT image"))
                         if k >= 0)
    return (f"no value: a landmark heatmap peaks at its last pixel (flat index {LAST_PIXEL}) "
            f"{where}, where the official calculate_points raises IndexError")


class LMD(Metric):
    """Mean landmark distance in pixels between restored and GT images (lower is better)."""

    name: ClassVar[str] = "lmd"
    lower_is_better: ClassVar[bool] = True
    needs_reference: ClassVar[bool] = True
    asset: ClassVar[str] = ASSET

    def __init__(self, weights: Weights = None, device: str | torch.device = "cpu",
                 assets: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.detector = LandmarkDetector(weights, device, assets)
        self.add_state("index", torch.zeros(0, dtype=torch.long), reduce="cat")
        self.add_state("values", torch.zeros(0, dtype=torch.float64), reduce="cat")
        # images without a value: index, and the landmark at the last pixel (restored, GT; -1)
        self.add_state("unmeasured_index", torch.zeros(0, dtype=torch.long), reduce="cat")
        self.add_state("unmeasured_landmark", torch.zeros(0, 2, dtype=torch.long), reduce="cat")
        # (uint8 reference batch, its landmarks): the methods of a run go through the data in
        # lockstep, so the GT side is computed once per batch for all of them
        self._reference_memo: tuple[torch.Tensor, tuple[np.ndarray, np.ndarray]] | None = None

    def _reference_landmarks(self, reference: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        memo = self._reference_memo
        if memo is not None and memo[0].shape == reference.shape and torch.equal(
                memo[0], reference.to(memo[0].device)):
            return memo[1]
        landmarks = self.detector.landmarks(reference)
        self._reference_memo = (reference.detach().clone(), landmarks)
        return landmarks

    def update(self, restored: torch.Tensor, reference: torch.Tensor | None = None,
               index: torch.Tensor | None = None) -> None:
        if reference is None:
            raise ValueError("lmd needs the reference (ground-truth) images")
        if index is None:
            raise ValueError("lmd: update() needs the global image indices")
        check_images(restored, reference, self.name)
        points, raises = self.detector.landmarks(restored)
        gt_points, gt_raises = self._reference_landmarks(reference)
        index = index.detach().cpu().long()
        measured = (raises < 0) & (gt_raises < 0)
        values = [landmark_distance(g, p) for g, p, ok in zip(gt_points, points, measured) if ok]
        keep = torch.from_numpy(measured)
        self.index = torch.cat([self.index, index[keep]])
        self.values = torch.cat([self.values, torch.tensor(values, dtype=torch.float64)])
        self.unmeasured_index = torch.cat([self.unmeasured_index, index[~keep]])
        failed = torch.from_numpy(np.stack([raises, gt_raises], axis=1))[~keep]
        self.unmeasured_landmark = torch.cat([self.unmeasured_landmark, failed])

    def compute(self) -> MetricResult:
        index, values = ordered_rows(self.index, self.values)
        failed_index, failed = ordered_rows(self.unmeasured_index, self.unmeasured_landmark)
        per_image = dict(zip(index.tolist(), values.tolist()))
        # the script's sum(list) / len(list), in image order
        mean = sum(per_image.values()) / len(per_image) if per_image else float("nan")
        unmeasured = {i: unmeasured_reason(*pair) for i, pair in zip(failed_index.tolist(),
                                                                      failed.tolist())}
        return MetricResult(value=mean, per_image=per_image, unmeasured=unmeasured,
                            extra={"count": len(per_image), "unmeasured_count": len(unmeasured)})

    def options(self) -> dict[str, Any]:
        return {"network": "AWing FAN, 4 stacks, last stack", "input": "cv2.resize 256 "
                "INTER_LINEAR uint8, RGB / 255", "border_rules": "per image",
                "weights_sha256": self.detector.weights_sha256}
