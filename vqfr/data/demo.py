"""``vqfr-eval datasets demo``: an offline paired set for smoke runs.

The HQ images are cartoon faces drawn with OpenCV (head, hair, eyes, brows, nose, mouth, soft
shading and fine texture), deterministic per (seed, index), 512x512, so nothing is downloaded and
the file list and pixels are the same everywhere. The LQ images are their CelebA-Test-style
degradations (``synthesize`` with the ``vqfr-v1`` ranges). The numbers measured on them say
nothing about a method; the set only exercises the whole pipeline.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from vqfr.data.datasets import data_root
from vqfr.data.degradation import synthesize
from vqfr.data.images import make_staging_dir, write_png_atomic
from vqfr.errors import VqfrError

DEMO_NAME = "demo"


def draw_face(seed: int, index: int, size: int = 512) -> np.ndarray:
    """One procedural face, uint8 size x size x 3 RGB."""
    rng = np.random.default_rng([seed, index])
    s = size / 512.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    top, bottom = rng.uniform(60, 230, 3), rng.uniform(30, 200, 3)
    img = (top * (1 - yy[..., None]) + bottom * yy[..., None]).astype(np.float32)

    skin = np.array([rng.uniform(150, 240), rng.uniform(110, 200), rng.uniform(80, 170)])
    hair = rng.uniform(10, 120, 3)
    cx, cy = size // 2 + int(rng.integers(-12, 13) * s), int(270 * s)
    face_w, face_h = int(rng.uniform(135, 160) * s), int(rng.uniform(175, 200) * s)

    cv2.ellipse(img, (cx, cy - int(40 * s)), (face_w + int(25 * s), face_h), 0, 180, 360,
                hair.tolist(), -1, cv2.LINE_AA)
    cv2.rectangle(img, (cx - face_w - int(25 * s), cy - int(40 * s)),
                  (cx + face_w + int(25 * s), cy + int(120 * s)), hair.tolist(), -1)
    cv2.rectangle(img, (cx - int(45 * s), cy + int(120 * s)), (cx + int(45 * s), size),
                  (skin * 0.85).tolist(), -1)
    cv2.ellipse(img, (cx, cy), (face_w, face_h), 0, 0, 360, skin.tolist(), -1, cv2.LINE_AA)
    shade = np.exp(-(((xx * size - cx) / face_w) ** 2 + ((yy * size - cy) / face_h) ** 2))
    img *= (0.75 + 0.25 * shade)[..., None]

    eye_y, eye_dx = cy - int(25 * s), int(rng.uniform(50, 62) * s)
    iris = rng.uniform(20, 140, 3).tolist()
    for side in (-1, 1):
        ex = cx + side * eye_dx
        cv2.ellipse(img, (ex, eye_y), (int(26 * s), int(13 * s)), 0, 0, 360, (245, 245, 240), -1,
                    cv2.LINE_AA)
        cv2.circle(img, (ex, eye_y), int(10 * s), iris, -1, cv2.LINE_AA)
        cv2.circle(img, (ex, eye_y), int(4 * s), (10, 10, 10), -1, cv2.LINE_AA)
        cv2.circle(img, (ex + int(3 * s), eye_y - int(3 * s)), max(1, int(2 * s)),
                   (255, 255, 255), -1, cv2.LINE_AA)
        cv2.ellipse(img, (ex, eye_y - int(26 * s)), (int(30 * s), int(9 * s)), 0, 190, 350,
                    (hair * 0.8).tolist(), max(1, int(5 * s)), cv2.LINE_AA)
    nose = np.array([[cx, eye_y + int(10 * s)], [cx - int(14 * s), cy + int(45 * s)],
                     [cx + int(10 * s), cy + int(48 * s)]], np.int32)
    cv2.polylines(img, [nose], False, (skin * 0.7).tolist(), max(1, int(3 * s)), cv2.LINE_AA)
    mouth_y, smile = cy + int(95 * s), int(rng.uniform(8, 22) * s)
    lips = (rng.uniform(120, 200), rng.uniform(40, 90), rng.uniform(50, 100))
    cv2.ellipse(img, (cx, mouth_y), (int(40 * s), smile), 0, 0, 180, lips, max(2, int(7 * s)),
                cv2.LINE_AA)

    img = cv2.GaussianBlur(img, (0, 0), 1.2 * s)
    img += rng.normal(0, 3.0, img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_demo(out: str | os.PathLike | None = None, *, root: str | os.PathLike | None = None,
              count: int = 8, seed: int = 0, force: bool = False) -> Path:
    """Write the demo set to ``out`` (default ``<data root>/demo``) with ``lq/`` and ``hq/``."""
    target = Path(out) if out is not None else data_root(root) / DEMO_NAME
    if target.exists() and any(target.iterdir()) and not force:
        raise VqfrError(f"{target} already exists and is not empty; pass --force to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = make_staging_dir(target.parent, f".{target.name}.demo-")
    try:
        faces = staging / "faces"
        for index in range(count):
            write_png_atomic(faces / f"demo_{index:03d}.png", draw_face(seed, index))
        synthesize(faces, staging, seed=seed, config="vqfr-v1")
        shutil.rmtree(faces)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
