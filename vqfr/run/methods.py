"""What a benchmark row is: a *method* resolved from its command-line spelling.

Spellings (``--method`` takes several, comma separated):

- ``vqfr-v2``, ``codeformer:fidelity_weight=0.7``, ``vqfr-v1:branch=texture:twm_disabled=32+16``:
  a zoo model with ``restore()`` options (``key=value`` after colons; tuples joined by ``+``),
  plus the reserved keys ``label=`` (table label) and ``slug=`` (directory name);
- ``folder:PATH``: restored images produced elsewhere, paired with the dataset by file stem;
- ``lq``: the degraded input itself (the "Input" row of the paper tables).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from vqfr.errors import VqfrError
from vqfr.options import key_values, parse_value, split_list

# The comparison rows of the paper tables, in table order.
PAPER_METHODS = ("vqfr-v1", "vqfr-v2", "gfpgan-v1.4", "codeformer", "lq")


@dataclass(frozen=True)
class Method:
    name: str                       # zoo model name, "folder" or "lq"
    kind: str                       # "model" | "folder" | "lq"
    options: dict[str, Any] = field(default_factory=dict)   # restore() options (model)
    label: str = ""
    slug: str = ""
    folder: Path | None = None      # kind == "folder"
    input_size: str = "any"         # what the model accepts: "512", "multiple-of-32", "any"

    def key(self) -> dict[str, Any]:
        """The method part of the restore cache key."""
        return {"name": self.name, "kind": self.kind, "options": self.options,
                "folder": str(self.folder) if self.folder else None}


split_methods = split_list   # ``"a,b:x=1+2"`` -> ``["a", "b:x=1+2"]``


def _slugify(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "method"


def _format_value(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return "+".join(_format_value(v) for v in value) or "none"
    return str(value)


def _model_spec(name: str):
    import vqfr.zoo  # noqa: F401  (registers the catalogue)
    from vqfr.zoo.registry import MODELS

    try:
        return MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS)) or "(none registered)"
        raise VqfrError(f"unknown method {name!r}: use a zoo model ({known}), "
                        "folder:PATH or lq") from None


def _restore_defaults(arch: str) -> dict[str, Any]:
    """The keyword options of the architecture's ``restore()`` and their defaults (so ablation
    options such as ``twm_disabled`` need no catalogue entry); ``return_*`` flags change what
    ``restore()`` returns, not the image, and are not method options."""
    import importlib
    import inspect

    module_name, cls_name = arch.split(":")
    try:
        restore = getattr(importlib.import_module(module_name), cls_name).restore
    except (ImportError, AttributeError):
        return {}
    return {p.name: p.default for p in inspect.signature(restore).parameters.values()
            if p.default is not p.empty and not p.name.startswith("return_")}


def parse_method(spec: str, defaults: Mapping[str, Any] | None = None) -> Method:
    """Resolve one spelling. ``defaults`` (global CLI flags such as ``--fidelity-ratio``, given
    as {option: value}; None values ignored) set that option on every model that has it, unless
    the spelling sets it itself."""
    if spec == "lq":
        return Method(name="lq", kind="lq", label="Input", slug="lq")
    if spec.startswith("folder:"):
        path = Path(spec.split(":", 1)[1]).expanduser()
        if not path.is_dir():
            raise VqfrError(f"method {spec!r}: {path} is not a directory")
        resolved = path.resolve()
        digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
        return Method(name="folder", kind="folder", label=path.name or str(path),
                      slug=f"folder-{_slugify(path.name)}-{digest}", folder=resolved)

    name, *pairs = spec.split(":")
    model = _model_spec(name)
    options = {**_restore_defaults(model.arch), **model.options}
    label = slug = None
    given: dict[str, Any] = {}
    for key, value in key_values(f"method {spec!r}", pairs):
        if key == "label":
            label = value
        elif key == "slug":
            slug = _slugify(value)
        elif key in options:
            given[key] = parse_value(value)
        else:
            raise VqfrError(f"method {spec!r}: {name} has no option {key!r} "
                            f"(options: {', '.join(options) or 'none'})")
    for key, value in (defaults or {}).items():
        if value is not None and key in options and key not in given:
            given[key] = value
    for key, value in given.items():
        default = options[key]
        if isinstance(default, tuple) and not isinstance(value, tuple):
            value = (value,)
        elif isinstance(default, float) and isinstance(value, int):
            value = float(value)
        options[key] = value
    changed = {k: v for k, v in options.items() if k in given}
    variant = ", ".join(f"{k}={_format_value(v)}" for k, v in changed.items())
    return Method(
        name=name, kind="model", options=options,
        label=label or (f"{name} ({variant})" if variant else name),
        slug=slug or _slugify("_".join([name] + [f"{k}{_format_value(v)}"
                                                 for k, v in changed.items()])),
        input_size=model.input_size)


def parse_methods(specs, defaults: Mapping[str, Any] | None = None) -> list[Method]:
    methods = [parse_method(s, defaults) for s in split_methods(specs)]
    slugs = [m.slug for m in methods]
    duplicates = sorted({s for s in slugs if slugs.count(s) > 1})
    if duplicates:
        raise VqfrError(f"methods listed twice: {', '.join(duplicates)} (give label=/slug=)")
    return methods


def options_digest(obj: Any) -> str:
    """sha256 of a canonical JSON rendering (cache keys, metric ids)."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
