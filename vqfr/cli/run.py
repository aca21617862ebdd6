"""``vqfr-eval run --dataset NAME|DIR`` (also ``vqfr-eval --dataset ...``): the benchmark."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vqfr.cli.argtypes import device, folder_path, non_negative_int, positive_int, unit_interval
from vqfr.cli.ci_options import add_ci_options, ci_options
from vqfr.run.methods import PAPER_METHODS
from vqfr.run.restorer import DTYPES, SIZE_POLICIES


def add_device_options(parser: argparse.ArgumentParser, batch_size: int = 4) -> None:
    parser.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, metavar="N",
                        help=f"images per model call (default: {batch_size})")
    parser.add_argument("--asset", action="append", default=[], metavar="NAME=PATH",
                        help="use this file for asset NAME (weights, metric parameters); "
                             "repeatable; see `vqfr-eval models`")
    add_precision_option(parser)


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    from vqfr.precision import DEFAULT_PRECISION, PRECISIONS

    parser.add_argument("--precision", choices=list(PRECISIONS), default=DEFAULT_PRECISION,
                        help="float32 arithmetic on CUDA: exact (no TF32: the CPU goldens' "
                             "arithmetic, the same on every GPU), official (PyTorch's defaults, "
                             "as the official code ran: TF32 convolutions, float32 matrix "
                             "products) or tf32 (TF32 for both). No effect on CPU. "
                             f"Default: {DEFAULT_PRECISION}")


def add_pass_options(parser: argparse.ArgumentParser) -> None:
    """Options of the one-pass runner shared by ``run`` and ``ablate``."""
    parser.add_argument("--workers", type=positive_int, default=2,
                        help="threads decoding and encoding images (default: 2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log echo")


def add_restore_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", choices=list(DTYPES), default="fp32",
                        help="restoration precision; fp16/bf16 use autocast (default: fp32, "
                             "the official setting)")
    parser.add_argument("--fidelity-ratio", type=unit_interval, default=None, metavar="R",
                        help="VQFR v2 fidelity ratio (official default 0.0)")
    parser.add_argument("--fidelity-weight", type=unit_interval, default=None, metavar="W",
                        help="CodeFormer fidelity weight w (official default 0.5)")
    parser.add_argument("--seed", type=non_negative_int, default=0,
                        help="seed of random inputs (GFPGAN noise) and torch (default: 0)")
    parser.add_argument("--allow-size", choices=SIZE_POLICIES, default="512",
                        help="input sizes accepted: 512 (the official 512x512 aligned faces), or "
                             "multiple-of-32 for models that accept it (VQFR v1)")


def checked_metrics(text: str | None) -> list[str] | None:
    """``--metrics`` as a list of spellings, each checked before any work (None: not given)."""
    from vqfr.metrics.registry import parse_metric_specs
    from vqfr.options import split_list

    if text is None:
        return None
    parse_metric_specs(text)
    return split_list(text)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="benchmark methods on a dataset (the default command)",
        description="Restore a dataset with each method in one pass (cached, resumable; "
                    "torchrun for several processes) and measure every metric. Results go to "
                    "RUN_DIR/<dataset>/<method>/{per_image.csv,summary.json}.")
    parser.add_argument("--dataset", default=None, metavar="NAME|DIR",
                        help="a registered dataset (celeba-test, ...) or a directory with lq/ "
                             "(and hq/); with --table, replaces the table's datasets")
    parser.add_argument("--table", default=None, metavar="SPEC",
                        help="run what a paper table needs (an eval/ spec by name, e.g. "
                             "vqfr-celeba-test, or a .toml path: its datasets, rows and metrics "
                             "with the paper's protocol options), then build the report beside "
                             "the paper's numbers")
    parser.add_argument("--report", type=folder_path, default=None, metavar="DIR",
                        help="with --table: report folder (default: reports/SPEC)")
    parser.add_argument("--method", action="append", default=None, metavar="M1,M2",
                        help="zoo models (vqfr-v1, vqfr-v2, gfpgan-v1.3, gfpgan-v1.4, codeformer; "
                             "options as NAME:key=value[:key=value], label=/slug= name a "
                             "variant), folder:PATH (results made elsewhere) or lq (the input). "
                             f"Default: {','.join(PAPER_METHODS)}")
    parser.add_argument("--metrics", default=None, metavar="M1,M2",
                        help="metrics, each NAME[:option=value...][:label=COLUMN], e.g. "
                             "psnr,psnr:test_y_channel=true:label=psnr_y,niqe:convert_to=gray "
                             "(default: the dataset's paper metrics; an unknown name or option "
                             "lists those that exist)")
    parser.add_argument("--fid-ref", default=None, metavar="STATS|DIR|gt",
                        help="FID reference: a statistics file, a folder of images, or gt (the "
                             "dataset's own HQ images); default: the FFHQ-512 statistics asset, "
                             "as the paper")
    parser.add_argument("--out", type=folder_path, default="runs", metavar="RUN_DIR",
                        help="run directory (default: runs)")
    parser.add_argument("--root", type=Path, default=None, help="data root for dataset names")
    add_device_options(parser)
    add_restore_options(parser)
    add_pass_options(parser)
    add_ci_options(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from vqfr.errors import VqfrError
    from vqfr.run.benchmark import RunConfig, run_benchmark
    from vqfr.zoo import parse_asset_overrides

    if not args.dataset and not args.table:
        raise VqfrError("give --dataset NAME|DIR (or --table SPEC)")
    if args.table and args.method:
        raise VqfrError("--table runs the table's rows: leave out --method")
    config = RunConfig(
        dataset=args.dataset or "", methods=args.method or list(PAPER_METHODS),
        metrics=checked_metrics(args.metrics),
        out=args.out, data_root=args.root, device=args.device, batch_size=args.batch_size,
        dtype=args.dtype, precision=args.precision, assets=parse_asset_overrides(args.asset),
        metric_options={"fid": {"reference": args.fid_ref}} if args.fid_ref else {},
        method_defaults={"fidelity_ratio": args.fidelity_ratio,
                         "fidelity_weight": args.fidelity_weight},
        seed=args.seed, allow_size=args.allow_size, workers=args.workers, quiet=args.quiet,
        ci=ci_options(args))
    if args.table:
        from vqfr.report.specs import spelled
        from vqfr.studies.tables import run_table

        result = run_table(args.table, config, [args.dataset] if args.dataset else None,
                           args.report)
        for note in result.plan.notes:
            print(f"{spelled(result.plan.spec.name)}: {note}", file=sys.stderr)
        codes = [print_run_report(r) for r in result.runs if r.is_main]
        if result.report is not None:
            print(f"report: {result.report}")
        return max(codes, default=0)
    return print_run_report(run_benchmark(config))


def print_run_report(report) -> int:
    """Print a run's table, what was skipped or failed (each missing file's guidance once) and
    where the results are; the exit code."""
    from vqfr.run.results import format_table

    if not report.is_main:
        return 0
    if report.table is not None:
        print(format_table(report.table, report.summaries[0]["dataset"]["name"],
                           report.statistics, report.slugs))
    for slug, reason in report.skipped.items():
        print(f"skipped {slug}: {reason}", file=sys.stderr)
    for slug, reason in report.failed.items():
        print(f"no result for {slug}: {reason}", file=sys.stderr)
    if report.missing_files:
        print(f"\n{report.missing_files}", file=sys.stderr)
    if report.method_dirs:
        print(written_files(report))
    return 0 if not report.failed else 1


def written_files(report) -> str:
    """Where the run's results are: each method's files, and the log."""
    folder = report.out / report.dataset
    lines = [f"results in {folder}/:"]
    for slug, method_dir in report.method_dirs.items():
        files = [name for name in ("summary.json", "per_image.csv")
                 if (method_dir / name).is_file()]
        images = method_dir / "images"
        if images.is_dir():
            files.append(f"images/ ({sum(1 for _ in images.glob('*.png'))} PNGs)")
        lines.append(f"  {slug}/: {', '.join(files)}")
    if report.statistics is not None and (folder / "comparisons.json").is_file():
        lines.append("  comparisons.json (pairwise comparisons)")
    lines.append(f"log: {report.out / 'log.txt'}")
    return "\n".join(lines)
