"""``create_model``: architecture + weights (official file or synthetic), strictly loaded."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from vqfr.errors import VqfrError
from vqfr.zoo.checkpoint import (extract_state_dict, load_checkpoint_file, load_into,
                                  load_state_dict_file)
from vqfr.zoo.resolve import get_asset, resolve_asset
from vqfr.zoo.specs import build_arch, get_model_spec
from vqfr.zoo.synthetic import synthetic_checkpoint

Overrides = Mapping[str, str | Path] | None


def load_asset_state_dict(name: str, overrides: Overrides = None) -> dict[str, torch.Tensor]:
    """The state dict of weights asset ``name`` (resolved, safely loaded, key prefix removed)."""
    asset = get_asset(name)
    if asset.format != "state_dict":
        raise VqfrError(f"asset {name!r} ({asset.filename}) holds {asset.format} data, not "
                        "network weights; resolve_asset() gives its path")
    path = resolve_asset(name, overrides).path
    return load_state_dict_file(path, asset.checkpoint_key, asset.key_prefix)


def create_model(name: str, overrides: Overrides = None, device: str | torch.device = "cpu",
                 synthetic_seed: int | None = None, **config: Any) -> torch.nn.Module:
    """Build model ``name`` in eval mode on ``device``, loaded strictly with its weights.

    ``synthetic_seed`` loads the documented synthetic weights (``vqfr.zoo.synthetic``) instead of
    the official file; ``config`` overrides constructor arguments of the official config.
    """
    spec = get_model_spec(name)
    asset = get_asset(spec.asset)
    model = build_arch(spec, **config)
    if synthetic_seed is None:
        origin = str(resolve_asset(spec.asset, overrides).path)
        checkpoint = load_checkpoint_file(origin)
    else:
        origin = f"synthetic weights for {name} (seed {synthetic_seed})"
        checkpoint = synthetic_checkpoint(name, synthetic_seed, layout=model)
    state = extract_state_dict(checkpoint, asset.checkpoint_key, asset.key_prefix, origin)
    load_into(model, state, origin)
    return model.to(device).eval()
