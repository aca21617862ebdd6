"""Pair two lists of image files by file stem, never by sorted position.

The official metric scripts zip two independently sorted ``glob`` lists, so one missing or extra
file shifts every later pair and ``zip`` drops the tail silently. Here files pair by name:

1. a stem present twice on one side (``a.png`` and ``a.jpg``) is *ambiguous* and never paired;
2. identical stems pair (the extension may differ);
3. what is left pairs by *normalised* stem: the suffixes that restoration scripts append are
   stripped from the end, repeatedly. A normalised stem shared by several leftover files on one
   side is ambiguous too;
4. the rest is *missing* (on side a only) or *extra* (on side b only).

Suffixes stripped by default (what the official tools append to output names):
``_00`` .. the face index of GFPGAN ``inference_gfpgan.py``, VQFR ``demo.py`` and CodeFormer
(non-aligned mode): ``{basename}_{idx:02d}.png``; ``_test_vqfr_v1`` / ``_test_vqfr_v2``: BasicSR
test mode saves ``{img_name}_{opt['name']}.png`` with the VQFR test ymls' names; ``_lq``, ``_gt``,
``_hq``: the naming of the VQFR example faces and of many released sets. Callers add their own
(e.g. a ``--suffix`` they passed to an inference script).
"""
from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vqfr.errors import VqfrError

DEFAULT_SUFFIXES = ("_00", "_test_vqfr_v1", "_test_vqfr_v2", "_lq", "_gt", "_hq")


class PairingError(VqfrError):
    """Two file lists do not pair one to one by name."""


@dataclass(frozen=True)
class StemMatch:
    pairs: list[tuple[str, Path, Path]]            # (stem of the a file, a, b), sorted by stem
    missing: list[Path] = field(default_factory=list)    # a files without a b file
    extra: list[Path] = field(default_factory=list)      # b files without an a file
    ambiguous: dict[str, list[Path]] = field(default_factory=dict)  # stem -> clashing files

    @property
    def complete(self) -> bool:
        return not (self.missing or self.extra or self.ambiguous)

    def problems(self, a_label: str = "a", b_label: str = "b") -> list[str]:
        """One line per problem, naming the files."""
        lines = [f"{p.name}: in {a_label} but has no counterpart in {b_label}" for p in self.missing]
        lines += [f"{p.name}: in {b_label} but has no counterpart in {a_label}" for p in self.extra]
        lines += [f"{stem}: ambiguous, several files share the name: "
                  + ", ".join(str(p) for p in paths) for stem, paths in self.ambiguous.items()]
        return lines


def normalise_stem(stem: str, suffixes: Sequence[str] = DEFAULT_SUFFIXES) -> str:
    ordered = sorted(suffixes, key=len, reverse=True)
    changed = True
    while changed:
        changed = False
        for suffix in ordered:
            if suffix and stem.endswith(suffix) and len(stem) > len(suffix):
                stem = stem[: -len(suffix)]
                changed = True
                break
    return stem


def _by_stem(paths: Iterable[Path], ambiguous: dict[str, list[Path]]) -> dict[str, Path]:
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in paths:
        groups[path.stem].append(path)
    unique = {}
    for stem, group in groups.items():
        if len(group) > 1:
            ambiguous.setdefault(stem, []).extend(sorted(group))
        else:
            unique[stem] = group[0]
    return unique


def require_unique_stems(paths: Iterable[str | os.PathLike], label: str) -> None:
    """Refuse a file list in which two files share a stem (``a.png`` and ``a.jpg``): their
    outputs and result rows would be indistinguishable."""
    ambiguous: dict[str, list[Path]] = {}
    _by_stem(map(Path, paths), ambiguous)
    if ambiguous:
        lines = StemMatch(pairs=[], ambiguous=ambiguous).problems()
        raise PairingError(f"{label}: {len(ambiguous)} name(s) are ambiguous, one output and "
                           "one result row each is impossible; rename or remove one of each:"
                           "\n  " + "\n  ".join(lines))


def match_stems(a_paths: Iterable[str | os.PathLike], b_paths: Iterable[str | os.PathLike], *,
                suffixes: Sequence[str] = DEFAULT_SUFFIXES, strict: bool = False,
                a_label: str = "a", b_label: str = "b") -> StemMatch:
    """Pair ``a_paths`` with ``b_paths`` by stem (see the module doc). With ``strict`` any
    missing, extra or ambiguous file raises ``PairingError`` listing them all."""
    ambiguous: dict[str, list[Path]] = {}
    a_by_stem = _by_stem(map(Path, a_paths), ambiguous)
    b_by_stem = _by_stem(map(Path, b_paths), ambiguous)

    pairs = [(stem, a_by_stem.pop(stem), b_by_stem.pop(stem))
             for stem in sorted(set(a_by_stem) & set(b_by_stem))]

    a_norm: dict[str, list[str]] = defaultdict(list)
    b_norm: dict[str, list[str]] = defaultdict(list)
    for stem in a_by_stem:
        a_norm[normalise_stem(stem, suffixes)].append(stem)
    for stem in b_by_stem:
        b_norm[normalise_stem(stem, suffixes)].append(stem)
    for key in sorted(set(a_norm) & set(b_norm)):
        a_stems, b_stems = a_norm[key], b_norm[key]
        if len(a_stems) == 1 and len(b_stems) == 1:
            pairs.append((a_stems[0], a_by_stem.pop(a_stems[0]), b_by_stem.pop(b_stems[0])))
        else:
            ambiguous[key] = sorted([a_by_stem.pop(s) for s in a_stems]
                                    + [b_by_stem.pop(s) for s in b_stems])
    pairs.sort(key=lambda pair: pair[0])
    match = StemMatch(pairs=pairs, missing=sorted(a_by_stem.values()),
                      extra=sorted(b_by_stem.values()), ambiguous=dict(sorted(ambiguous.items())))
    if strict and not match.complete:
        lines = match.problems(a_label, b_label)
        raise PairingError(f"{len(lines)} file(s) do not pair by name between {a_label} and "
                           f"{b_label} ({len(pairs)} pairs found):\n  " + "\n  ".join(lines))
    return match
