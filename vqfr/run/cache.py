"""What makes a run resumable: the restore cache (``cache.json`` + an append-only journal of the
images finished since it was last written) and the per-batch metric states.

Every file is written atomically (temporary file + ``os.replace``) or appended line by line with
an fsync, so a SIGKILL at any point leaves either the old or the new content: a torn last journal
line is ignored, and an image not in the journal is restored again.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqfr.data.images import atomic_write_bytes
from vqfr.errors import output_error
from vqfr.run.methods import options_digest

CACHE_SCHEMA = "vqfr-eval/cache/1"


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, default=str) + "\n").encode())


def pixels_sha256(rgb: np.ndarray) -> str:
    """Hash of decoded pixels (H x W x 3 uint8): what a cached image is checked against when it
    is read back, independent of the PNG encoder's settings."""
    return hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest()


class RestoreCache:
    """``cache.json``: {"schema", "key", "key_sha256", "images": {stem: entry}}, an entry being
    {"input_sha256", "output_sha256" (decoded pixels), "png_size", "png_mtime_ns" (the written
    PNG as it was journaled), "threads" (torch CPU threads of the restoring process),
    "input_notes", "reference_sha256", "reference_notes" (conversions on reading)}. An entry is
    reused only under the same key and input hash. Images finished since ``cache.json`` was
    written are in ``journal-<rank>.jsonl`` (one per process, so ranks never write the same
    file); ``save`` folds them in."""

    def __init__(self, method_dir: Path, key: dict[str, Any], rank: int = 0) -> None:
        self.dir = Path(method_dir)
        self.path = self.dir / "cache.json"
        self.journal = self.dir / f"journal-{rank}.jsonl"
        self.key = key
        self.key_sha256 = options_digest(key)
        self.entries: dict[str, dict] = {}
        self._journal_file = None
        self._load()

    def _load(self) -> None:
        if self.path.exists():
            saved = _json_or_none(self.path.read_text()) or {}
            if saved.get("key_sha256") == self.key_sha256:
                self.entries = dict(saved.get("images", {}))
        for journal in sorted(self.dir.glob("journal-*.jsonl")):
            lines = journal.read_text().splitlines()
            header = _json_or_none(lines[0]) if lines else None
            if header and header.get("key_sha256") == self.key_sha256:
                for line in lines[1:]:
                    entry = _json_or_none(line)
                    if entry and "stem" in entry:  # a torn last line is skipped
                        self.entries[entry.pop("stem")] = entry

    def entry(self, stem: str, input_sha256: str) -> dict | None:
        """The cache entry, if this input was restored under this key."""
        entry = self.entries.get(stem)
        if entry and entry.get("input_sha256") == input_sha256 and "output_sha256" in entry:
            return entry
        return None

    def lookup(self, stem: str, input_sha256: str) -> str | None:
        """The cached output's pixel hash, if this input was restored under this key."""
        entry = self.entry(stem, input_sha256)
        return entry["output_sha256"] if entry else None

    def record(self, finished: dict[str, dict]) -> None:
        """Journal a batch of finished images (after their PNGs are in place)."""
        try:
            self._append(finished)
        except OSError as exc:    # a torn last line is skipped when the journal is read
            raise output_error(self.journal, exc) from None

    def _append(self, finished: dict[str, dict]) -> None:
        if self._journal_file is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            fresh = not self.journal.exists() or self._journal_key() != self.key_sha256
            self._journal_file = open(self.journal, "w" if fresh else "a")
            if fresh:
                self._journal_file.write(json.dumps({"key_sha256": self.key_sha256}) + "\n")
            elif not self.journal.read_bytes().endswith(b"\n"):
                self._journal_file.write("\n")  # end a line torn by a kill
        for stem, entry in finished.items():
            self.entries[stem] = entry
            self._journal_file.write(json.dumps({"stem": stem, **entry}) + "\n")
        self._journal_file.flush()
        os.fsync(self._journal_file.fileno())

    def _journal_key(self) -> str | None:
        with open(self.journal) as f:
            header = _json_or_none(f.readline())
        return header.get("key_sha256") if header else None

    def close(self) -> None:
        if self._journal_file is not None:
            self._journal_file.close()
            self._journal_file = None

    def save(self, more: dict[str, dict] | None = None) -> None:
        """Write ``cache.json`` with every entry (plus ``more``: other ranks' new entries)
        atomically, then drop the journals it now covers. Rank 0 only, after the others
        finished."""
        self.close()
        self.entries.update(more or {})
        atomic_write_json(self.path, {"schema": CACHE_SCHEMA, "key": self.key,
                                      "key_sha256": self.key_sha256,
                                      "images": dict(sorted(self.entries.items()))})
        for journal in self.dir.glob("journal-*.jsonl"):
            journal.unlink(missing_ok=True)


class StateStore:
    """Per-batch metric states of one metric: ``states/<metric id>/<batch>.pt`` holding the
    states a fresh metric has after updating on that batch alone, plus the fingerprint (index,
    restored pixels hash, reference hash) of every image in it. A batch file counts only while
    every fingerprint still matches, so a changed image or reference recomputes that batch."""

    def __init__(self, method_dir: Path, metric_id: str) -> None:
        self.dir = Path(method_dir) / "states" / metric_id

    def load(self, batch: int, fingerprints: dict[str, str]
             ) -> tuple[dict[str, torch.Tensor], int | None] | None:
        """(states, torch CPU threads they were computed with, None if not recorded)."""
        path = self.dir / f"{batch:06d}.pt"
        if not path.exists():
            return None
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # unreadable: recompute
            return None
        if saved.get("images") != fingerprints:
            return None
        return saved["states"], saved.get("threads")

    def save(self, batch: int, fingerprints: dict[str, str],
             states: dict[str, torch.Tensor], threads: int | None = None) -> None:
        import io

        buffer = io.BytesIO()
        torch.save({"images": fingerprints, "threads": threads,
                    "states": {k: v.detach().cpu().clone() for k, v in states.items()}}, buffer)
        atomic_write_bytes(self.dir / f"{batch:06d}.pt", buffer.getvalue())


def _json_or_none(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
