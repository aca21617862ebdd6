"""The CelebA-Test-style synthetic degradation (GFPGAN / VQFR ``FFHQDegradationDataset``).

Steps, in order, on the BGR float32 [0, 1] image (facts from TencentARC/VQFR
``vqfr/data/ffhq_degradation_dataset.py`` and ``degradations.py``, shared/reference/README.md
"CelebA-Test degradation"):

1. blur: ``gaussian_kernel`` (41x41 on the grid -20..20, iso or aniso, normalised to sum 1),
   ``cv2.filter2D`` (BORDER_REFLECT_101);
2. ``downsample``: ``cv2.resize`` to ``(int(w // s), int(h // s))``, INTER_LINEAR;
3. ``add_noise``: per-channel Gaussian noise ``float32(randn) * sigma / 255``, clip to [0, 1];
4. ``jpeg``: encode ``clip(x) * 255`` rounded to uint8 at an **int** quality (the official code
   passes a float, which OpenCV >= 4.5.4 rejects; we draw the same uniform float and truncate it
   like a C cast), decode, / 255;
5. ``cv2.resize`` back to (w, h), INTER_LINEAR;
6. gfpgan config only: colour shift (p 0.3), greyscale (p 0.01), torchvision colour jitter (p 0.3);
7. ``clamp(round(x * 255), 0, 255)``, RGB uint8.

Randomness: the official code draws from the global ``random``/``np.random`` state of a data
loader worker, so its draws cannot be replayed. Here every image gets its own
``numpy.random.RandomState`` seeded from (seed, file stem) (``image_rng``), so a set synthesised
in any order, or in shards, is identical. The kernel type is drawn from that state too.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from vqfr.data.images import list_images, read_image, write_png_atomic
from vqfr.errors import VqfrError


@dataclass(frozen=True)
class DegradationConfig:
    """Ranges from the training ymls (``datasets.train``)."""
    kernel_size: int = 41
    iso_prob: float = 0.5                                   # kernel_list iso/aniso, prob 0.5/0.5
    blur_sigma: tuple[float, float] = (0.1, 10.0)
    downsample_range: tuple[float, float] = (0.8, 8.0)
    noise_range: tuple[float, float] = (0.0, 20.0)
    jpeg_range: tuple[float, float] = (60.0, 100.0)
    color_jitter_prob: float | None = None
    color_jitter_shift: float = 20.0
    gray_prob: float | None = None
    color_jitter_pt_prob: float | None = None


CONFIGS = {
    # options/train/VQFR/train_vqfr_v1_B16_200K.yml
    "vqfr-v1": DegradationConfig(),
    # options/train/VQFR/train_vqfr_v2_B16_200K.yml
    "vqfr-v2": DegradationConfig(blur_sigma=(1.0, 15.0), downsample_range=(1.0, 30.0),
                                 jpeg_range=(30.0, 90.0)),
    # TencentARC/GFPGAN options/train_gfpgan_v1.yml
    "gfpgan": DegradationConfig(color_jitter_prob=0.3, gray_prob=0.01, color_jitter_pt_prob=0.3),
}

# torchvision colour jitter ranges used by FFHQDegradationDataset.color_jitter_pt
_PT_JITTER = {"brightness": (0.5, 1.5), "contrast": (0.5, 1.5), "saturation": (0.0, 1.5),
              "hue": (-0.1, 0.1)}


@dataclass(frozen=True)
class DegradationParams:
    kernel: str                        # "iso" | "aniso"
    sigma_x: float
    sigma_y: float
    theta: float
    scale: float
    noise_sigma: float                 # on the 0..255 scale
    jpeg_quality: int
    color_shift: tuple[float, float, float] | None = None   # BGR, on the 0..1 scale
    gray: bool = False
    pt_jitter: tuple[tuple[str, float], ...] | None = None  # (op, factor) in application order


def image_rng(seed: int, stem: str) -> np.random.RandomState:
    """The random state for one image: a function of (seed, stem) only."""
    entropy = int.from_bytes(hashlib.sha256(f"{seed}/{stem}".encode()).digest(), "little")
    return np.random.RandomState(np.random.MT19937(np.random.SeedSequence(entropy)))


def sample_params(config: DegradationConfig, rng: np.random.RandomState) -> DegradationParams:
    iso = rng.uniform() < config.iso_prob
    sigma_x = rng.uniform(*config.blur_sigma)
    sigma_y, theta = (sigma_x, 0.0) if iso else (rng.uniform(*config.blur_sigma),
                                                 rng.uniform(-math.pi, math.pi))
    scale = rng.uniform(*config.downsample_range)
    noise_sigma = rng.uniform(*config.noise_range)
    quality = int(rng.uniform(*config.jpeg_range))
    color_shift = gray = pt_jitter = None
    if config.color_jitter_prob is not None and rng.uniform() < config.color_jitter_prob:
        shift = config.color_jitter_shift / 255.0
        color_shift = tuple(float(v) for v in rng.uniform(-shift, shift, 3).astype(np.float32))
    gray = bool(config.gray_prob) and rng.uniform() < config.gray_prob
    if config.color_jitter_pt_prob is not None and rng.uniform() < config.color_jitter_pt_prob:
        ops = list(_PT_JITTER)
        pt_jitter = tuple((ops[i], float(rng.uniform(*_PT_JITTER[ops[i]])))
                          for i in rng.permutation(4))
    return DegradationParams("iso" if iso else "aniso", float(sigma_x), float(sigma_y),
                             float(theta), float(scale), float(noise_sigma), quality,
                             color_shift, bool(gray), pt_jitter)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None,
                    theta: float = 0.0) -> np.ndarray:
    """Bivariate Gaussian on the integer grid -(size//2)..size//2, normalised to sum 1 (float64).
    ``sigma_y=None`` is the isotropic kernel; otherwise the covariance is
    R(theta) diag(sigma_x^2, sigma_y^2) R(theta)^T."""
    half = size // 2
    axis = np.arange(-half, half + 1, dtype=np.float64)
    xx, yy = np.meshgrid(axis, axis)
    if sigma_y is None:
        cov = np.diag([sigma_x ** 2, sigma_x ** 2])
    else:
        rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
        cov = rot @ np.diag([sigma_x ** 2, sigma_y ** 2]) @ rot.T
    inv = np.linalg.inv(cov)
    quad = inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy
    kernel = np.exp(-0.5 * quad)
    return kernel / kernel.sum()


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    return cv2.filter2D(img, -1, kernel)


def downsample(img: np.ndarray, scale: float) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (int(w // scale), int(h // scale)), interpolation=cv2.INTER_LINEAR)


def gaussian_noise(rng: np.random.RandomState, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """``np.float32(randn(*shape)) * sigma / 255``, as ``generate_gaussian_noise`` (colour)."""
    return np.float32(rng.randn(*shape)) * sigma / 255.0


def add_noise(img: np.ndarray, noise: np.ndarray) -> np.ndarray:
    return np.clip(img + noise, 0, 1)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip of a BGR float image in [0, 1] (channel order matters for YCbCr)."""
    u8 = np.clip(np.rint(np.clip(img, 0, 1) * 255.0), 0, 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", u8, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return np.float32(cv2.imdecode(encoded, cv2.IMREAD_COLOR)) / 255.0


def upsample(img: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    return cv2.resize(img, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_LINEAR)


def _pt_jitter(rgb: np.ndarray, ops: tuple[tuple[str, float], ...]) -> np.ndarray:
    import torch
    from torchvision.transforms import functional as tvf
    adjust = {"brightness": tvf.adjust_brightness, "contrast": tvf.adjust_contrast,
              "saturation": tvf.adjust_saturation, "hue": tvf.adjust_hue}
    tensor = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    for op, factor in ops:
        tensor = adjust[op](tensor, factor)
    return tensor.numpy().transpose(1, 2, 0)


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(np.round(rgb * np.float32(255.0)), 0, 255).astype(np.uint8)


def degrade(hq_rgb: np.ndarray, params: DegradationParams, noise: np.ndarray) -> np.ndarray:
    """uint8 RGB HQ -> uint8 RGB LQ with fixed draws; ``noise`` has the downsampled shape."""
    img = np.ascontiguousarray(hq_rgb[:, :, ::-1]).astype(np.float32) / 255.0
    h, w = img.shape[:2]
    kernel = gaussian_kernel(41, params.sigma_x,
                             None if params.kernel == "iso" else params.sigma_y, params.theta)
    img = downsample(blur(img, kernel), params.scale)
    img = jpeg(add_noise(img, noise), params.jpeg_quality)
    img = upsample(img, (h, w))
    if params.color_shift is not None:
        img = np.clip(img + np.asarray(params.color_shift, np.float32), 0, 1)
    if params.gray:
        img = np.repeat(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None], 3, axis=2)
    rgb = np.ascontiguousarray(img[:, :, ::-1])
    if params.pt_jitter:
        rgb = _pt_jitter(rgb, params.pt_jitter)
    return to_uint8(rgb)


def degrade_image(hq_rgb: np.ndarray, config: DegradationConfig, seed: int,
                  stem: str) -> tuple[np.ndarray, DegradationParams]:
    """Draw the parameters and the noise for (seed, stem) and degrade."""
    rng = image_rng(seed, stem)
    params = sample_params(config, rng)
    h, w = hq_rgb.shape[:2]
    shape = (int(h // params.scale), int(w // params.scale), 3)
    return degrade(hq_rgb, params, gaussian_noise(rng, shape, params.noise_sigma)), params


def synthesize(hq_dir: str | os.PathLike, out_dir: str | os.PathLike, *, seed: int = 0,
               config: str = "vqfr-v1", shard: tuple[int, int] = (0, 1)) -> list[str]:
    """Write ``out/hq/<stem>.png`` (the HQ image as PNG), ``out/lq/<stem>.png`` and
    ``out/params/<stem>.json`` for shard ``k`` of ``n`` (every n-th file by name). Returns the
    stems written."""
    if config not in CONFIGS:
        raise VqfrError(f"unknown degradation config {config!r}; choose from {', '.join(CONFIGS)}")
    index, count = shard
    if not 0 <= index < count:
        raise VqfrError(f"bad shard {index}/{count}")
    files = list_images(hq_dir)
    if not files:
        raise VqfrError(f"{hq_dir}: no image files")
    clashes = [s for s, n in Counter(p.stem for p in files).items() if n > 1]
    if clashes:
        raise VqfrError(f"{hq_dir}: several files share the name(s) {', '.join(sorted(clashes))}")
    out = Path(out_dir)
    written = []
    for path in files[index::count]:
        hq = read_image(path)
        lq, params = degrade_image(hq, CONFIGS[config], seed, path.stem)
        write_png_atomic(out / "hq" / f"{path.stem}.png", hq)
        write_png_atomic(out / "lq" / f"{path.stem}.png", lq)
        (out / "params").mkdir(parents=True, exist_ok=True)
        record = {"source": path.name, "seed": seed, "config": config, **asdict(params)}
        (out / "params" / f"{path.stem}.json").write_text(json.dumps(record) + "\n")
        written.append(path.stem)
    return written
