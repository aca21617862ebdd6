"""Model zoo (timm style): the catalogue of models and assets, downloads, safe loading.

    from vqfr.zoo import create_model, resolve_asset
    net = create_model("vqfr-v2", device="cuda")             # official weights, eval mode
    net = create_model("vqfr-v1", synthetic_seed=1)           # the documented synthetic weights
    path = resolve_asset("niqe-params").path                  # cache, else download
    overrides = parse_asset_overrides(["vqfr-v1=/data/VQFR_v1-33a1fac5.pth"])
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from vqfr.errors import VqfrError
from vqfr.zoo import catalog  # noqa: F401  (registers the entries)
from vqfr.zoo.cache import cache_dir, sha256_file, weights_dir
from vqfr.zoo.checkpoint import CheckpointError, load_checkpoint_file, load_state_dict_file
from vqfr.zoo.factory import create_model, load_asset_state_dict
from vqfr.zoo.registry import ASSETS, MODELS, Asset, ModelSpec, register_asset, register_model
from vqfr.zoo.resolve import ResolvedAsset, asset_cache_path, get_asset, resolve_asset
from vqfr.zoo.specs import get_model_spec, list_models
from vqfr.zoo.synthetic import (synthetic_checkpoint, synthetic_state_dict,
                                write_synthetic_checkpoint)

__all__ = [
    "ASSETS", "MODELS", "Asset", "CheckpointError", "ModelSpec", "ResolvedAsset",
    "asset_cache_path", "cache_dir", "create_model", "get_asset", "get_model_spec",
    "list_assets", "list_models", "load_asset_state_dict", "load_checkpoint_file",
    "load_state_dict_file", "parse_asset_overrides", "register_asset", "register_model",
    "resolve_asset", "sha256_file", "synthetic_checkpoint", "synthetic_state_dict",
    "weights_dir", "write_synthetic_checkpoint",
]


def list_assets() -> list[str]:
    return sorted(ASSETS)


def parse_asset_overrides(items: Iterable[str] | None) -> dict[str, Path]:
    """``["NAME=PATH", ...]`` (the ``--asset`` option of every command) -> {name: path}; every
    PATH must be an existing file."""
    overrides: dict[str, Path] = {}
    for item in items or ():
        name, sep, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise VqfrError(f"--asset {item!r}: expected NAME=PATH, e.g. "
                            "--asset vqfr-v1=/data/VQFR_v1-33a1fac5.pth")
        if name not in ASSETS:
            raise VqfrError(f"--asset {item!r}: unknown asset {name!r}; known assets: "
                            f"{', '.join(list_assets())}")
        if name in overrides:
            raise VqfrError(f"--asset {name}=... given twice")
        file = Path(path).expanduser()
        if not file.is_file():   # a named file that is not there is a typo, never a skip
            raise VqfrError(f"--asset {item!r}: {file} "
                            f"{'is not a file' if file.exists() else 'does not exist'}")
        overrides[name] = file
    return overrides
