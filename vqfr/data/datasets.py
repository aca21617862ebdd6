"""Test sets: manifests, the data root, and ``open_dataset``.

A registered test set is described by a manifest ``<name>.toml`` (expected counts, resolution,
layout, paper metrics, where to download it, how it was made, terms). Its images live in
``<data root>/<name>/lq/`` (and ``hq/`` for paired sets), put there by
``vqfr-eval datasets import``.

Data root, first match: the ``root`` argument (``--root``), ``$VQFR_EVAL_DATA``, ``./datasets``
when it holds manifests (running from a checkout), the checkout's ``datasets/`` beside the
package, else ``./datasets``.

Manifests are looked up in the data root first (a root may carry its own, e.g. a shared data
disk), then in the suite's own ``datasets/`` (the checkout's folder next to the ``vqfr``
package, or the copy a wheel carries: ``vqfr.resources``). They are data, not a Python package,
so ``import datasets`` keeps meaning the HuggingFace package.

Any other directory works as a custom set: ``DIR/lq/`` (+ optional ``DIR/hq/``), or a flat folder
of images (LQ only). Paired sets pair LQ and HQ by file stem and refuse to open when any file
does not pair (``PairingError``): a dataset-level number never silently covers fewer images.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from vqfr.data.images import list_images
from vqfr.data.pairing import match_stems, require_unique_stems
from vqfr.errors import DatasetUnavailable, VqfrError
from vqfr.resources import checkout_folder, declarative_folder

DATA_ENV = "VQFR_EVAL_DATA"


def _has_manifests(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.toml"))


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where dataset folders live (see the module doc for the order)."""
    if root is not None:
        return Path(root)
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    local = Path.cwd() / "datasets"
    if _has_manifests(local):
        return local
    checkout = checkout_folder("datasets")
    if checkout is not None and _has_manifests(checkout):
        return checkout
    return local


def _manifest_dirs(root: Path) -> list[Path]:
    dirs = [root]
    shipped = declarative_folder("datasets")
    if shipped.resolve() != root.resolve():
        dirs.append(shipped)
    return [d for d in dirs if d.is_dir()]


def registered_names(root: str | os.PathLike | None = None) -> list[str]:
    names = set()
    for folder in _manifest_dirs(data_root(root)):
        names.update(p.stem for p in folder.glob("*.toml"))
    return sorted(names)


@dataclass(frozen=True)
class Manifest:
    name: str
    path: Path
    sha256: str
    data: dict[str, Any]

    @property
    def counts(self) -> tuple[int, ...]:
        return tuple(self.data["counts"])

    @property
    def resolution(self) -> tuple[int, int] | None:
        res = self.data.get("resolution")
        return tuple(res) if res else None

    @property
    def paired(self) -> bool:
        return bool(self.data.get("paired"))

    @property
    def title(self) -> str:
        return self.data.get("title", self.name)


def load_manifest(name: str, root: str | os.PathLike | None = None) -> Manifest:
    for folder in _manifest_dirs(data_root(root)):
        path = folder / f"{name}.toml"
        if path.is_file():
            raw = path.read_bytes()
            try:
                data = tomllib.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise VqfrError(f"{path}: invalid manifest ({exc})") from exc
            return Manifest(name=name, path=path, sha256=hashlib.sha256(raw).hexdigest(), data=data)
    known = ", ".join(registered_names(root)) or "none found"
    raise VqfrError(f"unknown dataset {name!r} (registered: {known}); pass a directory with "
                    "lq/ (and optionally hq/) for your own images")


@dataclass(frozen=True)
class DatasetItem:
    stem: str
    lq_path: Path
    hq_path: Path | None = None


@dataclass(frozen=True)
class Dataset:
    name: str
    root: Path                       # the dataset's own folder
    lq_dir: Path
    hq_dir: Path | None
    items: tuple[DatasetItem, ...]
    manifest: dict[str, Any] = field(default_factory=dict)   # {} for a custom directory
    manifest_sha256: str | None = None
    file_list_sha256: str = ""

    @property
    def paired(self) -> bool:
        return self.hq_dir is not None

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def expected_counts(self) -> tuple[int, ...]:
        return tuple(self.manifest.get("counts", ()))

    @property
    def resolution(self) -> tuple[int, int] | None:
        res = self.manifest.get("resolution")
        return tuple(res) if res else None

    def summary(self) -> dict[str, Any]:
        """The ``dataset`` block of summary.json."""
        return {"name": self.name, "root": str(self.root), "count": self.count,
                "paired": self.paired, "manifest_sha256": self.manifest_sha256,
                "file_list_sha256": self.file_list_sha256}


