"""match_stems pairs by name, never by position, and lists every problem."""
from __future__ import annotations

from pathlib import Path

import pytest

from vqfr.data.pairing import PairingError, match_stems, normalise_stem


def P(*names):
    return [Path("/d") / n for n in names]


def test_pairs_by_name_not_position():
    match = match_stems(P("b.png", "a.png", "c.png"), P("c.jpg", "a.png", "b.png"))
    assert [(s, a.name, b.name) for s, a, b in match.pairs] == [
        ("a", "a.png", "a.png"), ("b", "b.png", "b.png"), ("c", "c.png", "c.jpg")]
    assert match.complete


def test_official_output_suffixes():
    lq = P("00000001.png", "Eliane_Karp_0001_00.png", "x_lq.png")
    restored = P("00000001_test_vqfr_v1.png", "Eliane_Karp_0001_00_00.png", "x.png")
    match = match_stems(lq, restored, strict=True)
    assert {(s, b.name) for s, _, b in match.pairs} == {
        ("00000001", "00000001_test_vqfr_v1.png"),
        ("Eliane_Karp_0001_00", "Eliane_Karp_0001_00_00.png"), ("x_lq", "x.png")}
    assert normalise_stem("a_00_lq") == "a"
    assert normalise_stem("_00") == "_00"   # never strips to nothing
    assert match_stems(P("a.png"), P("a_mine.png"), suffixes=("_mine",)).complete


def test_missing_extra_renamed():
    match = match_stems(P("a.png", "b.png", "c.png"), P("a.png", "c.png", "z.png"))
    assert [s for s, _, _ in match.pairs] == ["a", "c"]
    assert [p.name for p in match.missing] == ["b.png"]
    assert [p.name for p in match.extra] == ["z.png"]
    with pytest.raises(PairingError) as info:
        match_stems(P("a.png", "b.png", "c.png"), P("a.png", "c.png", "z.png"), strict=True,
                    a_label="LQ", b_label="HQ")
    text = str(info.value)
    assert "b.png: in LQ but has no counterpart in HQ" in text
    assert "z.png: in HQ but has no counterpart in LQ" in text


def test_duplicate_stems_are_ambiguous_not_paired():
    match = match_stems(P("a.png", "a.jpg", "b.png"), P("a.png", "b.png"))
    assert [s for s, _, _ in match.pairs] == ["b"]
    assert [p.name for p in match.ambiguous["a"]] == ["a.jpg", "a.png"]
    assert [p.name for p in match.extra] == ["a.png"]
    # two leftovers normalising to one key on one side
    match = match_stems(P("k.png"), P("k_00.png", "k_lq.png"))
    assert match.pairs == [] and sorted(p.name for p in match.ambiguous["k"]) == [
        "k.png", "k_00.png", "k_lq.png"]
    with pytest.raises(PairingError, match="ambiguous"):
        match_stems(P("a.png", "a.jpg"), P("a.png"), strict=True)
