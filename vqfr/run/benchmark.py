"""``vqfr-eval --dataset NAME``: every method over one dataset in one pass each, then the
results files and the table. Methods whose weights are missing are skipped with the reason."""
from __future__ import annotations

import datetime as dt
import platform
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vqfr.data.datasets import Dataset, load_manifest, open_dataset
from vqfr.data.images import list_images
from vqfr.data.pairing import match_stems
from vqfr.errors import AssetUnavailable, DatasetUnavailable, OutputError, VqfrError
from vqfr.precision import DEFAULT_PRECISION, effective_precision, precision
from vqfr.run.distributed import DistContext, init_distributed
from vqfr.run.methods import PAPER_METHODS, Method, parse_methods
from vqfr.run.metricset import MetricSet, merge_batch_states, metric_assets
from vqfr.run.progress import RunLog
from vqfr.run.restorer import Restorer, SweepRestorer, make_deterministic, sweep_family
from vqfr.run.results import (command_line, conversion_summary, format_table, results_table,
                              runtime_versions, unmeasured_lines, write_metric_rows,
                              write_per_image_csv, write_statistics, write_summary)
from vqfr.run.runner import Item, MethodPass, run_in_lockstep
from vqfr.stats.analysis import CIOptions, DatasetStatistics, dataset_statistics
from vqfr.stats.rows import load_method_rows
from vqfr.zoo.resolve import NonOfficialAsset, check_assets, missing_files_text, start_run


# CelebA-Test's metric set, the default for a directory without a manifest (full-reference ones
# are skipped when it has no hq/).
PAPER_METRICS = ("lpips", "fid", "niqe", "deg", "lmd", "psnr", "ssim")


@dataclass
class RunConfig:
    dataset: str
    methods: list[str] = field(default_factory=lambda: list(PAPER_METHODS))
    metrics: list[str] | None = None          # --metrics spellings; None: the dataset's paper
                                              # metrics
    out: Path = Path("runs")
    data_root: Path | None = None
    device: str = "cpu"
    batch_size: int = 4
    dtype: str = "fp32"
    precision: str = DEFAULT_PRECISION        # vqfr.precision policy (TF32 on CUDA)
    assets: dict[str, Path] = field(default_factory=dict)
    metric_options: dict[str, dict] = field(default_factory=dict)   # by metric name, e.g.
                                              # {"fid": {...}}, under the spellings' own
    method_defaults: dict[str, Any] = field(default_factory=dict)  # --fidelity-ratio, --seed...
    seed: int = 0
    allow_size: str = "512"
    workers: int = 2
    quiet: bool = False
    ci: CIOptions | None = field(default_factory=CIOptions)   # None: no intervals


@dataclass
class RunReport:
    summaries: list[dict] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)    # method slug -> reason
    failed: dict[str, str] = field(default_factory=dict)     # method slug -> reason
    table: Any = None
    is_main: bool = True                                     # rank 0 (prints the results)
    out: Path = Path("runs")                                 # the run directory
    dataset: str = ""
    missing_files: str = ""                                  # how to get what is missing
    method_dirs: dict[str, Path] = field(default_factory=dict)    # slug -> results written
    statistics: DatasetStatistics | None = None              # intervals and comparisons
    slugs: dict[str, str] = field(default_factory=dict)      # row label -> method slug


def dataset_items(dataset: Dataset, method: Method) -> list[Item]:
    """The images a method is measured on, in the dataset's order. ``folder:`` results pair with
    the dataset's LQ files by stem, strictly: any missing, extra or ambiguous file is an error
    (a dataset-level number must cover the whole dataset)."""
    if method.kind != "folder":
        return [Item(i, it.stem, it.lq_path, it.hq_path) for i, it in enumerate(dataset.items)]
    match = match_stems([it.lq_path for it in dataset.items], list_images(method.folder),
                        strict=True, a_label=f"dataset {dataset.name}",
                        b_label=str(method.folder))
    result_of = {lq: result for _, lq, result in match.pairs}
    return [Item(i, it.stem, result_of[it.lq_path], it.hq_path)
            for i, it in enumerate(dataset.items)]


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({platform.processor() or platform.machine()})"


def run_benchmark(cfg: RunConfig) -> RunReport:
    ctx = init_distributed(cfg.device)
    try:
        with precision(cfg.precision):
            return _run(cfg, ctx)
    except OutputError as exc:
        raise OutputError(
            f"{exc}.\nKept in {cfg.out}: every restored image already journaled and the metric "
            "states of every finished batch; nothing partly written is used. Free space (or fix "
            "the permissions) and rerun the same command to resume.") from None
    finally:
        ctx.close()


