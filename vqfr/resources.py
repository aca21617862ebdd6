"""Where the project's declarative files are: ``datasets/*.toml`` (dataset manifests) and
``eval/*.toml`` (paper-table specs).

In a checkout (an editable install included) they are the folders beside the ``vqfr`` package.
Those folders are data, never importable packages (``import datasets`` is HuggingFace's), so a
wheel carries copies of their TOML files under ``vqfr/_bundled/<folder>/``, written by the build
step in ``setup.py``.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED_DIR = PACKAGE_DIR / "_bundled"
DECLARATIVE_FOLDERS = ("datasets", "eval")


def checkout_root() -> Path | None:
    """The source checkout holding this package, or None for an installed wheel (whose parent
    is site-packages, where a folder named ``datasets`` is another project's)."""
    root = PACKAGE_DIR.parent
    project = root / "pyproject.toml"
    try:
        if project.is_file() and 'name = "vqfr-eval"' in project.read_text(encoding="utf-8"):
            return root
    except OSError:
        return None
    return None


def checkout_folder(name: str) -> Path | None:
    """``<checkout>/<name>`` when running from a checkout."""
    root = checkout_root()
    return root / name if root is not None and (root / name).is_dir() else None


def declarative_folder(name: str) -> Path:
    """Where the ``<name>/*.toml`` files shipped with the suite are: the checkout's folder, else
    the wheel's bundled copy (which may be absent in a broken install: callers list nothing)."""
    if name not in DECLARATIVE_FOLDERS:
        raise ValueError(f"unknown folder {name!r}; expected one of {DECLARATIVE_FOLDERS}")
    return checkout_folder(name) or BUNDLED_DIR / name
