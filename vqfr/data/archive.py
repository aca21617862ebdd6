"""``vqfr-eval datasets import``: released archives or folders -> ``<root>/<name>/lq/`` (+ ``hq/``).

Safety:
- every member is checked before anything is written: absolute paths, drive letters, ``..``
  components, symbolic and hard links, devices and FIFOs refuse the whole import, listing the
  offending members;
- files are written under their base name into folders we create, never to a path taken from
  the archive;
- the set is assembled in a hidden staging folder in the data root and renamed into place in one
  step, so an interrupted import leaves no half set under ``<root>/<name>`` (a leftover
  ``.<name>.import-*`` folder can be deleted);
- an existing ``<root>/<name>`` is an error unless ``force`` (then it is replaced as a whole);
- archive bombs: before anything is written, a member to be imported that is larger than
  ``max_member_bytes`` (default 256 MiB; face crops are a few MB at most) or, above 1 MiB,
  compressed more than ``max_ratio`` times (default 100; PNG/JPEG hardly compress) is refused,
  and so is a set larger than the free space under the data root. Both limits can be raised
  (``--max-member-mb``, ``--max-ratio``). A member never yields more bytes than it declares;
- a corrupt or truncated archive (bad CRC, cut-off gzip stream) is an error naming the archive
  and the member; nothing of it is imported.

Mapping: only image files directly inside one folder of a source are taken. The LQ and HQ
folders are found by ``lq_subdir``/``hq_subdir`` (a folder path inside a source, matched at its
end, ``.`` for the top level), else by the base names the manifest lists under ``[archive]``
(e.g. CelebA-Test's ``celeba_512_validation_lq`` and ``celeba_512_validation``), else, when
there is exactly one image folder (two for paired sets, one of them already LQ), by elimination.
Several sources are merged first, so separate LQ and HQ archives import in one command.
"""
from __future__ import annotations

import contextlib
import json
import lzma
import os
import shutil
import stat
import tarfile
import time
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from vqfr.data.datasets import Manifest, data_root, load_manifest
from vqfr.data.images import is_image_file, make_staging_dir, sha256_file
from vqfr.errors import OutputError, VqfrError, output_error

_JUNK_DIRS = {"__MACOSX"}
MAX_MEMBER_BYTES = 256 << 20
MAX_RATIO = 100
_RATIO_FLOOR = 1 << 20            # smaller members are not checked for their ratio
# what reading a damaged archive raises (bad CRC, truncated stream, bad header)
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


class UnsafeArchive(VqfrError):
    """An archive member could write outside the target or is not a regular file."""


@dataclass(frozen=True)
class Member:
    source: Path
    name: str                          # posix path inside the source
    open: Callable[[], IO[bytes]]
    size: int = 0                      # bytes it declares (what copying may yield at most)
    packed: int | None = None          # compressed bytes (zip), None when unknown

    @property
    def folder(self) -> str:
        parent = str(PurePosixPath(self.name).parent)
        return "." if parent in ("", ".") else parent

    @property
    def basename(self) -> str:
        return PurePosixPath(self.name).name

    @property
    def where(self) -> str:
        return f"{self.source.name}:{self.folder}"


@dataclass(frozen=True)
class ImportResult:
    target: Path
    lq_count: int
    hq_count: int
    lq_from: str
    hq_from: str | None
    skipped: list[str] = field(default_factory=list)   # non-image files in the chosen folders


def _unsafe_name(name: str) -> str | None:
    if "\\" in name:
        return "backslash in member name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(name).parts:
        return "'..' path component"
    return None


def _is_junk(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p in _JUNK_DIRS for p in parts) or parts[-1].startswith(".")


def _zip_members(path: Path, archive: zipfile.ZipFile, problems: list[str]) -> list[Member]:
    members = []
    for info in archive.infolist():
        if (why := _unsafe_name(info.filename)) is not None:
            problems.append(f"{path.name}: {info.filename!r}: {why}")
            continue
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            problems.append(f"{path.name}: {info.filename!r}: symbolic link")
            continue
        if info.is_dir():
            continue
        if stat.S_IFMT(mode) and not stat.S_ISREG(mode):
            problems.append(f"{path.name}: {info.filename!r}: not a regular file")
            continue
        members.append(Member(path, info.filename, lambda i=info: archive.open(i),
                              info.file_size, info.compress_size))
    return members


def _tar_members(path: Path, archive: tarfile.TarFile, problems: list[str]) -> list[Member]:
    members = []
    for info in archive.getmembers():
        name = info.name.removeprefix("./")
        if (why := _unsafe_name(name)) is not None:
            problems.append(f"{path.name}: {info.name!r}: {why}")
        elif info.issym() or info.islnk():
            kind = "symbolic" if info.issym() else "hard"
            problems.append(f"{path.name}: {info.name!r}: {kind} link to {info.linkname!r}")
        elif info.isdir():
            continue
        elif not info.isfile():
            problems.append(f"{path.name}: {info.name!r}: device, FIFO or other special file")
        else:
            members.append(Member(path, name, lambda i=info: archive.extractfile(i), info.size))
    return members


