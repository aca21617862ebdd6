"""``vqfr-eval power RUN_DIR --metric lpips --delta 0.005``: what the run's sets can resolve,
and how many images a difference needs (``vqfr.stats.power``). Reads result files only."""
from __future__ import annotations

import argparse
from pathlib import Path

from vqfr.cli.argtypes import open_unit_interval, positive_float
from vqfr.cli.ci_options import add_ci_options, ci_options


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "power", help="sample-size advice from an existing run",
        description="For one metric of an existing run: each method's interval half-width at "
                    "the run's number of images and the number at which it would be DELTA, "
                    "and for each pair of methods the number of images a paired test needs to "
                    "find a true difference of DELTA (bootstrap standard errors scaled as "
                    "1/sqrt(N); FID's small-N bias is not part of it).")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="a run directory (RUN_DIR/<dataset>/<method>/summary.json)")
    parser.add_argument("--metric", required=True, help="metric (column) name, e.g. lpips")
    parser.add_argument("--delta", type=positive_float, required=True,
                        help="the difference to resolve, in the metric's units")
    parser.add_argument("--dataset", default=None, help="only this dataset of the run")
    parser.add_argument("--power", type=open_unit_interval, default=0.8,
                        help="probability of finding a true difference of DELTA (default: 0.8)")
    add_ci_options(parser, inherit=True)
    parser.set_defaults(func=power_command)


def power_command(args: argparse.Namespace) -> int:
    from vqfr.errors import VqfrError
    from vqfr.stats.analysis import dataset_statistics, stored_options
    from vqfr.stats.power import sample_size_advice
    from vqfr.stats.rows import load_method_rows

    run_dir = Path(args.run_dir)
    summaries = sorted(run_dir.glob("*/*/summary.json"))
    if args.dataset:
        summaries = [s for s in summaries if s.parent.parent.name == args.dataset]
    if not summaries:
        raise VqfrError(f"no results under {run_dir}"
                        + (f" for dataset {args.dataset}" if args.dataset else "")
                        + ": expected RUN_DIR/<dataset>/<method>/summary.json")
    found = False
    for dataset_dir in dict.fromkeys(s.parent.parent for s in summaries):
        methods = [load_method_rows(s.parent) for s in summaries if s.parent.parent == dataset_dir]
        methods = [m for m in methods if args.metric in m.summary.get("metrics", {})]
        if not methods:
            continue
        found = True
        options = ci_options(args, stored_options(methods))
        stats = dataset_statistics(methods, options, only=[args.metric])
        per_method, pairs = sample_size_advice(stats, methods, args.metric, args.delta,
                                               args.power)
        fid = any((m.row_files(args.metric) or {}).get("statistic") == "fid" for m in methods)
        print(_advice_text(dataset_dir.name, args, options, per_method, pairs, fid))
    if not found:
        raise VqfrError(f"metric {args.metric!r} is not in the results under {run_dir}")
    return 0


def _advice_text(dataset, args, options, per_method, pairs, fid: bool) -> str:
    lines = [(f"{dataset}: {args.metric}, resolving a difference of {args.delta:g} "
              f"({options.level:g} intervals; paired tests two-sided at {options.alpha:.3g}, "
              f"power {args.power:g})")]
    if per_method:
        lines.append(f"  {'method':<28} {'N':>6} {'value':>12} {'± half-width':>14} "
                     f"{'N for ± delta':>14}")
        for m in per_method:
            lines.append(f"  {m.slug:<28} {m.count:>6} {m.value:>12.6g} {m.half_width:>14.4g} "
                         f"{m.images_for_half_width or '-':>14}")
    if pairs:
        lines.append(f"  {'pair (a - b)':<44} {'a - b':>12} {'s.e.':>10} {'N needed':>10}")
        for p in pairs:
            lines.append(f"  {p.a + ' - ' + p.b:<44} {p.diff:>12.4g} {p.standard_error:>10.3g} "
                         f"{p.images_needed or '-':>10}")
    if fid:
        lines.append("  (FID: its bias, roughly in proportion to 1/N, is not part of this)")
    return "\n".join(lines)
