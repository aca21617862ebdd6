"""Model specs: lookup, listing, and building the (unloaded) architecture."""
from __future__ import annotations

import importlib
from typing import Any

import torch

from vqfr.errors import VqfrError
from vqfr.zoo.registry import MODELS, ModelSpec


def list_models() -> list[str]:
    return sorted(MODELS)


def get_model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise VqfrError(f"unknown model {name!r}; known models: {', '.join(list_models())}") \
            from None


def arch_class(spec: ModelSpec) -> type[torch.nn.Module]:
    module_name, _, class_name = spec.arch.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise VqfrError(f"model {spec.name!r}: architecture module {module_name} is not "
                            "available in this installation") from None
        raise
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise VqfrError(f"model {spec.name!r}: {module_name} has no class {class_name}") from None


def build_arch(spec: ModelSpec, on_meta: bool = False, **config: Any) -> torch.nn.Module:
    """The architecture with ``spec.config`` updated by ``config``; randomly initialised, or on
    the meta device (shapes only, nothing allocated) when ``on_meta``."""
    cls = arch_class(spec)
    kwargs = {**spec.config, **config}
    if on_meta:
        try:
            with torch.device("meta"):
                return cls(**kwargs)
        except Exception:  # a constructor that computes values (e.g. via numpy) needs real memory
            pass
    return cls(**kwargs)