def _run(cfg: RunConfig, ctx: DistContext) -> RunReport:
    device = ctx.device(cfg.device)
    make_deterministic(device)
    torch.manual_seed(cfg.seed)
    start_run()
    methods = parse_methods(cfg.methods, {"seed": cfg.seed, **cfg.method_defaults})
    dataset = _open_dataset(cfg, methods)
    log = RunLog(Path(cfg.out) / "log.txt", quiet=cfg.quiet, enabled=ctx.is_main)
    log(f"run {command_line()}: dataset {dataset.name} ({dataset.count} images, "
        f"{'paired' if dataset.paired else 'no references'}), world size {ctx.world_size}, "
        f"{device}, {cfg.dtype}, precision {effective_precision(cfg.precision, device)}, "
        f"batch {cfg.batch_size}, {torch.get_num_threads()} CPU thread(s) per process")
    spellings = metric_spellings(cfg, dataset.manifest)
    needed = needed_assets(methods, spellings, cfg.metric_options)
    found, missing = _resolve_files(cfg, ctx, needed, log)
    why = {name: str(exc).splitlines()[0] for name, exc in missing.items()}
    metrics = MetricSet(spellings, device=device, assets=cfg.assets, paired=dataset.paired,
                        options=cfg.metric_options, unavailable=why,
                        precision=effective_precision(cfg.precision, device))
    for name, reason in metrics.skipped.items():
        log(f"metric {name} skipped: {reason}", echo=name not in lacking_files(metrics, why))
    report = RunReport(is_main=ctx.is_main, out=Path(cfg.out), dataset=dataset.name,
                       missing_files=missing_files_text(missing, needed) if missing else "")
    if missing:
        log(report.missing_files, echo=False)
    if not metrics.metrics:
        raise VqfrError("no metric can be measured: " + "; ".join(
            f"{n}: {r}" for n, r in metrics.skipped.items())
            + (f"\n\n{report.missing_files}" if missing else ""))

    runs: list[tuple[Method, MethodPass]] = []
    models: dict[str, Restorer] = {}
    unmet = [f"metric {name}" for name in lacking_files(metrics, why)]
    for group in sweep_groups(methods):
        lacking = _method_asset(group[0])
        if lacking in why:
            for method in group:
                report.skipped[method.slug] = why[lacking]
                log(f"{method.label}: skipped: {why[lacking]}", echo=False)
                unmet.append(method.label)
            continue
        try:
            passes = _method_passes(cfg, ctx, device, dataset, group, metrics, models)
        except AssetUnavailable as exc:
            for method in group:
                report.skipped[method.slug] = str(exc)
                log(f"{method.label}: skipped, weights unavailable: {exc}")
            continue
        except VqfrError as exc:
            for method in group:
                report.failed[method.slug] = str(exc)
                log(f"{method.label}: no result: {exc}")
            continue
        if len(group) > 1:
            log(f"{', '.join(m.label for m in group)}: one forward per batch for all "
                f"{len(group)} (restore_fidelity_sweep)", echo=False)
        runs.extend(zip(group, passes, strict=True))
    if unmet:
        log(f"not run for lack of files (how to get them: at the end of the run): "
            f"{', '.join(unmet)}")
    # All methods go through the dataset together, batch by batch: LPIPS then computes a
    # batch's reference features once for all of them, and a sweep family's members find their
    # outputs already restored.
    run_in_lockstep([one_pass for _, one_pass in runs])
    summaries: dict[str, dict] = {}
    metric_files = {name: found[name].record() for name in metrics.assets() if name in found}
    for method, one_pass in runs:
        try:
            summary = _finish_method(cfg, ctx, device, dataset, method, one_pass, metrics, log,
                                     position=methods.index(method), assets=metric_files)
        except VqfrError as exc:
            report.failed[method.slug] = str(exc)
            log(f"{method.label}: no result: {exc}")
            continue
        if summary is not None:
            summaries[method.slug] = summary
            report.method_dirs[method.slug] = one_pass.method_dir
    report.summaries = [summaries[m.slug] for m in methods if m.slug in summaries]
    _log_conversions(report.summaries, log)
    if ctx.is_main and report.summaries:
        report.slugs = {(s["method"].get("label") or s["method"]["name"]): slug
                        for slug, s in summaries.items()}
        if cfg.ci is not None:
            report.statistics = run_statistics(Path(cfg.out) / dataset.name, summaries, cfg.ci,
                                               log)
        report.table = results_table(report.summaries)
        log(format_table(report.table, dataset.name, report.statistics, report.slugs),
            echo=False)
    return report


