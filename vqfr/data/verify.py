"""``vqfr-eval datasets verify`` / ``list``: is a test set complete and paper-comparable?

A set is paper-comparable when it is present, its LQ (and HQ) image counts equal one of the
manifest's counts, LQ and HQ pair one to one by file stem, and every image decodes as 8-bit
colour at the manifest resolution (see ``vqfr.data.images`` for the policy). Conversions that do
not change the pixels the official scripts would read with ``IMREAD_COLOR`` (greyscale replicated
to RGB, a fully opaque alpha channel dropped) are reported as notes, not errors. Stray non-image
files and sub-folders are warnings: the official scripts crash on them, this suite ignores them.
"""
from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vqfr.data.datasets import data_root, load_manifest, registered_names
from vqfr.data.images import (
    ImagePolicy,
    is_image_file,
    list_images,
    read_image_with_info,
)
from vqfr.data.pairing import match_stems
from vqfr.errors import ImageError

Severity = Literal["error", "warning", "note"]


@dataclass(frozen=True)
class Problem:
    severity: Severity
    file: str            # the file or folder concerned
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.file}: {self.message}"


@dataclass
class VerifyReport:
    name: str
    folder: Path
    lq_count: int = 0
    hq_count: int | None = None
    problems: list[Problem] = field(default_factory=list)
    procedural: bool = False    # a generated smoke-test set: complete at best, never comparable

    @property
    def complete(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    @property
    def comparable(self) -> bool:
        return self.complete and not self.procedural

    def add(self, severity: Severity, file: str | Path, message: str) -> None:
        self.problems.append(Problem(severity, str(file), message))


def _check_folder(report: VerifyReport, folder: Path, size: tuple[int, int] | None,
                  workers: int) -> list[Path]:
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            report.add("warning", entry, "sub-folder ignored (the official NIQE recurses into it)")
        elif not is_image_file(entry) or entry.name.startswith("."):
            report.add("warning", entry, "not an image file; ignored")
    images = list_images(folder)
    policy = ImagePolicy(size=size)

    def check(path: Path) -> None:
        try:
            _, info = read_image_with_info(path, policy)
        except ImageError as exc:
            report.add("error", path, str(exc).removeprefix(f"{path}: "))
            return
        for note in info.notes:
            report.add("note", path, note)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(check, images))
    return images


def verify_dataset(name: str, root: str | os.PathLike | None = None,
                   workers: int = 4) -> VerifyReport:
    manifest = load_manifest(name, root)
    folder = data_root(root) / name
    report = VerifyReport(name=name, folder=folder,
                          procedural=bool(manifest.data.get("procedural")))
    layout = manifest.data.get("layout", {})
    lq_dir = folder / layout.get("lq", "lq")
    hq_dir = folder / layout.get("hq", "hq") if manifest.paired else None
    missing_dirs = [d for d in (lq_dir, hq_dir) if d is not None and not d.is_dir()]
    if missing_dirs:
        for d in missing_dirs:
            report.add("error", d, "folder absent: the dataset is not imported "
                       f"(vqfr-eval datasets import {name} ...)")
        return report

    size = manifest.resolution
    lq_files = _check_folder(report, lq_dir, size, workers)
    report.lq_count = len(lq_files)
    expected = " or ".join(map(str, manifest.counts))
    if report.lq_count not in manifest.counts:
        report.add("error", lq_dir, f"{report.lq_count} images, expected {expected}")
    if hq_dir is not None:
        hq_files = _check_folder(report, hq_dir, size, workers)
        report.hq_count = len(hq_files)
        if report.hq_count not in manifest.counts:
            report.add("error", hq_dir, f"{report.hq_count} images, expected {expected}")
        match = match_stems(lq_files, hq_files)
        for path in match.missing:
            report.add("error", path, f"no HQ image with this name in {hq_dir}")
        for path in match.extra:
            report.add("error", path, f"no LQ image with this name in {lq_dir}")
        for stem, paths in match.ambiguous.items():
            report.add("error", stem, "several files share this name: "
                       + ", ".join(p.name for p in paths))
    else:
        stems = Counter(p.stem for p in lq_files)
        for stem in sorted(s for s, n in stems.items() if n > 1):
            report.add("error", stem, "several files share this name: " + ", ".join(
                p.name for p in lq_files if p.stem == stem))
    report.problems.sort(key=lambda p: ({"error": 0, "warning": 1, "note": 2}[p.severity], p.file))
    return report


@dataclass(frozen=True)
class ListedDataset:
    name: str
    title: str
    expected: tuple[int, ...]
    present: int | None           # LQ image count, None when the folder is absent
    status: str                   # absent | incomplete | counts ok


def list_datasets(root: str | os.PathLike | None = None) -> list[ListedDataset]:
    """Every registered set with its expected and present counts (names only; no decoding)."""
    rows = []
    for name in registered_names(root):
        manifest = load_manifest(name, root)
        lq_dir = data_root(root) / name / manifest.data.get("layout", {}).get("lq", "lq")
        present = len(list_images(lq_dir)) if lq_dir.is_dir() else None
        status = ("absent" if present is None else
                  "counts ok (run verify)" if present in manifest.counts else "incomplete")
        rows.append(ListedDataset(name, manifest.title, manifest.counts, present, status))
    return rows
