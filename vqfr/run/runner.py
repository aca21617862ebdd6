"""The one pass: for each method, every image is decoded once, restored once (or taken from the
restore cache), written as PNG and measured by every metric from the same in-memory uint8 array.

Work is organised in batches of the dataset's global order (batch k = images k*B .. k*B+B-1).
A batch is the unit of caching, resuming and sharding. Its restored PNGs are written (by writer
threads, while the batch's other shapes are still being restored) and journaled before any
metric sees them: a written PNG with its journal line is the commit point, so a run killed while
measuring a batch restores nothing of it again. The next batch is read by a prefetch thread
while the current one runs. A reused PNG whose size or modification time differs from its
journal entry is decoded and checked against the journaled pixel hash; if it was changed, it is
restored again.

Files converted on reading (greyscale, palette, opaque alpha, EXIF orientation: see
``vqfr.data.images``) are noted per file; the notes are kept in the journal, so a rerun that
reuses everything still reports them.

Determinism: with the same batch size, device and dtype, a fresh run, a rerun, a resumed run and
an N-process run give bit-identical PNGs and numbers (same batches; deterministic kernels, on CPU
by nature, on CUDA by ``make_deterministic``; per-batch metric states merged in batch order).
Across batch sizes, devices, dtypes or CPU thread counts the float results change in the last
bits, which moves a few uint8 values by one level (VQFR v1 at 512 on CPU, batch 4 vs 1: PSNR
2e-6 dB, NIQE 2e-3 apart; FID features at 1 vs 2 threads: 3e-11 on 1.4e-6). The restore cache
key holds the dtype but not the batch size or thread count: a rerun with another batch size
reuses the images. Journal entries and stored batch states record the thread count they were
made with, so a pass that reuses work made at another count says so (``reused_threads``).
"""
from __future__ import annotations

import datetime as dt
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqfr.data.images import (read_image_and_gray, read_image_with_info, sha256_file,
                              write_png_atomic)
from vqfr.errors import ImageError, ImageTooSmall, OutputError, VqfrError
from vqfr.metrics.base import FileGray
from vqfr.run.cache import RestoreCache, StateStore, pixels_sha256
from vqfr.run.distributed import DistContext
from vqfr.run.methods import Method
from vqfr.run.metricset import BatchStates, MetricSet
from vqfr.run.progress import progress
from vqfr.run.restorer import size_error


@dataclass(frozen=True)
class Item:
    index: int                 # global position in the dataset's file list
    stem: str
    source: Path               # what the method reads: the LQ image, or the folder's result
    reference: Path | None     # the GT image (None for unpaired sets)


@dataclass
class PassOutcome:
    batch_states: BatchStates
    restored: int = 0
    reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)     # stem -> reason
    entries: dict[str, dict] = field(default_factory=dict)   # cache entries journaled
    seconds: float = 0.0
    error: str | None = None       # why the pass stopped early (a VqfrError's message)
    replaced: list[str] = field(default_factory=list)   # reused PNGs found changed: restored
    conversions: dict[str, list[str]] = field(default_factory=dict)  # file -> reading notes
    threads: int = 0                                     # torch CPU threads of this process
    reused_threads: set[int] = field(default_factory=set)  # other counts of reused work


@dataclass
class _Batch:
    number: int
    items: list[Item]
    input_sha: list[str]
    reference_sha: list[str]
    cached_sha: list[str | None]          # output pixel hash when reused from the cache
    cached: list[dict | None]             # the reused cache entries
    failed: dict[str, str]
    sources: dict[int, np.ndarray] = field(default_factory=dict)  # position -> input to restore
    outputs: dict[int, np.ndarray] = field(default_factory=dict)  # position -> cached output
    references: dict[int, np.ndarray] = field(default_factory=dict)
    stored: dict[str, dict | None] = field(default_factory=dict)  # metric -> loaded states
    stored_threads: set[int] = field(default_factory=set)   # thread counts of loaded states
    notes: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # (role, pos) -> notes
    refresh: set[int] = field(default_factory=set)   # reused PNGs whose stat is re-journaled
    replaced: list[str] = field(default_factory=list)
    grays: dict[Path, np.ndarray] = field(default_factory=dict)   # file -> its own grey decode