def _open_dataset(cfg: RunConfig, methods: list[Method]) -> Dataset:
    """The dataset; when it is absent, one error that also names every file the run lacks
    (nothing is downloaded for a run that cannot start)."""
    try:
        return open_dataset(cfg.dataset, root=cfg.data_root)
    except DatasetUnavailable as exc:
        spellings = metric_spellings(cfg, _manifest_of(cfg.dataset, cfg.data_root))
        needed = needed_assets(methods, spellings, cfg.metric_options)
        _, missing = check_assets(needed, cfg.assets, download=False)
        raise DatasetUnavailable(f"this run needs what is not here yet.\n\n{exc}"
                                 + (f"\n\n{missing_files_text(missing, needed)}"
                                    if missing else "")) from None


def _resolve_files(cfg: RunConfig, ctx: DistContext, needed: dict[str, list[str]],
                   log: RunLog) -> tuple[dict, dict]:
    """Every file the run reads, resolved once (downloads announced): (found, missing). A
    non-official file is reported once, by rank 0, and in the log."""
    with warnings.catch_warnings():
        if not ctx.is_main:
            warnings.simplefilter("ignore", NonOfficialAsset)
        found, missing = check_assets(needed, cfg.assets, quiet=cfg.quiet)
    for resolved in found.values():
        if resolved.official is False:
            log(f"{resolved.path} is not the official file of asset {resolved.name!r} (sha256 "
                f"{resolved.sha256}); results made with it say official: false", echo=False)
    return found, missing


def metric_spellings(cfg: RunConfig, manifest: dict) -> list[str]:
    """The run's ``--metrics`` spellings: as given, else the dataset's paper metrics."""
    return list(cfg.metrics or manifest.get("paper_metrics") or PAPER_METRICS)


def lacking_files(metrics: MetricSet, unavailable: dict[str, str]) -> list[str]:
    """The metrics skipped because a file they read cannot be had."""
    return [label for label in metrics.skipped
            if any(a in unavailable for a in metrics.required[label])]


def _manifest_of(dataset: str, root: Path | None) -> dict:
    try:
        return load_manifest(dataset, root).data
    except VqfrError:   # a directory of one's own
        return {}


def _method_asset(method: Method) -> str | None:
    import vqfr.zoo  # noqa: F401  (registers the catalogue)
    from vqfr.zoo.registry import MODELS

    return MODELS[method.name].asset if method.kind == "model" else None


def needed_assets(methods: list[Method], metric_spellings: list[str],
                  metric_options: dict[str, dict]) -> dict[str, list[str]]:
    """Every zoo asset the run reads -> what needs it (method labels, metric columns)."""
    needed: dict[str, list[str]] = {}
    for method in methods:
        asset = _method_asset(method)
        if asset:
            needed.setdefault(asset, []).append(method.label)
    for asset, users in metric_assets(metric_spellings, metric_options).items():
        needed.setdefault(asset, []).extend(users)
    return needed


def _log_conversions(summaries: list[dict], log: RunLog) -> None:
    """Each file converted on reading, once per run (the methods share the dataset's files)."""
    files: dict[str, set[str]] = {}
    for summary in summaries:
        for note, converted in summary.get("conversions", {}).items():
            files.setdefault(note, set()).update(converted["files"])
    for note, names in sorted(files.items()):
        log(f"converted on reading, {note}: {len(names)} file(s): {', '.join(sorted(names))}")


def run_statistics(dataset_dir: Path, summaries: dict[str, dict], options: CIOptions,
                   log: RunLog) -> DatasetStatistics:
    """Intervals and paired comparisons of the methods of this run, from the files just
    written (so a resumed, sharded or cached run gets the same), stored beside them."""
    log(f"intervals and paired comparisons of {len(summaries)} method(s)", echo=False)
    statistics = dataset_statistics([load_method_rows(dataset_dir / slug) for slug in summaries],
                                    options)
    for note in statistics.notes:
        log(note, echo=False)
    write_statistics(dataset_dir, summaries, statistics)
    return statistics


def sweep_groups(methods: list[Method]) -> list[list[Method]]:
    """The methods in run order, those of one sweep family (same model and other options,
    another value of the swept option) gathered into one group at the first member's place."""
    groups: list[list[Method]] = []
    by_family: dict[tuple, list[Method]] = {}
    for method in methods:
        family = sweep_family(method)
        if family is not None and family in by_family:
            by_family[family].append(method)
            continue
        group = [method]
        groups.append(group)
        if family is not None:
            by_family[family] = group
    return groups


