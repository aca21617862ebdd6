"""A wheel (non-editable install) carries the dataset manifests and the paper-table specs, and an
installed package finds them without a checkout."""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from vqfr.resources import checkout_root, declarative_folder

REPO = Path(__file__).resolve().parents[1]


def test_checkout_folders_are_found():
    assert checkout_root() == REPO
    assert declarative_folder("datasets") == REPO / "datasets"
    assert declarative_folder("eval") == REPO / "eval"
    with pytest.raises(ValueError):
        declarative_folder("vqfr")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy of the sources, so that no build/ or egg-info lands in the checkout.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "vqfr", source / "vqfr",
                    ignore=shutil.ignore_patterns("__pycache__", "_bundled"))
    for folder in ("datasets", "eval"):   # the files only, not any data beside them
        (source / folder).mkdir()
        for path in (REPO / folder).glob("*.toml"):
            shutil.copy2(path, source / folder / path.name)
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(out)], capture_output=True, text=True, timeout=600)
    if build.returncode != 0 and "No module named pip" in build.stderr:
        pytest.skip("pip is not available to build a wheel")
    assert build.returncode == 0, build.stderr
    wheels = list(out.glob("vqfr_eval-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_the_declarative_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("datasets", "eval"):
        for source in (REPO / folder).glob("*.toml"):
            assert f"vqfr/_bundled/{folder}/{source.name}" in names
    # data, not packages: nothing of them is importable at the top level
    assert not any(n.startswith(("datasets/", "eval/")) for n in names)


def test_installed_wheel_finds_manifests_and_specs(wheel, tmp_path):
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:   # a wheel is installed by unpacking it
        archive.extractall(target)
    probe = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(target)!r})
        import vqfr
        assert vqfr.__file__.startswith({str(target)!r}), vqfr.__file__
        from vqfr.resources import checkout_root
        from vqfr.data.datasets import load_manifest, registered_names, data_root
        from vqfr.report.specs import available_specs
        assert checkout_root() is None
        print(",".join(registered_names()))
        print(load_manifest("celeba-test").path)
        print(data_root())
        print(",".join(available_specs()))
    """)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=workdir, timeout=300)
    assert run.returncode == 0, run.stderr
    names, manifest, root, specs = run.stdout.strip().splitlines()
    assert set(names.split(",")) == {p.stem for p in (REPO / "datasets").glob("*.toml")}
    assert manifest.startswith(str(target / "vqfr" / "_bundled" / "datasets"))
    assert root == str(workdir / "datasets")   # data never goes into site-packages
    assert set(specs.split(",")) == {p.stem for p in (REPO / "eval").glob("*.toml")}
