"""Name -> metric class registry (pyiqa style), and the command line's spelling of a configured
metric. Metric modules are imported lazily, so building ``psnr`` does not import the LPIPS or
Inception networks.

Spelling (``--metrics`` takes several, comma separated), as for methods:
``NAME[:option=value...][:label=COLUMN]``, e.g. ``psnr:test_y_channel=true:correct_mean_var=false``
or ``niqe:convert_to=gray:label=niqe_gray``. The options are the metric's constructor options
(what the suite supplies itself, device and weights, excepted); ``label`` names the results
column (default: the metric's name), so one run can hold a metric under two protocols.
``pyiqa:NAME[:option=value...]`` passes its options to pyiqa unchecked.
"""
from __future__ import annotations

import importlib
import inspect
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from vqfr.errors import VqfrError
from vqfr.metrics.base import Metric
from vqfr.options import coerce, key_values, parse_value, split_list

# name -> "module:Class". Each metric module is one file under vqfr/metrics/.
METRICS: dict[str, str] = {}
# Constructor arguments the suite supplies (device, weights files): not protocol options.
SUPPLIED = ("device", "assets", "weights", "model", "dtype")
PYIQA_HINT = "pyiqa:NAME (any pyiqa metric, with the optional extra: pip install 'vqfr-eval[iqa]')"


def register_metric(name: str, target: str) -> None:
    METRICS[name] = target


def available_metrics() -> list[str]:
    return sorted(METRICS)


def metric_class(name: str) -> type[Metric]:
    if name.startswith("pyiqa:"):
        module = importlib.import_module("vqfr.metrics.pyiqa_bridge")
        return module.PyiqaMetric
    try:
        target = METRICS[name]
    except KeyError:
        raise VqfrError(f"unknown metric {name!r}; available: {', '.join(available_metrics())}, "
                        f"{PYIQA_HINT}") from None
    module_name, cls_name = target.split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def create_metric(name: str, **options: Any) -> Metric:
    cls = metric_class(name)
    if name.startswith("pyiqa:"):
        return cls(name.split(":", 1)[1], **options)
    return cls(**options)


def protocol_options(name: str) -> dict[str, inspect.Parameter]:
    """The options a metric can be spelled with: its constructor's keyword parameters with a
    default, less those the suite supplies. Empty for pyiqa metrics (passed through)."""
    if name.startswith("pyiqa:"):
        return {}
    init = metric_class(name).__init__
    try:
        signature = inspect.signature(init, eval_str=True)
    except NameError:
        signature = inspect.signature(init)
    return {p.name: p for p in signature.parameters.values()
            if p.default is not p.empty and p.name not in SUPPLIED}


@dataclass(frozen=True)
class MetricSpec:
    """One configured metric: registry name (or ``pyiqa:NAME``), the options given, and the
    results column it fills."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", self.name)


def _option_value(where: str, parameter: inspect.Parameter, text: str) -> Any:
    choices = (typing.get_args(parameter.annotation)
               if typing.get_origin(parameter.annotation) is typing.Literal else ())
    if choices and text not in choices:
        raise VqfrError(f"{where}: {parameter.name} is one of {', '.join(map(str, choices))}, "
                        f"got {text!r}")
    return coerce(text, parameter.default, f"{where}: {parameter.name}")


def parse_metric_spec(text: str) -> MetricSpec:
    """Resolve one spelling; an unknown metric or option is a ``VqfrError`` listing what
    exists."""
    parts = [p.strip() for p in text.strip().split(":")]
    if parts[0] == "pyiqa":
        if len(parts) < 2 or not parts[1] or "=" in parts[1]:
            raise VqfrError(f"metric {text!r}: name the pyiqa metric, e.g. pyiqa:musiq")
        name, pairs = f"pyiqa:{parts[1]}", parts[2:]
    else:
        name, pairs = parts[0], parts[1:]
    if name not in METRICS and not name.startswith("pyiqa:"):
        raise VqfrError(f"unknown metric {name!r} in --metrics {text!r}; available: "
                        f"{', '.join(available_metrics())}, {PYIQA_HINT}")
    known = protocol_options(name)
    options: dict[str, Any] = {}
    label = ""
    where = f"metric {text!r}"
    for key, value in key_values(where, pairs):
        if key == "label":
            if not re.fullmatch(r"[A-Za-z0-9._-]+", value):
                raise VqfrError(f"{where}: a label is letters, digits, '.', '_' or '-' (it "
                                f"names a column and a folder), got {value!r}")
            label = value
        elif name.startswith("pyiqa:"):
            options[key] = parse_value(value)
        elif key in known:
            options[key] = _option_value(where, known[key], value)
        else:
            raise VqfrError(f"{where}: {name} has no option {key!r} (its options: "
                            f"{', '.join([*known, 'label'])})")
    return MetricSpec(name, options, label)


def parse_metric_specs(text: str | list[str] | tuple[str, ...]) -> list[MetricSpec]:
    """A ``--metrics`` list; two entries filling the same column are an error."""
    specs = [parse_metric_spec(t) for t in split_list(text)]
    labels = [s.label for s in specs]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise VqfrError(f"--metrics: the column {', '.join(twice)} is given twice; name the "
                        "variants with label=, e.g. psnr,psnr:test_y_channel=true:label=psnr_y")
    return specs


# The suite's metrics (module paths; the files are written by the metric modules' authors).
for _name, _target in {
    "psnr": "vqfr.metrics.psnr_ssim:PSNR",
    "ssim": "vqfr.metrics.psnr_ssim:SSIM",
    "lpips": "vqfr.metrics.lpips_vgg:LPIPS",
    "niqe": "vqfr.metrics.niqe:NIQE",
    "fid": "vqfr.metrics.fid:FID",
    "kid": "vqfr.metrics.kid:KID",
    "deg": "vqfr.metrics.identity:Deg",
    "ids": "vqfr.metrics.identity:IDS",
    "lmd": "vqfr.metrics.landmark:LMD",
}.items():
    register_metric(_name, _target)