def file_list_sha256(items: tuple[DatasetItem, ...]) -> str:
    """Hash of the ordered (stem, LQ name, HQ name) list: names only, not contents."""
    digest = hashlib.sha256()
    for item in items:
        hq = item.hq_path.name if item.hq_path else ""
        digest.update(f"{item.stem}\t{item.lq_path.name}\t{hq}\n".encode())
    return digest.hexdigest()


def how_to_get(manifest: Manifest, root: Path) -> str:
    data, name = manifest.data, manifest.name
    target = root / name
    lines = [f"dataset {name!r} ({manifest.title}) is not available under {target}."]
    if data.get("source", {}).get("generate"):
        lines.append(f"Generate it offline: {data['source']['generate']} [--root ROOT]")
    downloads = data.get("source", {}).get("downloads", [])
    if downloads:
        # The first folder name of each kind is the released one (the others are aliases the
        # import also recognises).
        folders = [(kind, names[0]) for kind, names in
                   (("LQ", data.get("archive", {}).get("lq_dirs")),
                    ("HQ", data.get("archive", {}).get("hq_dirs"))) if names]
        wanted = " and ".join(f"{folder} ({kind})" for kind, folder in folders)
        lines.append(f"Download {wanted or 'it'} (by hand; links as published):")
        lines += [f"  - {link}" for link in downloads]
        lines.append("Then import them (zip or tar archives, or the unpacked folders, from where "
                     "you saved them), all in one command:")
        sources = " ".join(f"DOWNLOADS/{folder}.zip" for _, folder in folders)
        lines.append(f"  vqfr-eval datasets import {name} {sources or 'ARCHIVE_OR_FOLDER'}"
                     + (f" --root {root}" if root != data_root() else ""))
    counts = " or ".join(str(c) for c in manifest.counts)
    res = manifest.resolution
    size = f", {res[0]}x{res[1]}" if res else ""
    lines.append(f"Expected layout: {target}/lq/ ({counts} images{size})"
                 + (f" and {target}/hq/ (the same file names)" if manifest.paired else ""))
    lines.append(f"Data root: {root} (from --root, ${DATA_ENV}, ./datasets or the checkout's "
                 "datasets/); check with: vqfr-eval datasets verify " + name)
    return "\n".join(lines)


def _scan(name: str, folder: Path, lq_dir: Path, hq_dir: Path | None, manifest: Manifest | None,
          ) -> Dataset:
    lq_files = list_images(lq_dir)
    if not lq_files:
        raise DatasetUnavailable(how_to_get(manifest, folder.parent) if manifest else
                                 f"{lq_dir}: no image files")
    if hq_dir is None:
        require_unique_stems(lq_files, str(lq_dir))
        items = tuple(DatasetItem(p.stem, p) for p in lq_files)
    else:
        match = match_stems(lq_files, list_images(hq_dir), strict=True,
                            a_label=f"{lq_dir}", b_label=f"{hq_dir}")
        items = tuple(DatasetItem(stem, lq, hq) for stem, lq, hq in match.pairs)
    return Dataset(name=name, root=folder, lq_dir=lq_dir, hq_dir=hq_dir, items=items,
                   manifest=manifest.data if manifest else {},
                   manifest_sha256=manifest.sha256 if manifest else None,
                   file_list_sha256=file_list_sha256(items))


def open_dataset(name_or_dir: str | os.PathLike, root: str | os.PathLike | None = None) -> Dataset:
    """A registered test set by name (``celeba-test``) or a directory of your own."""
    candidate = Path(name_or_dir)
    as_name = str(name_or_dir)
    if os.sep not in as_name and "/" not in as_name and as_name in registered_names(root):
        manifest = load_manifest(as_name, root)
        folder = data_root(root) / as_name
        lq_dir = folder / manifest.data.get("layout", {}).get("lq", "lq")
        hq_dir = folder / manifest.data.get("layout", {}).get("hq", "hq") if manifest.paired else None
        if not lq_dir.is_dir() or (hq_dir is not None and not hq_dir.is_dir()):
            raise DatasetUnavailable(how_to_get(manifest, folder.parent))
        return _scan(as_name, folder, lq_dir, hq_dir, manifest)
    if candidate.is_dir():
        folder = candidate.resolve()
        if (folder / "lq").is_dir():
            hq_dir = folder / "hq" if (folder / "hq").is_dir() else None
            return _scan(folder.name, folder, folder / "lq", hq_dir, None)
        return _scan(folder.name, folder, folder, None, None)
    known = ", ".join(registered_names(root)) or "none found"
    raise VqfrError(f"{as_name!r} is neither a registered dataset ({known}) nor a directory")
