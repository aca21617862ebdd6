"""The network weights of a metric: its zoo asset by default, else the file or state dict given.

Either way the state dict comes out as the asset's own file would: unwrapped from the asset's
checkpoint key and with its key prefix (e.g. arcface-pytorch's ``module.``) removed.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

Weights = str | Path | Mapping[str, torch.Tensor] | None


def metric_state_dict(asset: str, weights: Weights = None,
                      assets: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """``weights`` (a checkpoint path or a loaded state dict) as a state dict; ``None`` resolves
    weights asset ``asset`` through ``vqfr.zoo`` with the ``--asset`` overrides ``assets``."""
    from vqfr.zoo import get_asset, load_asset_state_dict, load_state_dict_file
    from vqfr.zoo.checkpoint import extract_state_dict

    if weights is None:
        return load_asset_state_dict(asset, assets)
    spec = get_asset(asset)
    if isinstance(weights, Mapping):
        return extract_state_dict(weights, spec.checkpoint_key, spec.key_prefix,
                                  origin=f"the {asset} weights given")
    return load_state_dict_file(weights, spec.checkpoint_key, spec.key_prefix)