def to_batch_tensor(arrays: list[np.ndarray]) -> torch.Tensor:
    """H x W x 3 uint8 arrays -> B x 3 x H x W uint8 tensor."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def to_arrays(batch: torch.Tensor) -> list[np.ndarray]:
    return list(batch.permute(0, 2, 3, 1).contiguous().cpu().numpy())


class MethodPass:
    """One (dataset, method) pass over this process's shard of batches."""

    def __init__(self, items: list[Item], method: Method, restore, metrics: MetricSet,
                 method_dir: Path, cache_key: dict[str, Any], batch_size: int,
                 allow_size: str, ctx: DistContext, device: torch.device,
                 workers: int = 2, show_progress: bool = True) -> None:
        self.items = items
        self.method = method
        self.restore = restore             # uint8 batch -> uint8 batch; None: identity
        self.metrics = metrics
        self.method_dir = Path(method_dir)
        self.images_dir = self.method_dir / "images"
        self.write_images = method.kind != "folder"   # folder: the results already exist
        self.cache = RestoreCache(self.method_dir, cache_key, rank=ctx.rank)
        self.stores = {name: StateStore(self.method_dir, metrics.metric_id(name, batch_size))
                       for name in metrics.metrics}
        self.batch_size = batch_size
        self.allow_size = allow_size
        self.ctx = ctx
        self.device = device
        self.workers = workers
        self.show_progress = show_progress
        self.started = ""                 # ISO time the pass began
        self.outcome: PassOutcome | None = None

    # -- reading (prefetch thread) ---------------------------------------------------------
    def _output_path(self, item: Item) -> Path:
        return self.images_dir / f"{item.stem}.png" if self.write_images else item.source

    def _decode(self, batch: _Batch, path: Path, measured_as_file: bool):
        """(pixels, info) of a file; for a file measured as it is (a reference, a folder's
        result) also its own grey decode where a metric reads files in grey (Deg., IDS) and
        it is not a PNG, kept in ``batch.grays``."""
        if not (measured_as_file and self.metrics.needs_file_gray):
            return read_image_with_info(path)
        array, info, gray = read_image_and_gray(path)
        if gray is not None:
            batch.grays[path] = gray
        return array, info

    def _read(self, batch: _Batch, p: int, role: str) -> np.ndarray | None:
        """Decode the position's input (``role`` "input") or reference, noting conversions; a
        file that cannot be used fails its item."""
        item = batch.items[p]
        try:
            # a model's input is not measured; a folder's result is, as its file holds it
            array, info = self._decode(batch, item.source if role == "input" else item.reference,
                                       role == "reference" or not self.write_images)
        except ImageError as exc:
            batch.failed[item.stem] = str(exc)
            return None
        batch.notes[(role, p)] = list(info.notes)
        return array

    def _prepare(self, number: int, items: list[Item], pool: ThreadPoolExecutor) -> _Batch:
        failed: dict[str, str] = {}
        input_sha = list(pool.map(lambda it: _sha_or_error(it.source), items))
        for item, sha in zip(items, input_sha):
            if sha.startswith("error:"):
                failed[item.stem] = sha[len("error:"):]
        reference_sha = list(pool.map(
            lambda it: _sha_or_error(it.reference) if it.reference and
            self.metrics.needs_reference else "", items))
        cached: list[dict | None] = []
        suspects = []         # reused PNGs whose size or mtime is not the journaled one
        for p, (item, sha) in enumerate(zip(items, input_sha)):
            entry = self.cache.entry(item.stem, sha)
            if entry is not None and self.write_images:
                written = _stat_or_none(self._output_path(item))
                if written is None:
                    entry = None
                elif (entry.get("png_size"), entry.get("png_mtime_ns")) != \
                        (written.st_size, written.st_mtime_ns):
                    suspects.append(p)
            cached.append(entry)
        batch = _Batch(number, items, input_sha, reference_sha,
                       [e["output_sha256"] if e else None for e in cached], cached, failed)
        for p, array in zip(suspects, pool.map(lambda p: self._read_cached(batch, p), suspects)):
            if array is None:
                batch.replaced.append(items[p].stem)
            else:
                batch.outputs[p] = array
                batch.refresh.add(p)
        if self._metrics_to_update(batch, batch.cached_sha):
            unread = [p for p, sha in enumerate(batch.cached_sha)
                      if sha is not None and p not in batch.outputs]
            for p, array in zip(unread, pool.map(lambda p: self._read_cached(batch, p), unread)):
                if array is not None:
                    batch.outputs[p] = array
            if self.metrics.needs_reference:
                ref_pos = [p for p, it in enumerate(items) if it.reference is not None]
                refs = pool.map(lambda p: self._read(batch, p, "reference"), ref_pos)
                batch.references = {p: a for p, a in zip(ref_pos, refs) if a is not None}
        restore_pos = [p for p, sha in enumerate(batch.cached_sha)
                       if sha is None and items[p].stem not in failed]
        for p, array in zip(restore_pos, pool.map(lambda p: self._read(batch, p, "input"),
                                                   restore_pos)):
            if array is not None:
                batch.sources[p] = array
        return batch

    def _read_cached(self, batch: _Batch, p: int) -> np.ndarray | None:
        """The reused output if its pixels are the journaled ones; else None, and the position
        is to be restored again (its PNG was changed or removed)."""
        item = batch.items[p]
        try:
            array, info = self._decode(batch, self._output_path(item), not self.write_images)
        except ImageError:
            array = None
        if array is None or pixels_sha256(array) != batch.cached_sha[p]:
            batch.cached_sha[p] = batch.cached[p] = None
            return None
        if not self.write_images:     # a folder method's output is the user's file
            batch.notes[("input", p)] = list(info.notes)
        return array

    # -- metrics bookkeeping -----------------------------------------------------------------
    def _fingerprints(self, batch: _Batch, output_sha: list[str | None]) -> dict[str, str]:
        return {it.stem: f"{it.index}:{sha}:{ref}"
                for it, sha, ref in zip(batch.items, output_sha, batch.reference_sha)
                if sha is not None and it.stem not in batch.failed}

    def _metrics_to_update(self, batch: _Batch, output_sha: list[str | None]) -> list[str]:
        """Metrics without valid stored states for this batch (all of them while some image of
        the batch still has to be restored: its output hash is not known yet). The states found
        are kept in ``batch.stored``."""
        if any(sha is None for sha in output_sha):
            return list(self.metrics.metrics)
        fingerprints = self._fingerprints(batch, output_sha)
        loaded = {name: store.load(batch.number, fingerprints)
                  for name, store in self.stores.items()}
        batch.stored = {name: found[0] if found else None for name, found in loaded.items()}
        batch.stored_threads = {found[1] for found in loaded.values() if found and found[1]}
        return [name for name, states in batch.stored.items() if states is None]

    # -- the pass ---------------------------------------------------------------------------
    def run(self) -> PassOutcome:
        for _ in self.steps():
            pass
        return self.outcome

    def steps(self):
        """The pass, one batch per step (a generator): several passes over the same items can
        go batch by batch in lockstep (:func:`run_in_lockstep`). The result is ``self.outcome``."""
        outcome = self.outcome = PassOutcome(
            batch_states={name: {} for name in self.metrics.metrics},
            threads=torch.get_num_threads())
        # Only this pass's own time counts: in lockstep the other passes run between its steps.
        resumed = time.perf_counter()
        self.started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        batches = [self.items[i:i + self.batch_size]
                   for i in range(0, len(self.items), self.batch_size)]
        mine = self.ctx.shard(list(enumerate(batches)))
        bar = progress(sum(len(b) for _, b in mine), f"{self.method.slug}",
                       self.show_progress)
        with ThreadPoolExecutor(self.workers) as pool, ThreadPoolExecutor(1) as prefetch:
            pending: Future | None = None
            for position, (number, items) in enumerate(mine):
                if pending is None:
                    pending = prefetch.submit(self._prepare, number, items, pool)
                batch = pending.result()
                if position + 1 < len(mine):
                    pending = prefetch.submit(self._prepare, *mine[position + 1], pool)
                self._run_batch(batch, pool, outcome)
                bar.update(len(items))
                outcome.seconds += time.perf_counter() - resumed
                yield number
                resumed = time.perf_counter()
        bar.close()
        self.cache.close()
        outcome.seconds += time.perf_counter() - resumed

    def _run_batch(self, batch: _Batch, pool: ThreadPoolExecutor, outcome: PassOutcome) -> None:
        output_sha = list(batch.cached_sha)
        restored = dict(batch.outputs)
        writes: list[tuple[int, Future]] = []
        new_entries: dict[str, dict] = {}
        for positions, lq in self._restore_groups(batch):
            arrays = to_arrays(self.restore(lq) if self.restore else lq)
            for p, array in zip(positions, arrays):
                item = batch.items[p]
                restored[p] = array
                output_sha[p] = pixels_sha256(array)
                if self.write_images:
                    writes.append((p, pool.submit(write_png_atomic, self._output_path(item),
                                                  array)))
                new_entries[item.stem] = {"input_sha256": batch.input_sha[p],
                                          "output_sha256": output_sha[p],
                                          "threads": outcome.threads}
        outcome.restored += len(new_entries)
        reused = [p for p, sha in enumerate(batch.cached_sha)
                  if sha is not None and batch.items[p].stem not in batch.failed]
        outcome.reused += len(reused)
        outcome.reused_threads.update(batch.cached[p]["threads"] for p in reused
                                      if batch.cached[p].get("threads") not in
                                      (None, outcome.threads))
        outcome.replaced += batch.replaced

        # The commit point: the batch's PNGs are in place and journaled before any metric runs.
        for p, write in writes:
            write.result()
            new_entries[batch.items[p].stem].update(_png_stat(self._output_path(batch.items[p])))
        journal = self._entries_to_journal(batch, new_entries, reused)
        if journal:
            self.cache.record(journal)
            outcome.entries.update(journal)
        for p, sha in enumerate(output_sha):
            if sha is not None and batch.items[p].stem not in batch.failed:
                self._note_conversions(batch, p, outcome)

        names = (self._metrics_to_update(batch, output_sha) if new_entries or not batch.stored
                 else [name for name, states in batch.stored.items() if states is None])
        for name in set(self.metrics.metrics) - set(names):
            outcome.batch_states[name][batch.number] = batch.stored[name]
        outcome.reused_threads.update(batch.stored_threads - {outcome.threads})
        if names:
            try:
                states = self.metrics.update(names, self._metric_groups(batch, restored))
            except ImageTooSmall as exc:      # an option that no image of that size allows
                first = next((self._output_path(batch.items[p]) for p in sorted(restored)
                              if restored[p].shape[:2] == exc.size), None)
                if first is None:
                    raise
                raise ImageTooSmall(f"{first}: {exc}", exc.size) from None
            fingerprints = self._fingerprints(batch, output_sha)
            for name, state in states.items():
                self.stores[name].save(batch.number, fingerprints, state, outcome.threads)
                outcome.batch_states[name][batch.number] = state
        outcome.failed.update(batch.failed)

    def _entries_to_journal(self, batch: _Batch, new_entries: dict[str, dict],
                            reused: list[int]) -> dict[str, dict]:
        """The new entries, and the reused ones whose PNG stat or reading notes this batch
        refreshed, each with the notes of the files read for it."""
        journal = {}
        for p, item in enumerate(batch.items):
            if item.stem in new_entries:
                entry = new_entries[item.stem]
            elif p in reused:
                entry = dict(batch.cached[p])
            else:
                continue
            if p in batch.refresh:
                entry.update(_png_stat(self._output_path(item)))
            if ("input", p) in batch.notes:
                entry["input_notes"] = batch.notes[("input", p)]
            if ("reference", p) in batch.notes:
                entry.update(reference_sha256=batch.reference_sha[p],
                             reference_notes=batch.notes[("reference", p)])
            if item.stem in new_entries or entry != batch.cached[p]:
                journal[item.stem] = entry
        return journal

    def _note_conversions(self, batch: _Batch, p: int, outcome: PassOutcome) -> None:
        """The reading notes of the position's files: from this batch's reads, else from the
        reused journal entry (the reference's only while its hash is the journaled one)."""
        item = batch.items[p]
        entry = batch.cached[p] or {}
        input_notes = batch.notes.get(("input", p), entry.get("input_notes"))
        reference_notes = batch.notes.get(("reference", p))
        if reference_notes is None and entry.get("reference_sha256") == batch.reference_sha[p]:
            reference_notes = entry.get("reference_notes")
        for path, notes in ((item.source, input_notes), (item.reference, reference_notes)):
            if path is not None and notes:
                outcome.conversions[str(path)] = list(notes)

    def _restore_groups(self, batch: _Batch):
        """(positions, uint8 batch) per input shape, after the size check."""
        by_shape: dict[tuple, list[int]] = {}
        for p, array in sorted(batch.sources.items()):
            problem = size_error(self.method, *array.shape[:2], allow_size=self.allow_size)
            if problem:
                batch.failed[batch.items[p].stem] = f"{batch.items[p].source}: {problem}"
                continue
            by_shape.setdefault(array.shape, []).append(p)
        for positions in by_shape.values():
            yield positions, to_batch_tensor([batch.sources[p] for p in positions])

    def _metric_groups(self, batch: _Batch, restored: dict[int, np.ndarray]):
        device = self.device
        by_shape: dict[tuple, list[int]] = {}
        for p in sorted(restored):
            stem = batch.items[p].stem
            if stem in batch.failed:
                continue
            if self.metrics.needs_reference:
                reference = batch.references.get(p)
                if reference is None:
                    continue
                if reference.shape != restored[p].shape:
                    batch.failed[stem] = (f"{stem}: restored {restored[p].shape[:2]} and "
                                          f"reference {reference.shape[:2]} differ in size")
                    continue
            by_shape.setdefault(restored[p].shape, []).append(p)
        groups = []
        for positions in by_shape.values():
            out = to_batch_tensor([restored[p] for p in positions]).to(device)
            ref = (to_batch_tensor([batch.references[p] for p in positions]).to(device)
                   if self.metrics.needs_reference else None)
            index = torch.tensor([batch.items[p].index for p in positions], dtype=torch.long)
            file_gray = None
            if batch.grays:
                file_gray = FileGray(
                    [batch.grays.get(self._output_path(batch.items[p])) for p in positions],
                    [batch.grays.get(batch.items[p].reference) for p in positions])
            groups.append((out, ref, index, file_gray))
        return groups


def run_in_lockstep(passes: list[MethodPass]) -> list[PassOutcome]:
    """Run passes over the same items batch by batch: batch k of every pass before batch k+1 of
    any, so whatever a batch shares between the passes (LPIPS's reference features, a sweep's
    restored outputs: :class:`vqfr.run.restorer.SweepRestorer`) is computed once. A pass that raises a ``VqfrError`` stops there with the message in ``error``; the
    others go on."""
    steps = [(p, p.steps()) for p in passes]
    while steps:
        for one_pass, step in list(steps):
            try:
                finished = next(step, None) is None
            except OutputError:        # a full or read-only disk stops every pass
                raise
            except VqfrError as exc:   # steps() set its outcome before any work
                one_pass.outcome.error = str(exc)
                finished = True
            if finished:
                steps.remove((one_pass, step))
    return [p.outcome for p in passes]


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def _png_stat(path: Path) -> dict[str, int]:
    """What a written PNG is recognised by on a rerun without decoding it."""
    written = os.stat(path)
    return {"png_size": written.st_size, "png_mtime_ns": written.st_mtime_ns}


def _sha_or_error(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        return f"error:{path}: cannot read the file ({exc.strerror or exc})"
