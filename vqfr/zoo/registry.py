"""The model zoo's catalogue: every downloadable file (an *asset*) and every restoration model.

An asset is one file: a checkpoint, a metric network's weights, a parameter file or reference
statistics. A model spec names its architecture (``"module:Class"``, imported lazily), the
constructor config (the official test config), the asset holding its weights and the default
restoration options. The entries themselves are in ``vqfr/zoo/catalog.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Asset:
    name: str                          # e.g. "vqfr-v2", "fid-inception"
    filename: str                      # official file name, e.g. "VQFR_v1-33a1fac5.pth"
    urls: tuple[str, ...] = ()         # direct download URLs, tried in order (may be empty)
    sha256: str | None = None          # full hash when known
    sha256_prefix: str | None = None   # the hex prefix some file names carry
    checkpoint_key: str | None = None  # dict key holding the state dict; None = bare state dict
    key_prefix: str = ""               # stripped on load ("module." for DataParallel files)
    manual: str = ""                   # where to get it by hand (Google Drive pages, ...)
    description: str = ""
    format: str = "state_dict"         # "state_dict" (torch weights), "pickle" (other torch.save
                                       # object, e.g. FID statistics) or "npz" (numpy arrays)


@dataclass(frozen=True)
class ModelSpec:
    name: str                          # e.g. "vqfr-v1"
    arch: str                          # "vqfr.archs.vqfr_v1:VQFRv1"
    asset: str                         # name of the weights asset
    config: dict[str, Any] = field(default_factory=dict)    # constructor kwargs
    options: dict[str, Any] = field(default_factory=dict)   # default restore() options
    input_size: str = "512"            # "512" or "multiple-of-32"
    paper: str = ""                    # citation key / where the method comes from


ASSETS: dict[str, Asset] = {}
MODELS: dict[str, ModelSpec] = {}


def register_asset(asset: Asset) -> Asset:
    if asset.name in ASSETS:
        raise ValueError(f"asset {asset.name!r} registered twice")
    ASSETS[asset.name] = asset
    return asset


def register_model(spec: ModelSpec) -> ModelSpec:
    if spec.name in MODELS:
        raise ValueError(f"model {spec.name!r} registered twice")
    MODELS[spec.name] = spec
    return spec
