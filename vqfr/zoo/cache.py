"""The on-disk cache: where assets live, and a memo of file hashes.

Layout under ``$VQFR_EVAL_HOME`` (default ``~/.cache/vqfr-eval``)::

    weights/<official file name>   downloaded or hand-placed assets
    sha256.json                    {absolute path: {size, mtime_ns, sha256}}

Checkpoints are hundreds of MB; the memo (keyed by path, size and mtime) keeps every run from
re-hashing them.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CHUNK = 1 << 20
_memo: dict[tuple[str, int, int], str] = {}


def cache_dir() -> Path:
    return Path(os.environ.get("VQFR_EVAL_HOME") or Path.home() / ".cache" / "vqfr-eval")


def weights_dir() -> Path:
    return cache_dir() / "weights"


def _memo_file() -> Path:
    return cache_dir() / "sha256.json"


def _read_memo_file() -> dict:
    try:
        return json.loads(_memo_file().read_text())
    except (OSError, ValueError):
        return {}


def _file_key(path: Path) -> tuple[str, int, int]:
    stat = path.stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def remember_sha256(path: str | Path, digest: str) -> None:
    """Record the sha256 of ``path`` as it is now (e.g. computed while downloading it)."""
    key = _file_key(Path(path).resolve())
    _memo[key] = digest
    entries = _read_memo_file()
    entries[key[0]] = {"size": key[1], "mtime_ns": key[2], "sha256": digest}
    target = _memo_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(entries, indent=1, sort_keys=True))
        os.replace(temporary, target)
    except OSError:  # a read-only cache only costs re-hashing next time
        pass


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, taken from the memo while its size and mtime are unchanged."""
    key = _file_key(Path(path).resolve())
    if key in _memo:
        return _memo[key]
    entry = _read_memo_file().get(key[0])
    if entry and (entry.get("size"), entry.get("mtime_ns")) == key[1:]:
        _memo[key] = entry["sha256"]
        return entry["sha256"]
    digest = hashlib.sha256()
    with open(key[0], "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    remember_sha256(key[0], digest.hexdigest())
    return digest.hexdigest()


def hash_matches(digest: str, sha256: str | None, sha256_prefix: str | None) -> bool | None:
    """Whether ``digest`` is the expected one; None when neither a hash nor a prefix is known."""
    if sha256:
        return digest == sha256.lower()
    if sha256_prefix:
        return digest.startswith(sha256_prefix.lower())
    return None
