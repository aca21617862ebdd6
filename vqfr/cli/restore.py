"""``vqfr-eval restore --method M --input IN --output OUT``: restore files with one model."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vqfr.cli.argtypes import folder_path
from vqfr.cli.run import add_device_options, add_restore_options


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "restore", help="restore face images with one model",
        description="Restore aligned face crops (512x512; see --allow-size) with one model and "
                    "write OUT/<stem>.png, converted to uint8 as the official scripts do. "
                    "Unreadable or wrongly sized files are reported by name and skipped; the "
                    "exit status is then 1.")
    parser.add_argument("--method", required=True,
                        help="zoo model: vqfr-v1, vqfr-v2, gfpgan-v1.3, gfpgan-v1.4, codeformer "
                             "(options as NAME:key=value)")
    parser.add_argument("--input", required=True, type=Path, help="an image or a folder")
    parser.add_argument("--output", required=True, type=folder_path, help="output folder")
    add_device_options(parser, batch_size=1)
    add_restore_options(parser)
    parser.add_argument("--branch", choices=("main", "texture"), default=None,
                        help="VQFR v1 output branch (default: main, as the official test)")
    parser.add_argument("--noise", choices=("random", "stored"), default=None,
                        help="GFPGAN noise: random (seeded with --seed, the official call path) "
                             "or the checkpoint's stored noise buffers")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from vqfr.errors import VqfrError
    from vqfr.precision import precision
    from vqfr.run.methods import parse_method
    from vqfr.run.restore_files import check_outputs, input_files, restore_files
    from vqfr.run.restorer import Restorer, make_deterministic
    from vqfr.zoo import parse_asset_overrides

    given = {"fidelity_ratio": args.fidelity_ratio, "fidelity_weight": args.fidelity_weight,
             "branch": args.branch, "noise": args.noise}
    method = parse_method(args.method, {**given, "seed": args.seed})
    if method.kind != "model":
        raise VqfrError(f"--method {args.method}: restore needs a zoo model")
    unused = [k for k, v in given.items() if v is not None and k not in method.options]
    if unused:
        raise VqfrError(f"{method.name} has no option {', '.join(unused)} "
                        f"(its options: {', '.join(method.options) or 'none'})")
    inputs = input_files(args.input)
    check_outputs(inputs, args.output)
    make_deterministic()
    restorer = Restorer(method, parse_asset_overrides(args.asset), device=args.device,
                        dtype=args.dtype)
    with precision(args.precision):
        failed = restore_files(restorer, inputs, args.output, batch_size=args.batch_size,
                               allow_size=args.allow_size, show_progress=not args.quiet)
    done = len(inputs) - len(failed)
    for problem in failed.values():
        print(f"vqfr-eval: error: {problem}", file=sys.stderr)
    print(f"{done} of {len(inputs)} image(s) restored with {method.label} into {args.output}")
    return 1 if failed else 0
