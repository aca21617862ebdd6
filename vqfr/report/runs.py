"""Read run directories (the runner's result files) without importing any model code.

Layout (design.md): ``RUN_DIR/<dataset>/<method-slug>/{summary.json, per_image.csv, images/}``.
Ablation runs may add ``offsets/<stem>.npz``: one array per TWM level, named ``Level_<rate>``
(``Level_32`` ... ``Level_1``), each either the deformable-convolution offsets of that level as
torchvision lays them out (``[2·groups·kh·kw, h, w]``, (dy, dx) pairs) or an already reduced
magnitude map ``[h, w]``. See reports/README.md.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vqfr.errors import VqfrError
from vqfr.stats.rows import read_per_image

SUMMARY_SCHEMA = "vqfr-eval/summary/1"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class MethodRun:
    """One method on one dataset: what summary.json and per_image.csv say."""

    path: Path                         # RUN_DIR/<dataset>/<slug>
    summary: dict[str, Any]
    per_image: dict[str, list[Any]]    # column -> values (NaN: empty), rows in file order
    origin: str = ""                   # the run directory, when a report reads several

    @property
    def dataset(self) -> str:
        return self.summary["dataset"]["name"]

    @property
    def name(self) -> str:
        return self.summary["method"]["name"]

    @property
    def label(self) -> str:
        label = self.summary["method"].get("label") or self.path.name
        return f"{label} [{self.origin}]" if self.origin else label

    @property
    def position(self) -> int:
        """The method's place in its run's list (older summaries: after the others)."""
        position = self.summary["method"].get("position")
        return position if isinstance(position, int) else 1 << 30

    def unofficial_files(self) -> list[str]:
        """What in this run's provenance is not the official file: the method's weights
        (synthetic or another file) and the metrics' files."""
        notes = []
        weights = self.summary["method"].get("weights") or {}
        if weights.get("synthetic_seed") is not None:
            notes.append(f"synthetic {weights.get('asset')} weights (seed "
                         f"{weights['synthetic_seed']}): the numbers are not the model's")
        elif weights.get("official") is False:
            notes.append(f"{weights.get('asset')} weights {weights.get('path')} are not the "
                         f"official file (sha256 {weights.get('sha256')})")
        for name, record in (self.summary.get("provenance", {}).get("assets") or {}).items():
            if record.get("official") is False:
                notes.append(f"metric file {name} {record.get('path')} is not the official "
                             f"file (sha256 {record.get('sha256')})")
        return notes

    @property
    def options(self) -> dict[str, Any]:
        return self.summary["method"].get("options") or {}

    @property
    def slug(self) -> str:
        return self.path.name

    @property
    def key(self) -> str:
        """Unique among the runs of a report (slugs repeat across run directories): the key of
        its statistics (``vqfr.stats``)."""
        return str(self.path)

    @property
    def metrics(self) -> dict[str, float]:
        # summary.json writes non-finite numbers as "inf" / "nan" strings (JSON has none)
        return {k: float(v) for k, v in self.summary.get("metrics", {}).items()
                if isinstance(v, (int, float, str))}

    def lower_is_better(self, metric: str) -> bool | None:
        info = self.summary.get("metric_info", {}).get(metric, {})
        return info.get("lower_is_better")

    def per_image_values(self, metric: str) -> dict[str, float]:
        """stem -> value (finite values only: ``inf`` PSNR of identical images is dropped)."""
        if metric not in self.per_image:
            return {}
        out = {}
        for stem, value in zip(self.per_image["name"], self.per_image[metric]):
            if math.isfinite(value):
                out[stem] = value
        return out

    def image_path(self, stem: str) -> Path | None:
        """The restored image: ``images/`` of the run, or for a ``folder:`` method (results made
        elsewhere, not copied) that folder."""
        folders = [self.path / "images"]
        if self.name == "folder" and self.options.get("folder"):
            folders.append(Path(self.options["folder"]))
        for folder in folders:
            for suffix in IMAGE_SUFFIXES:
                path = folder / f"{stem}{suffix}"
                if path.is_file():
                    return path
        return None

    def offsets_path(self, stem: str) -> Path | None:
        path = self.path / "offsets" / f"{stem}.npz"
        return path if path.is_file() else None

    def offset_stems(self) -> list[str]:
        return sorted(p.stem for p in (self.path / "offsets").glob("*.npz"))


def read_method_run(path: Path) -> MethodRun:
    summary_path = path / "summary.json"
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise VqfrError(f"cannot read {summary_path}: {exc}") from None
    if summary.get("schema") != SUMMARY_SCHEMA:
        raise VqfrError(f"{summary_path}: schema {summary.get('schema')!r} is not "
                        f"{SUMMARY_SCHEMA!r}; re-run with this version of vqfr-eval")
    return MethodRun(path, summary, read_per_image(path / "per_image.csv"))


def find_method_runs(run_dirs: list[Path]) -> list[MethodRun]:
    """Every ``<dataset>/<slug>/summary.json`` under the given run dirs (or a method dir itself),
    each run dir's methods in the order its run listed them. With several run dirs every label
    names its run dir, so equal methods of two runs stay apart."""
    runs = []
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise VqfrError(f"run directory {run_dir} does not exist")
        summaries = ([run_dir / "summary.json"] if (run_dir / "summary.json").is_file()
                     else sorted(run_dir.glob("*/*/summary.json")))
        found = [read_method_run(s.parent) for s in summaries]
        for run in found:
            run.origin = str(run_dir) if len(run_dirs) > 1 else ""
        runs.extend(sorted(found, key=lambda r: (r.path.parent.name, r.position, r.slug)))
    if not runs:
        raise VqfrError("no results found: expected RUN_DIR/<dataset>/<method>/summary.json "
                        f"under {', '.join(map(str, run_dirs))}")
    return runs


def offset_magnitudes(path: Path) -> dict[str, np.ndarray]:
    """Level name -> mean offset length (pixels) per position, finest level last."""
    with np.load(path) as data:
        levels = {}
        for name in data.files:
            array = np.asarray(data[name], dtype=np.float32)
            if array.ndim == 3:
                pairs = array.reshape(array.shape[0] // 2, 2, *array.shape[1:])
                array = np.sqrt((pairs ** 2).sum(axis=1)).mean(axis=0)
            elif array.ndim != 2:
                raise VqfrError(f"{path}: {name} must be [2*G*K, h, w] offsets or an [h, w] map")
            levels[name] = array
    return dict(sorted(levels.items(), key=lambda kv: -_level_rate(kv[0])))


def _level_rate(name: str) -> int:
    try:
        return int(name.rsplit("_", 1)[-1])
    except ValueError:
        return 0
