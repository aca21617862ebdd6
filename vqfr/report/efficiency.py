"""The efficiency table: a ``vqfr-eval profile --json`` file beside the paper's stated model size
and speed (``eval/vqfr_efficiency.toml``), each with the device it was measured on."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vqfr.errors import VqfrError
from vqfr.report.specs import Spec, load_spec

PROFILE_SCHEMA = "vqfr-eval/profile/1"


def read_profile(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise VqfrError(f"cannot read profile {path}: {exc}") from None
    if data.get("schema") != PROFILE_SCHEMA:
        raise VqfrError(f"{path}: not a `vqfr-eval profile --json` file (schema "
                        f"{data.get('schema')!r})")
    return data


def efficiency_view(path: Path, specs: list[Spec]) -> dict[str, Any]:
    """Rows for the template: measured (one per model and setting) and paper rows."""
    profile = read_profile(path)
    specs = specs or [load_spec("vqfr_efficiency")]
    measured = []
    for model in profile["models"]:
        flops = model.get("flops") or {}
        for setting in model["settings"]:
            latency = setting.get("latency_s") or {}
            measured.append({
                "model": model["model"],
                "setting": setting,
                "params_m": model["params"] / 1e6,
                "trainable_m": model["trainable_params"] / 1e6,
                "gflops": flops.get("flopcounter", 0) / 1e9 if flops else None,
                "gflops_dcn": flops.get("deform_conv2d", 0) / 1e9 if flops else None,
                "gflops_total": flops.get("total", 0) / 1e9 if flops else None,
                "flops_size": flops.get("size"),
                "latency": latency,
                "images_per_s": setting.get("images_per_s"),
                "peak_mib": (setting["peak_memory_bytes"] / 2 ** 20
                             if setting.get("peak_memory_bytes") is not None else None),
            })
    paper = []
    for spec in specs:
        for row in spec.rows:
            cells = {metric: row.values[("", metric)] for metric in spec.metrics}
            ours = next((m for m in measured if m["model"] == row.model and m["gflops"]), None)
            paper.append({"label": row.label, "model": row.model, "cells": cells,
                          "ours_tmacs_without_dcn": ours["gflops"] / 2 / 1e3 if ours else None,
                          "device": row.extra.get("device", "?"),
                          "input_size": row.extra.get("input_size"), "spec": spec})
    return {"profile": profile, "measured": measured, "paper": paper, "path": str(path)}
