"""Safe checkpoint loading (``torch.load(weights_only=True)``) with the official key handling.

Official loaders differ slightly; the union is accepted:
- VQFR ``BaseModel.load_network``: the configured key, falling back to ``params``; strips
  ``module.`` from every key; strict.
- GFPGANer / VQFR demo: ``params_ema`` when present, else ``params``; strict.
- Metric networks: bare state dicts (arcface-pytorch's is saved from DataParallel: ``module.``).
"""
from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqfr.errors import VqfrError

WRAPPER_KEYS = ("params_ema", "params")


class CheckpointError(VqfrError):
    """A file is not a usable checkpoint; the message names it."""


class UnsafeCheckpointError(CheckpointError):
    """Safe loading (``weights_only=True``) refused a file: it pickles more than tensors and
    plain containers."""


def _keys(mapping: Mapping, limit: int = 12) -> str:
    keys = [repr(k) for k in list(mapping)[:limit]]
    return ", ".join(keys) + (f", ... ({len(mapping)} keys)" if len(mapping) > limit else "")


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def extract_state_dict(checkpoint: Any, checkpoint_key: str | None = None, key_prefix: str = "",
                       origin: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint object, with ``key_prefix``/``module.`` removed."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{origin} holds a {type(checkpoint).__name__}, not a dict of "
                              "tensors")
    candidates = [k for k in (checkpoint_key, *WRAPPER_KEYS) if k]
    found = next((k for k in candidates if k in checkpoint), None)
    state = checkpoint[found] if found else checkpoint
    if not _is_state_dict(state):
        where = f"key {found!r} of {origin}" if found else origin
        wanted = " / ".join(repr(k) for k in dict.fromkeys(candidates))
        raise CheckpointError(f"{where} is not a state dict (expected the weights under "
                              f"{wanted} or a flat name -> tensor dict); it has keys: "
                              f"{_keys(state) if isinstance(state, Mapping) else type(state)}")
    prefixes = tuple(p for p in dict.fromkeys((key_prefix, "module.")) if p)
    result = {}
    for key, value in state.items():
        for prefix in prefixes:
            if key.startswith(prefix):
                key = key[len(prefix):]
                break
        result[key] = value
    return result


def _numpy_array_globals() -> list:
    """What unpickling numpy arrays needs, under numpy 2 names and the numpy 1 ``numpy.core``
    names that older files (e.g. the official FID statistics) were written with."""
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    dtypes = [type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG"]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtypes,
            (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
            (multiarray.scalar, "numpy.core.multiarray.scalar")]


def load_checkpoint_file(path: str | Path, allow_numpy: bool = False) -> Any:
    """``torch.load`` on CPU that refuses anything but tensors and plain containers
    (plus numpy arrays with ``allow_numpy``, for files like the FID statistics)."""
    path = Path(path)
    allowed = _numpy_array_globals() if allow_numpy else []
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except pickle.UnpicklingError as exc:
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. |\n|$)", str(exc))
        raise UnsafeCheckpointError(
            f"{path} is not a valid PyTorch checkpoint of plain weights: safe loading "
            f"(weights_only=True) refused it ({detail.group(1) if detail else exc})") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise CheckpointError(f"{path} is not a valid PyTorch checkpoint ({exc})") from None


def load_state_dict_file(path: str | Path, checkpoint_key: str | None = None,
                         key_prefix: str = "") -> dict[str, torch.Tensor]:
    return extract_state_dict(load_checkpoint_file(path), checkpoint_key, key_prefix,
                              origin=str(path))


def load_into(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor],
              origin: str) -> None:
    """``load_state_dict(strict=True)`` with an error that lists the differences and the file."""
    own = module.state_dict()
    # BatchNorm fills in a missing num_batches_tracked itself (files from torch < 0.4.1).
    missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [f"{k}: file {tuple(state_dict[k].shape)}, model {tuple(own[k].shape)}"
                   for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or unexpected or wrong_shape:
        lines = [f"{origin} does not fit {type(module).__name__}:"]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", wrong_shape)):
            if items:
                shown = ", ".join(items[:20]) + (f", ... ({len(items)} in all)"
                                                 if len(items) > 20 else "")
                lines.append(f"  {title}: {shown}")
        raise CheckpointError("\n".join(lines))
    module.load_state_dict(state_dict, strict=True)