def _folder_members(path: Path) -> list[Member]:
    members = []
    for dirpath, _dirs, files in os.walk(path):
        for file in files:
            full = Path(dirpath) / file
            if full.is_file():
                members.append(Member(path, full.relative_to(path).as_posix(),
                                      lambda f=full: open(f, "rb"),  # noqa: SIM115
                                      full.stat().st_size))
    return members


@contextlib.contextmanager
def open_sources(sources: Sequence[str | os.PathLike]) -> Iterator[list[Member]]:
    """All members of all sources, after checking every one of them (``UnsafeArchive``)."""
    problems: list[str] = []
    members: list[Member] = []
    with contextlib.ExitStack() as stack:
        for source in map(Path, sources):
            if source.is_dir():
                members += _folder_members(source)
            elif zipfile.is_zipfile(source):
                with _reading(source):
                    members += _zip_members(source, stack.enter_context(zipfile.ZipFile(source)),
                                            problems)
            elif source.is_file() and tarfile.is_tarfile(source):
                with _reading(source):
                    members += _tar_members(
                        source, stack.enter_context(tarfile.open(source, "r:*")), problems)
            elif not source.exists():
                raise VqfrError(f"{source}: no such file or folder")
            else:
                raise VqfrError(f"{source}: not a folder, zip or tar archive")
        if problems:
            raise UnsafeArchive(f"refusing to import: {len(problems)} unsafe member(s); nothing "
                                "was written:\n  " + "\n  ".join(problems))
        yield [m for m in members if not _is_junk(m.name)]


@contextlib.contextmanager
def _reading(source: Path, member: str | None = None) -> Iterator[None]:
    """Errors of a damaged archive as a message naming it (and the member)."""
    try:
        yield
    except _CORRUPT as exc:
        where = f"{source}" + (f", member {member!r}" if member else "")
        raise VqfrError(f"{where}: cannot be read ({type(exc).__name__}: {exc}); the archive is "
                        "corrupt or truncated (download it again). Nothing was imported.") from None


def check_sizes(members: list[Member], root: Path, max_member_bytes: int = MAX_MEMBER_BYTES,
                max_ratio: float = MAX_RATIO) -> None:
    """Refuse, before anything is written, members too large or too compressed to be face images
    (an archive bomb) and a set larger than the free space under ``root``."""
    problems = []
    for m in members:
        if m.size > max_member_bytes:
            problems.append(f"{m.source.name}: {m.name!r}: {m.size:,} bytes, over the limit of "
                            f"{max_member_bytes:,} (--max-member-mb)")
        elif (m.packed is not None and m.size > _RATIO_FLOOR
              and m.size > max_ratio * max(m.packed, 1)):
            problems.append(f"{m.source.name}: {m.name!r}: {m.size:,} bytes from {m.packed:,} "
                            f"compressed, a ratio over the limit of {max_ratio:g} (--max-ratio)")
    for source in {m.source for m in members if m.packed is None and m.source.is_file()}:
        # tar.gz: a member's compressed size is unknown; the archive's ratio stands for all
        total = sum(m.size for m in members if m.source == source)
        if total > _RATIO_FLOOR and total > max_ratio * max(source.stat().st_size, 1):
            problems.append(f"{source.name}: {total:,} bytes to extract from a "
                            f"{source.stat().st_size:,}-byte archive, a ratio over the limit of "
                            f"{max_ratio:g} (--max-ratio)")
    if problems:
        raise UnsafeArchive(f"refusing to import: {len(problems)} member(s) look like an archive "
                            "bomb; nothing was written:\n  " + "\n  ".join(problems))
    needed = sum(m.size for m in members)
    free = shutil.disk_usage(root).free
    if needed > free:
        raise VqfrError(f"{root}: the import needs {needed / 2**20:.1f} MiB and only "
                        f"{free / 2**20:.1f} MiB are free; nothing was written")


def _folders(members: list[Member]) -> dict[tuple[Path, str], list[Member]]:
    folders: dict[tuple[Path, str], list[Member]] = defaultdict(list)
    for member in members:
        folders[(member.source, member.folder)].append(member)
    return folders


def _pick(folders: dict[tuple[Path, str], list[Member]], role: str, subdir: str | None,
          names: Sequence[str], exclude: tuple | None) -> tuple[Path, str] | None:
    candidates = [key for key in folders if key != exclude]
    if subdir is not None:
        wanted = subdir.strip("/") or "."
        hits = [k for k in candidates if k[1] == wanted or k[1].endswith("/" + wanted)]
        if len(hits) != 1:
            raise VqfrError(f"--{role}-subdir {subdir!r} matches {len(hits)} image folders "
                            f"(need exactly one): {_describe(folders, hits or candidates)}")
        return hits[0]
    for name in names:
        hits = [k for k in candidates if PurePosixPath(k[1]).name == name]
        if len(hits) == 1:
            return hits[0]
    if len(candidates) == 1:
        return candidates[0]
    return None


