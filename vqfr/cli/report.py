"""``vqfr-eval report RUN_DIR... [--spec NAME] -o reports/NAME/``: one self-contained HTML page
from result files (no models are loaded)."""
from __future__ import annotations

from pathlib import Path

from vqfr.cli.argtypes import folder_path


def register(subparsers) -> None:
    from vqfr.report.specs import available_specs, spelled

    parser = subparsers.add_parser(
        "report", help="build an HTML report from run directories",
        description="Tables (measured beside the paper's numbers from eval/ specs), image grids "
                    "with eye/mouth crops, per-image distributions, fidelity sweeps, TWM offset "
                    "maps and the efficiency table, as one index.html with its PNGs beside it. "
                    "Reads result files only.")
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run directories (RUN_DIR/<dataset>/<method>/summary.json)")
    parser.add_argument("--spec", action="append", default=[], metavar="NAME",
                        help="paper table to compare with (repeatable); one of: "
                             + ", ".join(map(spelled, available_specs())) + " (or a .toml path)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="a `vqfr-eval profile --json` file for the efficiency table")
    parser.add_argument("--title", default="vqfr-eval report")
    parser.add_argument("-o", "--out", type=folder_path, required=True, metavar="DIR",
                        help="output folder (e.g. reports/NAME/); index.html is written there")
    parser.set_defaults(func=report_command)


def report_command(args) -> int:
    from vqfr.report.render import build_report

    index = build_report(args.run_dirs, args.out, args.spec, args.profile, args.title)
    print(f"report: {index}")
    return 0
