"""Resumable, verified downloads with the standard library.

``download_file(url, dest)`` says on stderr what it fetches, from where, how large and where it
goes, then streams into ``<dest>.part``. An interrupted transfer leaves the
part file in place, and the next call asks the server for the remaining bytes only (HTTP Range)
and appends them. The sha256 is computed while the bytes arrive; only a complete file whose hash
matches is renamed (atomically) to ``dest``, so ``dest`` never holds a partial or corrupt file.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import sys
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from vqfr import __version__
from vqfr.zoo.cache import CHUNK, hash_matches

try:
    import fcntl
except ImportError:  # Windows: no cross-process lock; concurrent downloads of one file are rare
    fcntl = None


class DownloadError(Exception):
    """One URL could not deliver a good file; the message says why."""


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


@contextlib.contextmanager
def exclusive(dest: Path):
    """Serialise processes (e.g. distributed ranks) fetching the same file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield
        return
    with open(dest.with_name(dest.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _hash_existing(path: Path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": f"vqfr-eval/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urlopen(Request(url, headers=headers), timeout=timeout)
    except HTTPError as exc:
        if exc.code == 416 and offset:  # nothing left after `offset`: the part may be complete
            return None
        raise DownloadError(f"HTTP {exc.code} {exc.reason}") from None
    except URLError as exc:
        raise DownloadError(f"cannot connect ({exc.reason})") from None
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"cannot connect ({exc})") from None


def human_size(count: int | None) -> str:
    if count is None:
        return "size unknown"
    if count < 1024:
        return f"{count} bytes"
    return f"{count / 1024:.1f} KiB" if count < 2 ** 20 else f"{count / 2 ** 20:.1f} MiB"


def download_file(url: str, dest: str | Path, *, sha256: str | None = None,
                  sha256_prefix: str | None = None, quiet: bool = False,
                  timeout: float = 60.0, what: str = "") -> str:
    """Fetch ``url`` to ``dest`` (resuming ``<dest>.part``); return the file's sha256.
    ``what`` names the file in the announcement (default: its file name); ``quiet`` hides the
    progress bar, not the announcement.

    Raises DownloadError for HTTP errors, connection failures, interrupted transfers (the part
    file is kept for the next call) and hash mismatches (the part file is removed).
    """
    dest = Path(dest)
    part = part_path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    digest = _hash_existing(part) if offset else hashlib.sha256()

    response = _open(url, offset, timeout)
    if response is not None:
        with response:
            if offset and response.status != 206:  # Range ignored: the body is the whole file
                offset, digest = 0, hashlib.sha256()
            elif offset and not response.headers.get("Content-Range", "").startswith(
                    f"bytes {offset}-"):
                raise DownloadError(f"the server resumed at the wrong place "
                                    f"({response.headers.get('Content-Range')!r}, "
                                    f"asked for byte {offset})")
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            resuming = f", resuming after {human_size(offset)}" if offset else ""
            print(f"vqfr-eval: downloading {what or dest.name} from {url} "
                  f"({human_size(total)}{resuming}) to {dest}", file=sys.stderr, flush=True)
            received = offset
            with open(part, "ab" if offset else "wb") as out, tqdm(
                    total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                    desc=dest.name, disable=True if quiet else None,  # None: off unless a terminal
                    leave=False) as progress:
                try:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        progress.update(len(chunk))
                except (OSError, http.client.HTTPException) as exc:
                    error = exc
                else:
                    error = None
            if error is not None or (total is not None and received < total):
                size = f"{received} of {total}" if total is not None else f"{received}"
                raise DownloadError(
                    f"transfer interrupted after {size} bytes ({error or 'connection closed'}); "
                    f"the partial file {part} is kept and the next attempt resumes from it")

    actual = digest.hexdigest()
    if hash_matches(actual, sha256, sha256_prefix) is False:
        part.unlink()
        expected = sha256 or f"{sha256_prefix}..."
        raise DownloadError(f"corrupt download: sha256 {actual}, expected {expected}; "
                            "the bad file was removed")
    os.replace(part, dest)
    return actual
