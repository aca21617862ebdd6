"""Deterministic synthetic weights: every tensor depends only on (seed, key, shape, dtype).

The rule is the project's reference (shared/reference/synth_weights.py), so two independent
implementations of an architecture get identical weights and their outputs can be compared:

  integer / bool dtype                     zeros
  key contains 'running_var'               1 + 0.1 * U[0, 1)
  key contains 'running_mean'              0.1 * N(0, 1)
  ndim >= 2                                N(0, 1) / sqrt(prod(shape[1:]))
  ndim <= 1 and key ends with 'weight'     1 + 0.1 * N(0, 1)
  otherwise                                0.02 * N(0, 1)

drawn in float32 from a ``torch.Generator`` seeded with the first 8 bytes (little endian, top bit
cleared) of sha256(f"{seed}:{key}"), then cast. Keys are the checkpoint's on-disk keys (with
e.g. the ``module.`` prefix), as in the reference goldens.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from vqfr.zoo.registry import MODELS
from vqfr.zoo.resolve import get_asset
from vqfr.zoo.specs import build_arch

# A layout: an nn.Module, a state dict, a reference manifest {"tensors": [{key, shape, dtype}]}
# or (key, shape, dtype) triples.
Layout = torch.nn.Module | Mapping[str, Any] | Iterable[tuple[str, Any, Any]]


def _generator(seed: int, key: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2 ** 63 - 1))


def synthetic_tensor(seed: int, key: str, shape: Iterable[int],
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    shape = tuple(int(s) for s in shape)
    if not dtype.is_floating_point:
        return torch.zeros(shape, dtype=dtype)
    generator = _generator(seed, key)
    if "running_var" in key:
        values = 1 + 0.1 * torch.rand(shape, generator=generator)
    elif "running_mean" in key:
        values = 0.1 * torch.randn(shape, generator=generator)
    elif len(shape) >= 2:
        values = torch.randn(shape, generator=generator) / math.sqrt(max(1, math.prod(shape[1:])))
    elif key.endswith("weight"):
        values = 1 + 0.1 * torch.randn(shape, generator=generator)
    else:
        values = 0.02 * torch.randn(shape, generator=generator)
    return values.to(dtype)


def _dtype(value: Any) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    return getattr(torch, str(value or "float32").removeprefix("torch."))


def tensor_layout(layout: Layout) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """(key, shape, dtype) for every entry of a module, state dict, manifest or triple list."""
    if isinstance(layout, torch.nn.Module):
        layout = layout.state_dict()
    if isinstance(layout, Mapping) and "tensors" in layout and not isinstance(
            layout["tensors"], torch.Tensor):
        return [(e["key"], tuple(e["shape"]), _dtype(e.get("dtype"))) for e in layout["tensors"]]
    if isinstance(layout, Mapping):
        return [(key, tuple(t.shape), t.dtype) for key, t in layout.items()]
    return [(key, tuple(shape), _dtype(dtype)) for key, shape, dtype in layout]


def synthetic_state_dict(layout: Layout, seed: int,
                         key_prefix: str = "") -> dict[str, torch.Tensor]:
    """Synthetic weights for ``layout``; ``key_prefix`` is prepended to every key first."""
    return {key_prefix + key: synthetic_tensor(seed, key_prefix + key, shape, dtype)
            for key, shape, dtype in tensor_layout(layout)}


def synthetic_checkpoint(name: str, seed: int, layout: Layout | None = None) -> dict[str, Any]:
    """The synthetic counterpart of asset/model ``name``'s official file, in its on-disk format:
    under the asset's checkpoint key and with its key prefix. ``layout`` defaults to the
    model's architecture (built without allocating weights where possible)."""
    if name in MODELS:
        asset = get_asset(MODELS[name].asset)
        if layout is None:
            layout = build_arch(MODELS[name], on_meta=True)
    else:
        asset = get_asset(name)
        if layout is None:
            raise ValueError(f"{name!r} is an asset without a model spec: pass its layout")
    state = synthetic_state_dict(layout, seed, asset.key_prefix)
    return {asset.checkpoint_key: state} if asset.checkpoint_key else state


def write_synthetic_checkpoint(name: str, path: str | Path, seed: int = 1,
                               layout: Layout | None = None) -> Path:
    """Write the synthetic checkpoint of ``name`` (see ``synthetic_checkpoint``) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(synthetic_checkpoint(name, seed, layout), path)
    return path
