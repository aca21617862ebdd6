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
                      assets: Mapping[str, str] | None = None
                      ) -> tuple[dict[str, torch.Tensor], str]:
    """``weights`` (a checkpoint path or a loaded state dict) as a state dict; ``None`` resolves
    weights asset ``asset`` through ``vqfr.zoo`` with the ``--asset`` overrides ``assets``.
    Also returns where it came from, for messages: the file and the asset name."""
    from vqfr.zoo import get_asset, load_state_dict_file, resolve_asset
    from vqfr.zoo.checkpoint import extract_state_dict

    spec = get_asset(asset)
    if isinstance(weights, Mapping):
        return (extract_state_dict(weights, spec.checkpoint_key, spec.key_prefix,
                                   origin=f"the {asset} weights given"),
                f"the {asset} weights given")
    path = resolve_asset(asset, assets).path if weights is None else Path(weights)
    return (load_state_dict_file(path, spec.checkpoint_key, spec.key_prefix),
            f"{path} (asset {asset})")