def _describe(folders, keys) -> str:
    return "; ".join(f"{src.name}:{folder} ({sum(is_image_file(m.name) for m in folders[(src, folder)])}"
                     " images)" for src, folder in keys)


def _copy(members: list[Member], dest: Path) -> None:
    dest.mkdir(parents=True)
    for member in members:
        out = dest / member.basename
        if out.exists():
            raise VqfrError(f"{member.where}/{member.basename}: two files with this name")
        _copy_member(member, out)


def _copy_member(member: Member, out: Path) -> None:
    """Copy at most the bytes the member declares; read errors name the archive and member,
    write errors the file."""
    with _reading(member.source, member.name):
        src = member.open()
    with src, open(out, "xb") as dst:
        left = member.size
        while True:
            with _reading(member.source, member.name):
                chunk = src.read(min(1 << 20, left + 1))
            if not chunk:
                break
            left -= len(chunk)
            if left < 0:
                raise UnsafeArchive(f"{member.source}: {member.name!r} holds more than the "
                                    f"{member.size:,} bytes it declares; nothing was imported")
            try:
                dst.write(chunk)
            except OSError as exc:
                raise output_error(out, exc) from None


def import_dataset(name: str, sources: Sequence[str | os.PathLike], *,
                   root: str | os.PathLike | None = None, lq_subdir: str | None = None,
                   hq_subdir: str | None = None, force: bool = False,
                   max_member_bytes: int = MAX_MEMBER_BYTES,
                   max_ratio: float = MAX_RATIO) -> ImportResult:
    manifest: Manifest = load_manifest(name, root)
    root = data_root(root)
    target = root / name
    if target.exists() and any(target.iterdir()) and not force:
        raise VqfrError(f"{target} already exists and is not empty; nothing was changed. "
                        "Pass --force to replace it as a whole.")
    archive_cfg = manifest.data.get("archive", {})
    with open_sources(sources) as members:
        folders = _folders([m for m in members if is_image_file(m.name)])
        if not folders:
            raise VqfrError(f"no image files found in {', '.join(map(str, sources))}")
        lq_key = _pick(folders, "lq", lq_subdir, archive_cfg.get("lq_dirs", []), None)
        if lq_key is None:
            raise VqfrError("cannot tell which folder holds the LQ images; pass --lq-subdir. "
                            f"Image folders: {_describe(folders, list(folders))}")
        hq_key = None
        if manifest.paired:
            hq_key = _pick(folders, "hq", hq_subdir, archive_cfg.get("hq_dirs", []), lq_key)
            if hq_key is None:
                raise VqfrError(f"{name} is a paired set: cannot tell which folder holds the HQ "
                                "images; pass --hq-subdir (or give the HQ archive as well). "
                                f"Image folders: {_describe(folders, list(folders))}")
        chosen = {lq_key, hq_key} - {None}
        skipped = [f"{m.where}/{m.basename}" for m in members
                   if (m.source, m.folder) in chosen and not is_image_file(m.name)]

        root.mkdir(parents=True, exist_ok=True)
        check_sizes([m for key in chosen for m in folders[key]], root, max_member_bytes,
                    max_ratio)
        staging = make_staging_dir(root, f".{name}.import-")
        try:
            _copy(folders[lq_key], staging / "lq")
            if hq_key is not None:
                _copy(folders[hq_key], staging / "hq")
            provenance = {
                "dataset": name, "imported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "manifest_sha256": manifest.sha256,
                "sources": [{"path": str(Path(s).resolve()),
                             "sha256": sha256_file(s) if Path(s).is_file() else None}
                            for s in sources],
                "lq_from": f"{lq_key[0].name}:{lq_key[1]}",
                "hq_from": f"{hq_key[0].name}:{hq_key[1]}" if hq_key else None,
                "skipped_non_images": skipped,
            }
            (staging / "import.json").write_text(json.dumps(provenance, indent=1) + "\n")
            if target.exists():
                retired = make_staging_dir(root, f".{name}.old-")
                os.rename(target, retired / name)
                os.rename(staging, target)
                shutil.rmtree(retired)
            else:
                os.rename(staging, target)
        except OutputError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise OutputError(f"{exc}; nothing was imported (the partial copy was removed)"
                              ) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return ImportResult(target=target, lq_count=len(folders[lq_key]),
                        hq_count=len(folders[hq_key]) if hq_key else 0,
                        lq_from=provenance["lq_from"], hq_from=provenance["hq_from"],
                        skipped=skipped)