def _method_passes(cfg: RunConfig, ctx: DistContext, device: torch.device, dataset: Dataset,
                   group: list[Method], metrics: MetricSet,
                   models: dict[str, Restorer]) -> list[MethodPass]:
    """One pass per method of the group; a sweep family's restorers share one forward, and
    every variant of a model shares the one module (``models``: model name -> first
    restorer, filled here)."""
    first = group[0]
    restorers: list[Any] = [None] * len(group)
    if first.kind == "model":
        base = Restorer(first, cfg.assets, device=device, dtype=cfg.dtype)
        if first.name in models:
            base.share_model(models[first.name])
        else:
            models[first.name] = base
        if len(group) == 1:
            restorers = [base]
        else:
            option = sweep_family(first)[1]
            sweep = SweepRestorer(base, [m.options[option] for m in group])
            restorers = [sweep.member(m.options[option]) for m in group]
    passes = []
    for method, restorer in zip(group, restorers, strict=True):
        weights = restorer.weights if restorer else None
        cache_key = {"method": method.key(),
                     "weights_sha256": weights["sha256"] if weights else None,
                     "dtype": cfg.dtype if restorer else None,
                     "precision": (effective_precision(cfg.precision, device) if restorer
                                   else None)}
        passes.append(MethodPass(dataset_items(dataset, method), method, restorer, metrics,
                                 Path(cfg.out) / dataset.name / method.slug, cache_key,
                                 cfg.batch_size, cfg.allow_size, ctx, device, cfg.workers,
                                 show_progress=not cfg.quiet))
    return passes


def _finish_method(cfg: RunConfig, ctx: DistContext, device: torch.device, dataset: Dataset,
                   method: Method, one_pass: MethodPass, metrics: MetricSet, log: RunLog,
                   position: int, assets: dict[str, dict]) -> dict | None:
    """Gather the pass's outcome from every rank and write the method's results (rank 0).
    ``position``: the method's place in the run's list (reports show methods in that order);
    ``assets``: the metrics' files as recorded in the provenance."""
    started = one_pass.started
    weights = one_pass.restore.weights if one_pass.restore else None
    items = one_pass.items
    method_dir = one_pass.method_dir
    parts = ctx.gather(one_pass.outcome)
    if not ctx.is_main:
        ctx.barrier()
        return None
    try:
        errors = [p.error for p in parts if p.error]
        if errors:
            raise VqfrError(errors[0])
        restored = sum(p.restored for p in parts)
        reused = sum(p.reused for p in parts)
        failed = {stem: why for p in parts for stem, why in p.failed.items()}
        one_pass.cache.save({k: v for p in parts for k, v in p.entries.items()})
        log(f"{method.label}: {restored} restored, {reused} reused from the cache, "
            f"{len(failed)} failed, {max(p.seconds for p in parts):.1f} s")
        replaced = sorted(stem for p in parts for stem in p.replaced)
        if replaced:
            log(f"{method.label}: {len(replaced)} restored image(s) had been changed since they "
                f"were written, restored again: {', '.join(replaced)}")
        threads = [p.threads for p in parts]
        reused_threads = sorted(set().union(*(p.reused_threads for p in parts)))
        if len(set(threads)) > 1 or reused_threads:
            log(f"{method.label}: warning: CPU thread counts differ (this run: {threads} per "
                f"process" + (f"; reused work: {reused_threads}" if reused_threads else "")
                + "): float results can differ in the last bits from a run at one thread count")
        if failed:
            listing = "\n  ".join(f"{stem}: {why}" for stem, why in sorted(failed.items()))
            raise VqfrError(f"{len(failed)} of {len(items)} images could not be used, so no "
                            f"dataset-level number is given:\n  {listing}")
        log(f"{method.label}: computing {', '.join(metrics.metrics)}", echo=False)
        results = metrics.compute(merge_batch_states([p.batch_states for p in parts]))
        stems = [it.stem for it in items]
        for line in unmeasured_lines(results, stems):
            log(f"{method.label}: {line}")
        write_per_image_csv(method_dir / "per_image.csv", stems, results)
        rows = write_metric_rows(method_dir, metrics.metrics)
        finished = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        return write_summary(
            method_dir / "summary.json",
            dataset=dataset.summary(),
            method={"name": method.name, "label": method.label, "position": position,
                    "options": (method.options if method.kind != "folder"
                                else {"folder": str(method.folder)}),
                    "weights": weights},
            results=results, metrics=metrics.metrics,
            counts={"images": len(items), "restored": restored, "reused": reused, "failed": [],
                    "restored_again": replaced},
            provenance={**runtime_versions(), "device": device_description(device),
                        "dtype": cfg.dtype,
                        "precision": effective_precision(cfg.precision, device),
                        "batch_size": cfg.batch_size, "world_size": ctx.world_size,
                        "threads": threads[0] if len(set(threads)) == 1 else threads,
                        **({"reused_threads": reused_threads} if reused_threads else {}),
                        "seed": cfg.seed, "command": command_line(), "started": started,
                        "finished": finished, "assets": assets},
            conversions=conversion_summary(
                {file: notes for p in parts for file, notes in p.conversions.items()},
                dataset.root),
            skipped_metrics=metrics.skipped, metric_rows=rows, stems=stems)
    finally:
        ctx.barrier()
