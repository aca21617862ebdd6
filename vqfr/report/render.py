"""Build one self-contained report: ``OUT/index.html`` (inline CSS, no scripts, no external
requests) plus the PNGs it references relatively (``OUT/img/``, ``OUT/fig/``).

The report is assembled in a hidden staging folder inside ``OUT`` and then moved into place.
``OUT/.vqfr-report.json`` lists the files it wrote: rebuilding removes only those (a file of an
older report that the new one does not write), never anything else, and a file of the user's
that the report would overwrite stops it before anything is moved."""
from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from vqfr import __version__
from vqfr.data.datasets import open_dataset
from vqfr.data.images import atomic_write_bytes, make_staging_dir
from vqfr.errors import VqfrError
from vqfr.report import figures, grids, tables
from vqfr.report.runs import MethodRun, find_method_runs, offset_magnitudes
from vqfr.report.specs import Spec, load_spec
from vqfr.stats.analysis import DatasetStatistics, statistics_with_stored
from vqfr.stats.rows import load_method_rows

TEMPLATES = Path(__file__).with_name("templates")
MANIFEST = ".vqfr-report.json"   # the files the report wrote, relative to OUT
GRID_METRICS_MAX = 4          # best/median/worst for at most this many metrics per dataset
OFFSET_IMAGES_MAX = 3         # offset maps shown per run


@dataclass
class DatasetSection:
    name: str
    grid: list[grids.GridRow]
    grid_columns: list[str]
    distributions: list[tuple[str, str]]       # (metric, figure path)
    primary: str                               # the run whose per-image values chose the images
    matrices: list[tables.SignificanceMatrix] = field(default_factory=list)


@dataclass
class OffsetSection:
    run_label: str
    dataset: str
    figures: list[tuple[str, str]]             # (stem, figure path)


@dataclass
class Report:
    title: str
    generated: str
    run_dirs: list[str]
    tables: list[tables.Table]
    datasets: list[DatasetSection]
    sweeps: list[tuple[figures.Sweep, str]]
    offsets: list[OffsetSection]
    efficiency: dict[str, Any] | None
    runs: list[MethodRun]
    warnings: list[str] = field(default_factory=list)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["options"] = tables.options_text
    env.filters["fmt"] = lambda value, metric="": tables.format_value(metric, value)
    return env


def _references(runs: list[MethodRun]) -> tuple[dict[str, tuple[Path | None, Path | None]], list[str]]:
    """stem -> (LQ, GT) image paths: LQ from an ``lq`` run when there is one, else from the
    dataset; GT from the dataset the summary names (vqfr.data reads its manifest)."""
    lq_run = next((r for r in runs if r.name == "lq"), None)
    refs: dict[str, tuple[Path | None, Path | None]] = {}
    warnings = []
    dataset = runs[0].summary["dataset"]
    try:
        opened = open_dataset(dataset.get("root") or dataset["name"])
        refs = {item.stem: (item.lq_path, item.hq_path) for item in opened.items}
    except (VqfrError, OSError) as exc:
        warnings.append(f"{dataset['name']}: LQ/GT images not found ({exc}); grid shows "
                        "restored images only")
    if lq_run is not None:
        for stem in lq_run.per_image.get("name", []):
            refs[stem] = (lq_run.image_path(stem), refs.get(stem, (None, None))[1])
    return refs, warnings


def dataset_statistics(runs: list[MethodRun]) -> DatasetStatistics:
    """Intervals and comparisons of one dataset's runs: what the runs stored, computed from
    their result files where something is missing (``vqfr.stats``; no model is loaded)."""
    stored: list[dict] = []
    for folder in dict.fromkeys(r.path.parent for r in runs):
        path = folder / "comparisons.json"
        if path.is_file():   # its methods named by folder, here by run (``MethodRun.key``)
            stored.extend({**c, "a": str(folder / c["a"]), "b": str(folder / c["b"])}
                          for c in json.loads(path.read_text(encoding="utf-8")))
    methods = []
    for run in runs:
        rows = load_method_rows(run.path)
        rows.key = run.key
        methods.append(rows)
    return statistics_with_stored(methods, stored)


def _dataset_section(name: str, runs: list[MethodRun], out: Path, index: int,
                     warnings: list[str], statistics: DatasetStatistics) -> DatasetSection:
    shown = [r for r in runs if r.name != "lq"] or runs
    primary = shown[0]
    metrics = [m for m in primary.metrics if primary.per_image_values(m)][:GRID_METRICS_MAX]
    chosen = grids.select_images(primary, metrics)
    if not chosen:   # no per-image values (e.g. FID only): show the first images
        chosen = {stem: ["first images"] for stem in primary.per_image.get("name", [])[:3]}
    refs, ref_warnings = _references(runs)
    warnings.extend(ref_warnings)
    grid = grids.build_grid(shown, chosen, refs, out / "img", f"d{index}")
    distributions = []
    all_metrics = dict.fromkeys(m for r in runs for m in r.metrics)
    for k, metric in enumerate(all_metrics):
        path = figures.distribution_figure(runs, metric, out / "fig" / f"dist_d{index}_{k}.png",
                                           statistics.intervals)
        if path:
            distributions.append((metric, path))
    return DatasetSection(name, grid, grids.grid_columns(shown, chosen, refs), distributions,
                          primary.label, tables.significance_matrices(name, runs, statistics))


