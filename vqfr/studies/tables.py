"""``vqfr-eval --table SPEC``: run what a paper table (an ``eval/`` spec) needs (its datasets,
its rows' models with their options, its metrics with the paper's protocol options), then render
the report with the measured numbers beside the paper's."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vqfr.errors import AssetUnavailable, VqfrError
from vqfr.studies.ablation import spell
from vqfr.run.benchmark import RunConfig, RunReport, run_benchmark


@dataclass
class TablePlan:
    spec: Any                                         # vqfr.report.specs.Spec
    datasets: list[str]
    methods: list[str]
    metrics: list[str]
    metric_options: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)    # what of the spec is not run, and why


@dataclass
class TableResult:
    plan: TablePlan
    runs: list[RunReport]
    report: Path | None = None


def load_table_spec(name_or_path: str | Path):
    """A spec by file path, or by name in either spelling (``vqfr-celeba-test`` or
    ``vqfr_celeba_test``)."""
    from vqfr.report.specs import load_spec

    return load_spec(name_or_path)


def _metric_options(metric: str, options: dict[str, Any], assets) -> dict[str, Any]:
    """Spec protocol options as constructor options: a value naming a zoo asset (the FID
    reference ``fid-stats-ffhq512``) becomes that asset's file."""
    import vqfr.zoo
    from vqfr.zoo.registry import ASSETS

    resolved = dict(options)
    for key, value in options.items():
        if isinstance(value, str) and value in ASSETS:
            resolved[key] = str(vqfr.zoo.resolve_asset(value, assets).path)
    return resolved


def plan_table(spec_name: str | Path, datasets: list[str] | None = None,
               metrics: list[str] | None = None, assets=None) -> TablePlan:
    """What to run for a spec. ``datasets`` / ``metrics`` replace the spec's (a local copy of a
    test set, a cheaper metric set); rows without a model are paper-only and not run."""
    from vqfr.metrics.registry import available_metrics
    from vqfr.report.specs import spelled

    spec = load_table_spec(spec_name)
    if spec.kind == "efficiency":
        raise VqfrError(f"spec {spelled(spec.name)} is an efficiency table: run `vqfr-eval profile` and "
                        "pass its file to `vqfr-eval report --profile`")
    notes = []
    methods = list(dict.fromkeys(spell(row.model, row.options) for row in spec.rows
                                 if row.model))
    paper_only = [row.label for row in spec.rows if not row.model]
    if paper_only:
        notes.append(f"paper-only rows (no suite model): {', '.join(paper_only)}")
    wanted = list(metrics or spec.metrics)
    known = set(available_metrics())
    unsupported = [m for m in wanted
                   if m.split(":")[0] not in known and not m.startswith("pyiqa:")]
    if unsupported:
        notes.append(f"metrics this suite does not compute: {', '.join(unsupported)}")
    run_metrics = [m for m in wanted if m not in unsupported]
    options = {}
    for spelling in list(run_metrics):
        metric = spelling.split(":")[0]   # the paper's protocol options, under the spelling's
        if metric in spec.metric_options:
            try:
                options[metric] = _metric_options(metric, spec.metric_options[metric], assets)
            except AssetUnavailable as exc:
                notes.append(f"metric {metric} not measured: {exc}")
                run_metrics.remove(spelling)
    if not spec.datasets and not datasets:
        raise VqfrError(f"spec {spelled(spec.name)} names no dataset: give --dataset")
    return TablePlan(spec, list(datasets or spec.datasets), methods, run_metrics, options, notes)


def run_table(spec_name: str | Path, cfg: RunConfig, datasets: list[str] | None = None,
              report_dir: Path | None = None) -> TableResult:
    """Run the plan's methods on each dataset (``cfg`` gives device, out, assets, ...; its
    dataset, methods and metric options are the plan's; ``cfg.metrics``, when set, replaces the
    spec's metrics), then build the report beside the spec into ``report_dir`` (default
    ``reports/<spec name>``)."""
    plan = plan_table(spec_name, datasets, cfg.metrics, cfg.assets)
    # the rows spell out their options: no global defaults (--fidelity-weight) may change them
    runs = [run_benchmark(replace(cfg, dataset=dataset, methods=plan.methods,
                                  metrics=plan.metrics, method_defaults={},
                                  metric_options={**plan.metric_options, **cfg.metric_options}))
            for dataset in plan.datasets]
    result = TableResult(plan, runs)
    if all(r.is_main for r in runs) and any(r.summaries for r in runs):
        from vqfr.report.render import build_report
        from vqfr.report.specs import spelled

        result.report = build_report([cfg.out],
                                     report_dir or Path("reports") / spelled(plan.spec.name),
                                     [str(plan.spec.path)], title=plan.spec.title)
    return result
