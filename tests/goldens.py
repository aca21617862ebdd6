"""Helpers shared by the golden tests: reading the reference manifests and goldens
(../shared/reference/<family>/), building a model with the synthetic weights, comparing outputs
with the reference README's measures, and the metric goldens' input images.

Importable as ``goldens`` because pytest's default (prepend) import mode puts tests/ on sys.path.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

# VQFR v1 / v2 tolerances (README "VQFR v1 / v2"): images PSNR >= 90 dB and max|d| <= 5e-4 on the
# raw outputs, intermediates max|d| <= 1e-4. Both goldens are made from the same face.
IMAGE_MIN_PSNR_DB = 90.0
IMAGE_MAX_ABS = 5e-4
INTERMEDIATE_MAX_ABS = 1e-4
GOLDEN_FACE = "vqfr_00000052_lq.png"


def read_manifest(reference_dir: Path, family: str) -> dict:
    return json.loads((reference_dir / family / "manifest.json").read_text())


def read_golden(reference_dir: Path, family: str, file: str = "golden_seed1.pt") -> dict:
    return torch.load(reference_dir / family / file, weights_only=False)


def synthetic_model(model_cls: type[nn.Module], manifest: dict, synth_weights,
                    seed: int) -> nn.Module:
    """The default (official-config) model with the reference synthetic weights, loaded strictly."""
    net = model_cls().eval()
    net.load_state_dict(synth_weights.synth_state_dict(manifest, seed), strict=True)
    return net


def state_dict_layout(module: nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, dtype) of every state-dict entry, in order."""
    return [(key, tuple(t.shape), str(t.dtype).removeprefix("torch."))
            for key, t in module.state_dict().items()]


def manifest_layout(manifest: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """The manifest's (key, shape, dtype) list; entries without a dtype are float32."""
    return [(e["key"], tuple(e["shape"]), e.get("dtype", "float32")) for e in manifest["tensors"]]


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


@dataclass(frozen=True)
class GoldenComparison:
    psnr_db: float
    max_abs: float
    ok: bool

    def __str__(self) -> str:
        return f"PSNR {self.psnr_db:.1f} dB, max|d| {self.max_abs:.2e}"


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> float:
    """The reference README's PSNR of raw [-1, 1] outputs: 10 log10(1 / mean(((a - b) / 2)^2))."""
    mse = ((a.double() - b.double()) / 2).square().mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def compare_to_golden(actual: torch.Tensor, expected: torch.Tensor, max_abs: float = IMAGE_MAX_ABS,
                      min_psnr_db: float | None = IMAGE_MIN_PSNR_DB) -> GoldenComparison:
    diff = max_abs_diff(actual, expected)
    psnr = psnr_db(actual, expected)
    ok = diff <= max_abs and (min_psnr_db is None or psnr >= min_psnr_db)
    return GoldenComparison(psnr, diff, ok)


def assert_matches_golden(actual, expected, name, **tolerance) -> None:
    result = compare_to_golden(actual, expected, **tolerance)
    assert result.ok, f"{name}: {result} is outside the tolerance"


def prepare_face(path, size: int | None = None) -> torch.Tensor:
    """The official input preparation: cv2.imread BGR uint8 -> [INTER_AREA resize] -> RGB -> /255 ->
    (x - 0.5) / 0.5 -> 1 x 3 x H x W."""
    bgr = cv2.imread(str(path))
    if size is not None:
        bgr = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA)
    rgb = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255
    return ((rgb - 0.5) / 0.5).unsqueeze(0)


@functools.lru_cache(maxsize=1)
def golden_inputs(shared: str) -> tuple[dict, list[str], dict[str, torch.Tensor]]:
    """(golden json, names, {'face'|'blur'|'down': uint8 RGB 24x3x512x512}) built as the JSON
    describes, each array checked against its sha256 (BGR HWC bytes). Cached: the PSNR/SSIM,
    NIQE and FID tests share it."""
    shared = Path(shared)
    golden = json.loads((shared / "reference/metrics/metrics_golden_public.json").read_text())
    names = sorted(p.name for p in (shared / "faces").glob("*.png"))
    arrays = {"face": [], "blur": [], "down": []}
    for name in names:
        face = cv2.imread(str(shared / "faces" / name), cv2.IMREAD_UNCHANGED)
        h, w = face.shape[:2]
        small = cv2.resize(face, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
        made = {"face": face, "blur": cv2.GaussianBlur(face, (0, 0), 2),
                "down": cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)}
        for kind, bgr in made.items():
            expected = golden["inputs"][name][f"{kind}_sha256"]
            if hashlib.sha256(bgr.tobytes()).hexdigest() != expected:
                raise AssertionError(f"{kind} of {name} differs from the golden input")
            arrays[kind].append(bgr[:, :, ::-1])
    images = {k: torch.from_numpy(np.stack(v)).permute(0, 3, 1, 2).contiguous()
              for k, v in arrays.items()}
    return golden, names, images


def write_tiny_paired_set(faces_dir: Path, root: Path, count: int, size: int) -> Path:
    """``root/lq`` + ``root/hq`` from the first ``count`` real faces: HQ = the crop resized to
    size x size (INTER_AREA); LQ = HQ down to 8x8 and back up (INTER_CUBIC)."""
    (root / "lq").mkdir(parents=True)
    (root / "hq").mkdir()
    for face in sorted(faces_dir.glob("*.png"))[:count]:
        hq = cv2.resize(cv2.imread(str(face)), (size, size), interpolation=cv2.INTER_AREA)
        lq = cv2.resize(cv2.resize(hq, (8, 8), interpolation=cv2.INTER_AREA), (size, size),
                        interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(root / "hq" / face.name), hq)
        cv2.imwrite(str(root / "lq" / face.name), lq)
    return root


def spy(monkeypatch, owner, name: str, note=lambda *args, **kwargs: args) -> list:
    """Replace ``owner.name`` (a function or method) by one that records ``note(*args)`` of each
    call in the returned list, then calls through."""
    calls: list = []
    original = getattr(owner, name)

    def recorded(*args, **kwargs):
        calls.append(note(*args, **kwargs))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls
