"""Matplotlib figures (Agg canvas, no pyplot state): per-image metric distributions, fidelity
sweeps as quality-vs-fidelity curves, and TWM offset magnitude maps."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vqfr.report.runs import MethodRun
from vqfr.report.specs import metric_label

# restore() options that trade fidelity for quality (VQFR v2, CodeFormer).
SWEEP_OPTIONS = ("fidelity_ratio", "fidelity_weight")
FIDELITY_METRICS = ("psnr", "ssim", "deg", "ids")
QUALITY_METRICS = ("fid", "niqe", "lpips", "musiq")


def _save(fig: Figure, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=96, bbox_inches="tight")
    return f"{path.parent.name}/{path.name}"


Intervals = dict[str, dict[str, dict]]      # run key -> metric -> summary.json ``ci``


def _error_bar(intervals: Intervals | None, run: MethodRun, metric: str
               ) -> tuple[float, float] | None:
    """(below, above) the run's value to its interval's ends, or None."""
    ci = (intervals or {}).get(run.key, {}).get(metric)
    value = run.metrics.get(metric)
    if not ci or ci.get("low") is None or value is None or not np.isfinite(value):
        return None
    return max(value - ci["low"], 0.0), max(ci["high"] - value, 0.0)


def distribution_figure(runs: list[MethodRun], metric: str, path: Path,
                        intervals: Intervals | None = None) -> str | None:
    """Box plots of the per-image values, and each method's dataset value with its interval
    as an error bar."""
    series = [(run, list(run.per_image_values(metric).values())) for run in runs]
    series = [(run, values) for run, values in series if values]
    if not series:
        return None
    fig = Figure(figsize=(1.6 + 1.1 * len(series), 3.2))
    ax = fig.add_subplot()
    ax.boxplot([v for _, v in series], showmeans=intervals is None)
    level = None
    for x, (run, _) in enumerate(series, start=1):
        bar = _error_bar(intervals, run, metric)
        if bar is not None:
            ax.errorbar([x], [run.metrics[metric]], yerr=[[bar[0]], [bar[1]]], fmt="D",
                        color="tab:red", markersize=4, capsize=4)
            level = intervals[run.key][metric]["level"]
    if level is not None:
        ax.plot([], [], "D", color="tab:red", label=f"value, {level:g} interval")
        ax.legend(fontsize=7, loc="best")
    series = [(run.label, values) for run, values in series]
    ax.set_xticks(range(1, len(series) + 1), [label for label, _ in series], rotation=20,
                  ha="right", fontsize=8)
    arrow = {True: " (lower is better)", False: " (higher is better)", None: ""}
    ax.set_ylabel(metric_label(metric) + arrow[runs[0].lower_is_better(metric)])
    ax.set_title(f"{metric_label(metric)} per image", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


@dataclass
class Sweep:
    dataset: str
    model: str
    option: str
    runs: list[MethodRun]          # sorted by the swept value

    def values(self) -> list[float]:
        return [float(r.options[self.option]) for r in self.runs]


def find_sweeps(runs: list[MethodRun]) -> list[Sweep]:
    """Runs of one model on one dataset whose options differ only in a fidelity knob."""
    sweeps = []
    for option in SWEEP_OPTIONS:
        groups: dict[tuple, list[MethodRun]] = {}
        for run in runs:
            if option not in run.options:
                continue
            rest = tuple(sorted((k, repr(v)) for k, v in run.options.items() if k != option))
            groups.setdefault((run.dataset, run.name, rest), []).append(run)
        for (dataset, model, _), members in groups.items():
            if len({r.options[option] for r in members}) >= 2:
                members.sort(key=lambda r: float(r.options[option]))
                sweeps.append(Sweep(dataset, model, option, members))
    return sweeps


def sweep_figure(sweep: Sweep, path: Path, intervals: Intervals | None = None) -> str | None:
    metrics = [m for m in dict.fromkeys(m for r in sweep.runs for m in r.metrics)]
    if not metrics:
        return None
    fidelity = next((m for m in FIDELITY_METRICS if m in metrics), None)
    quality = [m for m in QUALITY_METRICS if m in metrics]
    panels = len(metrics) + (len(quality) if fidelity else 0)
    fig = Figure(figsize=(3.0 * min(panels, 4), 2.8 * ((panels + 3) // 4)))
    knob = sweep.values()
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot((panels + 3) // 4, min(panels, 4), i + 1)
        ax.plot(knob, [r.metrics.get(metric, np.nan) for r in sweep.runs], "o-")
        bars = [_error_bar(intervals, r, metric) for r in sweep.runs]
        if any(b is not None for b in bars):
            ax.errorbar(knob, [r.metrics.get(metric, np.nan) for r in sweep.runs],
                        yerr=np.array([b or (0.0, 0.0) for b in bars]).T, fmt="none",
                        ecolor="tab:blue", capsize=3)
        ax.set_xlabel(sweep.option, fontsize=8)
        ax.set_title(metric_label(metric), fontsize=9)
        ax.grid(alpha=0.3)
    for k, metric in enumerate(quality if fidelity else []):
        ax = fig.add_subplot((panels + 3) // 4, min(panels, 4), len(metrics) + k + 1)
        xs = [r.metrics.get(fidelity, np.nan) for r in sweep.runs]
        ys = [r.metrics.get(metric, np.nan) for r in sweep.runs]
        ax.plot(xs, ys, "o-", color="tab:red")
        for x, y, value in zip(xs, ys, knob):
            ax.annotate(f"{value:g}", (x, y), fontsize=7, textcoords="offset points",
                        xytext=(3, 3))
        ax.set_xlabel(f"{metric_label(fidelity)} (fidelity)", fontsize=8)
        ax.set_title(f"{metric_label(metric)} vs {metric_label(fidelity)}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{sweep.model} on {sweep.dataset}: {sweep.option} sweep", fontsize=10)
    return _save(fig, path)


def offsets_figure(levels: dict[str, np.ndarray], title: str, path: Path) -> str:
    fig = Figure(figsize=(2.2 * len(levels), 2.6))
    for i, (name, magnitude) in enumerate(levels.items()):
        ax = fig.add_subplot(1, len(levels), i + 1)
        image = ax.imshow(magnitude, cmap="magma")
        ax.set_title(f"{name} (mean {float(magnitude.mean()):.3g})", fontsize=8)
        ax.axis("off")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)