def _offset_sections(runs: list[MethodRun], out: Path) -> list[OffsetSection]:
    sections = []
    for i, run in enumerate(runs):
        stems = run.offset_stems()[:OFFSET_IMAGES_MAX]
        if not stems:
            continue
        figs = []
        for j, stem in enumerate(stems):
            levels = offset_magnitudes(run.offsets_path(stem))
            figs.append((stem, figures.offsets_figure(levels, f"{run.label}: offset magnitude",
                                                      out / "fig" / f"offsets_{i}_{j}.png")))
        sections.append(OffsetSection(run.label, run.dataset, figs))
    return sections


def build_report(run_dirs: list[Path], out: Path, spec_names: list[str] = (),
                 profile: Path | None = None, title: str = "vqfr-eval report") -> Path:
    runs = find_method_runs([Path(d) for d in run_dirs])
    specs: list[Spec] = [load_spec(name) for name in spec_names]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    staging = make_staging_dir(out, ".report-")
    try:
        _render(runs, specs, [str(d) for d in run_dirs], staging, profile, title)
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out / "index.html"


def _previous_files(out: Path) -> set[str]:
    try:
        listed = json.loads((out / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    # only plain relative names inside OUT count: the list is data, not instructions
    return {name for name in listed if isinstance(name, str) and ".." not in Path(name).parts
            and not Path(name).is_absolute()}


def _publish(staging: Path, out: Path) -> None:
    """Move the staged files into ``out``; remove what the previous report wrote and this one
    does not; refuse (before moving anything) to overwrite a file the report did not write."""
    previous = _previous_files(out)
    written = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    foreign = [name for name in written
               if (out / name).exists() and name not in previous]
    if foreign:
        raise VqfrError(
            f"{out}: the report would overwrite {len(foreign)} file(s) it did not write: "
            + ", ".join(foreign[:8]) + (", ..." if len(foreign) > 8 else "")
            + "; nothing was changed. Choose another output folder or move them.")
    manifest = out / MANIFEST
    atomic_write_bytes(manifest, json.dumps({"files": sorted(previous | set(written))},
                                            indent=1).encode())
    for name in written:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / name, out / name)
    for name in sorted(previous - set(written)):
        (out / name).unlink(missing_ok=True)
    atomic_write_bytes(manifest, json.dumps({"files": written}, indent=1).encode())


def _render(runs: list[MethodRun], specs: list[Spec], run_dirs: list[str], out: Path,
            profile: Path | None, title: str) -> None:
    """Write index.html, img/ and fig/ into ``out``."""
    warnings: list[str] = [f"{run.label} on {run.dataset}: {note}"
                           for run in runs for note in run.unofficial_files()]

    by_dataset: dict[str, list[MethodRun]] = {}
    for run in runs:
        by_dataset.setdefault(run.dataset, []).append(run)
    statistics = {name: dataset_statistics(ds_runs) for name, ds_runs in by_dataset.items()}
    report_tables = [tables.spec_table(s, runs, statistics) for s in specs
                     if s.kind != "efficiency"]
    for table in report_tables:
        if not any(row.runs for row in table.rows):
            warnings.append(f"spec {table.spec.name}: no run matches any of its rows "
                            "(model, options and dataset)")
    report_tables += tables.measured_tables(runs, statistics)

    datasets = [_dataset_section(name, ds_runs, out, i, warnings, statistics[name])
                for i, (name, ds_runs) in enumerate(by_dataset.items())]
    sweeps = [(s, figures.sweep_figure(s, out / "fig" / f"sweep_{i}.png",
                                       statistics[s.dataset].intervals))
              for i, s in enumerate(figures.find_sweeps(runs))]
    efficiency = None
    if profile is None and any(s.kind == "efficiency" for s in specs):
        warnings.append("efficiency specs are shown beside a profile: pass --profile FILE "
                        "(from `vqfr-eval profile --json FILE`)")
    if profile is not None:
        from vqfr.report.efficiency import efficiency_view

        efficiency = efficiency_view(Path(profile), [s for s in specs if s.kind == "efficiency"])

    report = Report(title, _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                    run_dirs, report_tables, datasets,
                    [(s, p) for s, p in sweeps if p], _offset_sections(runs, out), efficiency,
                    runs, warnings)
    html = _environment().get_template("report.html.j2").render(r=report, version=__version__)
    atomic_write_bytes(out / "index.html", html.encode("utf-8"))
