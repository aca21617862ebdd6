"""What the statistics read: a method's ``summary.json``, its ``per_image.csv`` and the feature
rows of its FID/KID columns (``rows/<column>.npz`` beside them, written by the runner). Nothing
here loads a model or torch.

Feature rows are numpy ``.npz`` files read with ``allow_pickle=False``: the restored images'
``features`` (N x 2048 float32, rows in global image order) and ``index``; the reference they
were compared with in ``summary.json``'s ``metric_info.<column>.rows``: ``{"restored":
"rows/fid.npz", "reference": "../rows/reference-<sha256>.npz", "reference_kind": "stats" |
"gt" | "folder"}`` (paths relative to the method folder; a reference is stored once per
dataset, named by its content). A "stats" reference holds ``mean`` and ``cov``, the others
``features`` (and for "gt" the ``index`` of each row's image).
"""
from __future__ import annotations

import csv
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vqfr.errors import VqfrError

ROWS_DIR = "rows"


@dataclass
class MethodRows:
    """One method's results on one dataset, as the statistics use them."""

    path: Path
    summary: dict[str, Any]
    values: dict[str, np.ndarray] = field(default_factory=dict)   # column -> (n,), NaN = none
    key: str = ""          # how results name the method; default: its folder name (the slug)

    @property
    def slug(self) -> str:
        return self.key or self.path.name

    @property
    def count(self) -> int:
        return int(self.summary.get("dataset", {}).get("count") or
                   self.summary.get("counts", {}).get("images") or 0)

    def info(self, column: str) -> dict[str, Any]:
        return self.summary.get("metric_info", {}).get(column, {})

    def value(self, column: str) -> float:
        raw = self.summary.get("metrics", {}).get(column)
        try:
            return float(raw)
        except (TypeError, ValueError):
            return float("nan")

    def lower_is_better(self, column: str) -> bool | None:
        return self.info(column).get("lower_is_better")

    def exclude_below(self, column: str) -> float | None:
        """The threshold under which an image is left out of the mean (Deg.'s identical pairs),
        from the options recorded with the numbers."""
        options = self.info(column).get("options", {})
        if options.get("exclude_identical") and options.get("identical_below_deg") is not None:
            return float(options["identical_below_deg"])
        return None

    def row_files(self, column: str) -> dict[str, Any] | None:
        return self.info(column).get("rows")

    def features(self, column: str) -> np.ndarray:
        data = _read_rows(self.path / self.row_files(column)["restored"], ("features", "index"))
        return data["features"][np.argsort(data["index"], kind="stable")]

    def reference(self, column: str) -> dict[str, np.ndarray]:
        return _read_rows(self.path / self.row_files(column)["reference"])

    def reference_key(self, column: str) -> str | None:
        files = self.row_files(column)
        return None if files is None else str((self.path / files["reference"]).resolve())


def _read_rows(path: Path, keys: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """A feature-rows file's arrays (never unpickled); an unreadable one is a ``VqfrError``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise ValueError(f"no {', '.join(missing)}")
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise VqfrError(f"{path}: unreadable feature rows ({exc}); rerun the method to write "
                        "them again") from None


def _number(text: str) -> float:
    if text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_per_image(path: Path) -> dict[str, list[Any]]:
    """``per_image.csv`` as columns: ``name`` (stems as text), every other column as floats
    (an empty or unreadable cell is NaN; ``inf`` stays infinite)."""
    if not path.is_file():
        return {"name": []}
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns: dict[str, list[Any]] = {name: [] for name in reader.fieldnames or ["name"]}
        for row in reader:
            for name in columns:
                value = row.get(name) or ""
                columns[name].append(value if name == "name" else _number(value))
    return columns


def load_method_rows(path: Path) -> MethodRows:
    path = Path(path)
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise VqfrError(f"{path / 'summary.json'}: not a readable results summary ({exc}); "
                        "rerun the method or remove its folder") from None
    columns = read_per_image(path / "per_image.csv")
    rows = MethodRows(path, summary)
    n = rows.count or len(columns["name"])
    index = [i for i in columns.get("index", range(len(columns["name"])))]
    if any(math.isnan(i) or not 0 <= i < n or i != int(i) for i in index) or \
            len(set(index)) != len(index):
        raise VqfrError(f"{path / 'per_image.csv'}: its index column does not number the "
                        f"{n} images of summary.json; rerun the method or remove its folder")
    index = [int(i) for i in index]
    for name, values in columns.items():
        if name in ("name", "index"):
            continue
        array = np.full(n, np.nan)
        array[index] = values
        rows.values[name] = array
    return rows
