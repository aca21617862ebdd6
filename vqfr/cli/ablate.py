"""``vqfr-eval ablate --dataset NAME|DIR --study twm|parallel-decoder|fidelity``: the paper's
ablations as method variants, their TWM offsets and (``--report``) the report."""
from __future__ import annotations

import argparse
from pathlib import Path

from vqfr.cli.argtypes import folder_path, non_negative_int
from vqfr.cli.run import (add_device_options, add_pass_options, add_restore_options,
                           checked_metrics, print_run_report)
from vqfr.errors import VqfrError as UserError


def register(subparsers) -> None:
    from vqfr.studies.ablation import (FIDELITY_RATIOS, FIDELITY_WEIGHTS, OFFSETS_IMAGES, STUDIES,
                                   V2_ABLATION_RATIO)

    parser = subparsers.add_parser(
        "ablate", help="run an ablation study (TWM, parallel decoder, fidelity sweeps)",
        description="Run the variants of a study through the benchmark (one cached, resumable "
                    "pass each) and write the TWM offsets of the first images of each VQFR "
                    "variant. twm: all TWMs on, off at 32 and 16, all off, each level off in "
                    "turn; parallel-decoder: main vs. texture branch; fidelity: VQFR v2 "
                    f"fidelity_ratio {', '.join(map(str, FIDELITY_RATIOS))} and CodeFormer "
                    f"fidelity_weight {', '.join(map(str, FIDELITY_WEIGHTS))}.")
    parser.add_argument("--dataset", required=True, metavar="NAME|DIR",
                        help="a registered dataset or a directory with lq/ (and hq/)")
    parser.add_argument("--study", required=True, choices=STUDIES)
    parser.add_argument("--model", default=None,
                        choices=("vqfr-v1", "vqfr-v2", "codeformer"),
                        help="twm / parallel-decoder: vqfr-v1 (default) or vqfr-v2 (at "
                             f"--fidelity-ratio, default {V2_ABLATION_RATIO:g}: at 0 v2 skips "
                             "its main branch); fidelity: only vqfr-v2 or only codeformer")
    parser.add_argument("--metrics", default=None, metavar="M1,M2",
                        help="metrics, each NAME[:option=value...][:label=COLUMN], e.g. "
                             "psnr,psnr:test_y_channel=true:label=psnr_y,niqe:convert_to=gray "
                             "(default: the dataset's paper metrics; an unknown name or option "
                             "lists those that exist)")
    parser.add_argument("--out", type=folder_path, default="runs", metavar="RUN_DIR",
                        help="run directory (default: runs)")
    parser.add_argument("--root", type=Path, default=None, help="data root for dataset names")
    parser.add_argument("--report", type=folder_path, default=None, metavar="DIR",
                        help="also build the report (beside the study's eval/ spec) into DIR")
    parser.add_argument("--offsets-images", type=non_negative_int, default=OFFSETS_IMAGES,
                        metavar="N",
                        help="images whose TWM offsets are saved per VQFR variant (default: "
                             f"{OFFSETS_IMAGES}; about 50 MB each at 512x512; 0: none)")
    add_device_options(parser)
    add_restore_options(parser)
    add_pass_options(parser)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from vqfr.studies.ablation import AblationConfig, run_ablation
    from vqfr.run.benchmark import RunConfig
    from vqfr.zoo import parse_asset_overrides

    if args.fidelity_weight is not None:
        raise UserError("ablate takes no --fidelity-weight: the fidelity study sweeps it")
    run = RunConfig(
        dataset=args.dataset,
        metrics=checked_metrics(args.metrics),
        out=args.out, data_root=args.root, device=args.device, batch_size=args.batch_size,
        dtype=args.dtype, precision=args.precision, assets=parse_asset_overrides(args.asset),
        seed=args.seed,
        allow_size=args.allow_size, workers=args.workers, quiet=args.quiet)
    result = run_ablation(AblationConfig(
        study=args.study, run=run, model=args.model, fidelity_ratio=args.fidelity_ratio,
        offsets_images=args.offsets_images, report_dir=args.report))
    if not result.run.is_main:
        return 0
    code = print_run_report(result.run)
    for files in result.offsets.values():
        print(f"offsets: {files[0].parent} ({len(files)} images)")
    if result.report is not None:
        print(f"report: {result.report}")
    return code
