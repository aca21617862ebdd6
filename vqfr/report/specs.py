"""Paper tables as data: the ``eval/*.toml`` specs.

A spec names the datasets, metrics (with the protocol options the paper used) and rows (a
method label, optionally the suite's model name + restore options that reproduce it) of one paper
table, and the published numbers, each with where it comes from (``source``) and how sure we are
(``status``): ``confirmed`` (read in the paper), ``third-party`` (a later paper or an aggregator
that copies it) or ``unknown`` (not retrieved: no value, never a guess).

Cells may be a bare number or an inline table ``{value, source, status, note}``; ``source`` and
``status`` fall back to the spec's top-level ones. With several datasets a row's values are keyed
``<dataset>.<metric>``. See eval/README.md.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqfr.errors import VqfrError
from vqfr.resources import declarative_folder

EVAL_DIR = declarative_folder("eval")
STATUSES = ("confirmed", "third-party", "unknown")
KINDS = ("comparison", "ablation", "efficiency")

# Direction of every quantity a spec may name. The image metrics are the suite's registry names
# (their classes carry the same ``lower_is_better``; tests/test_eval_specs.py checks it) plus
# the paper metrics the suite does not compute (MUSIQ under its paper name).
LOWER_IS_BETTER: dict[str, bool] = {
    "psnr": False, "ssim": False, "lpips": True, "niqe": True, "fid": True, "kid": True,
    "deg": True, "ids": False, "lmd": True, "musiq": False,
    # efficiency quantities
    "params_m": True, "tflops": True, "latency_s": True,
}
METRIC_LABELS: dict[str, str] = {
    "psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "niqe": "NIQE", "fid": "FID", "kid": "KID",
    "deg": "Deg.",
    "ids": "IDS", "lmd": "LMD", "musiq": "MUSIQ", "params_m": "Params (M)", "tflops": "TFLOPs",
    "latency_s": "Latency (s)",
}
EFFICIENCY_QUANTITIES = ("params_m", "tflops", "latency_s")
# Rows that are not zoo models: the degraded input itself (the paper tables' "Input").
INPUT_METHODS = ("lq",)


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name)


def lower_is_better(name: str) -> bool | None:
    return LOWER_IS_BETTER.get(name.split(":", 1)[-1] if name.startswith("pyiqa:") else name)


@dataclass(frozen=True)
class Cell:
    value: float | None
    source: str
    status: str
    note: str = ""


@dataclass(frozen=True)
class Row:
    label: str
    model: str | None                       # suite method name (zoo model, "lq", ...) or None
    options: dict[str, Any]
    values: dict[tuple[str, str], Cell]     # (dataset, metric) -> paper cell
    extra: dict[str, Any] = field(default_factory=dict)   # e.g. device, input_size


@dataclass(frozen=True)
class Spec:
    name: str
    title: str
    paper: str
    kind: str
    datasets: tuple[str, ...]
    metrics: tuple[str, ...]
    metric_options: dict[str, dict[str, Any]]
    rows: tuple[Row, ...]
    notes: str
    path: Path

    @property
    def columns(self) -> list[tuple[str, str]]:
        if not self.datasets:
            return [("", m) for m in self.metrics]
        return [(d, m) for d in self.datasets for m in self.metrics]


class SpecError(VqfrError):
    """An eval/ spec is malformed (names the file and the problem)."""


def _cell(raw: Any, default_source: str, default_status: str, where: str) -> Cell:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, dict)):
        raise SpecError(f"{where}: a cell is a number or {{value, source, status}}, got {raw!r}")
    if not isinstance(raw, dict):
        raw = {"value": raw}
    unknown_keys = set(raw) - {"value", "source", "status", "note"}
    if unknown_keys:
        raise SpecError(f"{where}: unknown cell keys {sorted(unknown_keys)}")
    status = raw.get("status", default_status)
    source = raw.get("source", default_source)
    value = raw.get("value")
    if status not in STATUSES:
        raise SpecError(f"{where}: status must be one of {STATUSES}, got {status!r}")
    if not source:
        raise SpecError(f"{where}: every number needs a source")
    if status == "unknown" and value is not None:
        raise SpecError(f"{where}: an 'unknown' cell has no value (got {value!r})")
    if status != "unknown" and (not isinstance(value, (int, float)) or isinstance(value, bool)):
        raise SpecError(f"{where}: a {status!r} cell needs a numeric value")
    return Cell(None if value is None else float(value), source, status, raw.get("note", ""))


def _row(raw: dict, spec: dict, where: str) -> Row:
    datasets, metrics = spec["datasets"], spec["metrics"]
    default_source = spec.get("source", "")
    default_status = spec.get("status", "unknown")
    raw_values = raw.get("values", {})
    # anything in values that is not a column is a typo
    known = set(metrics) if len(datasets) <= 1 else set(datasets)
    stray = set(raw_values) - known
    if len(datasets) > 1:
        stray |= {f"{d}.{m}" for d in set(raw_values) & known for m in raw_values[d]
                  if m not in metrics}
    if stray:
        raise SpecError(f"{where} [{raw.get('label')!r}]: values for unknown columns {sorted(stray)}")
    values: dict[tuple[str, str], Cell] = {}
    columns = [(d, m) for d in datasets for m in metrics] if datasets else [("", m) for m in metrics]
    for dataset, metric in columns:
        if len(datasets) > 1:
            cell = raw_values.get(dataset, {}).get(metric)
        else:
            cell = raw_values.get(metric)
        at = f"{where} [{raw.get('label')!r}] {dataset + '.' if len(datasets) > 1 else ''}{metric}"
        # a cell the spec leaves out is one whose number we do not have
        missing = {"status": "unknown", "source": default_source or "not transcribed"}
        values[(dataset, metric)] = _cell(missing if cell is None else cell,
                                          default_source, default_status, at)
    extra = {k: v for k, v in raw.items() if k not in ("label", "model", "options", "values")}
    return Row(raw["label"], raw.get("model"), dict(raw.get("options", {})), values, extra)


def spelled(name: str) -> str:
    """The spelling a spec name is shown in, as datasets and models are: ``vqfr-celeba-test``
    (the file and its ``name`` key say ``vqfr_celeba_test``; both are accepted)."""
    return name.replace("_", "-")


def load_spec(path_or_name: str | Path) -> Spec:
    """A spec by name, in either spelling, or by the path of a ``.toml`` file."""
    path = Path(path_or_name)
    if not path.suffix and not path.is_file():
        path = EVAL_DIR / f"{str(path_or_name).replace('-', '_')}.toml"
    if not path.is_file():
        raise SpecError(f"no spec {path_or_name!r} ({path} does not exist); available: "
                        f"{', '.join(map(spelled, available_specs()))}, or a .toml file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: {exc}") from None
    where = path.name
    for key in ("name", "title", "paper", "kind", "datasets", "metrics", "rows"):
        if key not in data:
            raise SpecError(f"{where}: missing key {key!r}")
    if data["kind"] not in KINDS:
        raise SpecError(f"{where}: kind must be one of {KINDS}")
    for metric in data["metrics"]:
        if lower_is_better(metric) is None:
            raise SpecError(f"{where}: unknown metric {metric!r}; known: {sorted(LOWER_IS_BETTER)}")
    stray_options = set(data.get("metric_options", {})) - set(data["metrics"])
    if stray_options:
        raise SpecError(f"{where}: metric_options for metrics not in the table: {stray_options}")
    rows = tuple(_row(r, data, where) for r in data["rows"])
    return Spec(data["name"], data["title"], data["paper"], data["kind"],
                tuple(data["datasets"]), tuple(data["metrics"]),
                dict(data.get("metric_options", {})), rows, data.get("notes", ""), path)


def available_specs() -> list[str]:
    return sorted(p.stem for p in EVAL_DIR.glob("*.toml"))


def load_all_specs() -> list[Spec]:
    return [load_spec(name) for name in available_specs()]
