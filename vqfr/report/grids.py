"""Image grids: LQ | each method | GT for selected images, with zoomed crops of the eyes and the
mouth, written as small PNGs beside index.html (file names are ours, never the image stems).

Crops use fixed boxes: the test sets are aligned like FFHQ (the facexlib 5-point template at 512:
eyes at (193, 240) and (319, 240), mouth corners at (201, 371) and (313, 371)), so the eyes and the
mouth sit at the same place in every face. The boxes are fractions of the image size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from vqfr.data.images import read_image, write_png_atomic
from vqfr.errors import ImageError
from vqfr.report.runs import MethodRun
from vqfr.report.specs import metric_label

# (x0, y0, x1, y1) as fractions of width/height, for FFHQ-aligned faces.
CROP_BOXES = {
    "eyes": (140 / 512, 200 / 512, 372 / 512, 280 / 512),
    "mouth": (176 / 512, 330 / 512, 336 / 512, 412 / 512),
}
THUMB_SIZE = 256


@dataclass
class Tile:
    caption: str
    image: str | None                          # path relative to index.html
    crops: dict[str, str] = field(default_factory=dict)


@dataclass
class GridRow:
    stem: str
    reasons: list[str]                         # e.g. "best PSNR (31.20)"
    tiles: list[Tile]


def select_images(run: MethodRun, metrics: list[str]) -> dict[str, list[str]]:
    """stem -> reasons: the best, median and worst image of ``run`` for every metric it has a
    per-image value for (by the metric's direction)."""
    chosen: dict[str, list[str]] = {}
    for metric in metrics:
        values = run.per_image_values(metric)
        lower = run.lower_is_better(metric)
        if not values or lower is None:
            continue
        ordered = sorted(values, key=lambda s: (values[s], s), reverse=not lower)
        picks = {"best": ordered[0], "median": ordered[len(ordered) // 2], "worst": ordered[-1]}
        for which, stem in picks.items():
            chosen.setdefault(stem, []).append(
                f"{which} {metric_label(metric)} ({values[stem]:.4g})")
    return chosen


def _write_tile(image_path: Path | None, out_dir: Path, key: str) -> tuple[str | None, dict]:
    """Thumbnail and crops of one image; (None, {}) when there is no image or it is unreadable
    (the grid then says "not available": a report shows what exists)."""
    if image_path is None:
        return None, {}
    try:
        image = read_image(image_path)
    except ImageError:
        return None, {}
    h, w = image.shape[:2]
    scale = THUMB_SIZE / max(h, w)
    thumb = image if scale >= 1 else cv2.resize(image, (round(w * scale), round(h * scale)),
                                                interpolation=cv2.INTER_AREA)
    write_png_atomic(out_dir / f"{key}.png", thumb)
    crops = {}
    for name, (x0, y0, x1, y1) in CROP_BOXES.items():
        crop = image[round(y0 * h):round(y1 * h), round(x0 * w):round(x1 * w)]
        write_png_atomic(out_dir / f"{key}_{name}.png", np.ascontiguousarray(crop))
        crops[name] = f"{out_dir.name}/{key}_{name}.png"
    return f"{out_dir.name}/{key}.png", crops


def _has_references(chosen: dict[str, list[str]],
                    references: dict[str, tuple[Path | None, Path | None]]) -> tuple[bool, bool]:
    refs = [references.get(stem, (None, None)) for stem in chosen]
    return any(lq for lq, _ in refs), any(gt for _, gt in refs)


def grid_columns(runs: list[MethodRun], chosen: dict[str, list[str]],
                 references: dict[str, tuple[Path | None, Path | None]]) -> list[str]:
    """LQ | each method | GT; LQ or GT left out when no chosen image has one (unpaired sets)."""
    has_lq, has_gt = _has_references(chosen, references)
    return ["LQ"] * has_lq + [run.label for run in runs] + ["GT"] * has_gt


def build_grid(runs: list[MethodRun], chosen: dict[str, list[str]],
               references: dict[str, tuple[Path | None, Path | None]], out_dir: Path,
               prefix: str) -> list[GridRow]:
    """Write the tiles of every chosen stem under ``out_dir`` (``prefix`` keeps the file names of
    several grids apart) and return the rows, in the order of ``grid_columns``.
    ``references``: stem -> (LQ path, GT path)."""
    has_lq, has_gt = _has_references(chosen, references)
    rows = []
    for i, (stem, reasons) in enumerate(chosen.items()):
        lq, gt = references.get(stem, (None, None))
        sources = [("LQ", lq)] * has_lq + [(run.label, run.image_path(stem)) for run in runs]
        sources += [("GT", gt)] * has_gt
        tiles = []
        for j, (caption, path) in enumerate(sources):
            image, crops = _write_tile(path, out_dir, f"{prefix}_{i:03d}_{j:02d}")
            tiles.append(Tile(caption, image, crops))
        rows.append(GridRow(stem, reasons, tiles))
    return rows
