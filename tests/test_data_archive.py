"""Import (zip, tar, folder) -> verify round trip, and refusal of unsafe archives."""
from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from vqfr.cli import main
from vqfr.data import archive
from vqfr.data.archive import UnsafeArchive, import_dataset
from vqfr.data.datasets import open_dataset
from vqfr.data.verify import verify_dataset
from vqfr.errors import VqfrError

MANIFEST = """name = "tiny"
title = "Tiny paired"
paired = true
counts = [3]
resolution = [32, 32]
paper_metrics = ["psnr"]
[layout]
lq = "lq"
hq = "hq"
[archive]
lq_dirs = ["celeba_512_validation_lq"]
hq_dirs = ["celeba_512_validation"]
[source]
downloads = ["https://example.invalid/tiny.zip"]
"""
STEMS = ("00000000", "00000001", "00000002")


def png_bytes(seed: int, size=(32, 32)) -> bytes:
    img = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    return cv2.imencode(".png", img)[1].tobytes()


def official_members():
    members = {}
    for i, stem in enumerate(STEMS):
        members[f"celeba_512_validation_lq/{stem}.png"] = png_bytes(i)
        members[f"celeba_512_validation/{stem}.png"] = png_bytes(100 + i)
    members["celeba_512_validation/readme.txt"] = b"hello"
    members["__MACOSX/celeba_512_validation/._00000000.png"] = b"junk"
    return members


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "tiny.toml").write_text(MANIFEST)
    return root


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_import_verify_round_trip(tmp_path, root, kind, capsys):
    maker = make_zip if kind == "zip" else make_tar
    source = maker(tmp_path / f"celeba.{kind}", official_members())
    result = import_dataset("tiny", [source], root=root)
    assert (result.lq_count, result.hq_count) == (3, 3)
    assert result.skipped == [f"celeba.{kind}:celeba_512_validation/readme.txt"]
    lq = sorted(p.name for p in (root / "tiny" / "lq").iterdir())
    assert lq == [f"{s}.png" for s in STEMS]
    assert (root / "tiny" / "hq" / "00000001.png").read_bytes() == png_bytes(101)
    assert (root / "tiny" / "lq" / "00000001.png").read_bytes() == png_bytes(1)
    assert verify_dataset("tiny", root).comparable
    data = open_dataset("tiny", root)
    assert data.paired and [i.stem for i in data.items] == list(STEMS)
    assert main(["datasets", "verify", "tiny", "--root", str(root)]) == 0
    # a second import refuses to overwrite, --force replaces the set as a whole
    with pytest.raises(VqfrError, match="--force"):
        import_dataset("tiny", [source], root=root)
    import_dataset("tiny", [source], root=root, force=True)
    assert sorted(p.name for p in root.iterdir()) == ["tiny", "tiny.toml"]


def test_separate_archives_and_subdir_overrides(tmp_path, root):
    lq = make_zip(tmp_path / "lq.zip", {f"x/inputs/{s}_lq.png": png_bytes(i)
                                         for i, s in enumerate(STEMS)})
    hq_dir = tmp_path / "gtfolder" / "faces"
    hq_dir.mkdir(parents=True)
    for i, s in enumerate(STEMS):
        (hq_dir / f"{s}.png").write_bytes(png_bytes(100 + i))
    with pytest.raises(VqfrError, match="--lq-subdir"):
        import_dataset("tiny", [lq, tmp_path / "gtfolder"], root=root)
    import_dataset("tiny", [lq, tmp_path / "gtfolder"], root=root, lq_subdir="inputs",
                   hq_subdir="faces")
    data = open_dataset("tiny", root)
    assert [(i.stem, i.hq_path.name) for i in data.items] == [(f"{s}_lq", f"{s}.png")
                                                             for s in STEMS]


def _assert_nothing_written(tmp_path, root):
    assert sorted(p.name for p in root.iterdir()) == ["tiny.toml"]
    assert not list(tmp_path.rglob("evil*"))


@pytest.mark.parametrize("bad", ["../evil.png", "/tmp/evil_abs.png", "a/../../evil.png",
                                 "symlink", "backslash"])
def test_malicious_zip_refused(tmp_path, root, bad):
    members = official_members()
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if bad == "symlink":
            info = zipfile.ZipInfo("celeba_512_validation_lq/00000009.png")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "../../evil_target")
        elif bad == "backslash":
            zf.writestr("..\\evil.png", b"x")
        else:
            zf.writestr(zipfile.ZipInfo(bad), png_bytes(7))
    with pytest.raises(UnsafeArchive, match="nothing was written"):
        import_dataset("tiny", [path], root=root)
    _assert_nothing_written(tmp_path, root)
    assert not Path("/tmp/evil_abs.png").exists()


@pytest.mark.parametrize("bad", ["dotdot", "absolute", "symlink", "hardlink", "device"])
def test_malicious_tar_refused(tmp_path, root, bad):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tf:
        for name, data in official_members().items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo({"dotdot": "../evil.png", "absolute": "/tmp/evil_abs.png"}.get(
            bad, "celeba_512_validation_lq/evil.png"))
        if bad == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif bad == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
        elif bad == "device":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        data = b"" if bad in ("symlink", "hardlink", "device") else png_bytes(9)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(UnsafeArchive) as err:
        import_dataset("tiny", [path], root=root)
    assert "evil" in str(err.value)
    _assert_nothing_written(tmp_path, root)


def test_interrupted_import_leaves_no_half_set(tmp_path, root, monkeypatch):
    source = make_zip(tmp_path / "celeba.zip", official_members())
    real_copy, calls = archive._copy_member, []

    def failing_copy(*args):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        real_copy(*args)

    monkeypatch.setattr(archive, "_copy_member", failing_copy)
    with pytest.raises(KeyboardInterrupt):
        import_dataset("tiny", [source], root=root)
    assert sorted(p.name for p in root.iterdir()) == ["tiny.toml"]
