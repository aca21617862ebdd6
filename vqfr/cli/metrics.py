"""``vqfr-eval metrics --restored DIR [--gt DIR] --metrics ... [--json OUT.json]``."""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from vqfr.cli.argtypes import existing_folder, file_path
from vqfr.cli.ci_options import add_ci_options, ci_options
from vqfr.cli.run import add_device_options, checked_metrics


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "metrics", help="measure a folder of restored images",
        description="Measure restored images, paired with --gt by file stem (never by sorted "
                    "position; any missing, extra or ambiguous file is an error). Without "
                    "--gt only no-reference metrics and FID are measured.")
    parser.add_argument("--restored", required=True, type=existing_folder, metavar="DIR")
    parser.add_argument("--gt", type=existing_folder, default=None, metavar="DIR")
    parser.add_argument("--metrics", default="psnr,ssim,lpips,niqe,fid,deg,lmd", metavar="M1,M2",
                        help="metrics, each NAME[:option=value...][:label=COLUMN] as for `run` "
                             "(default: psnr,ssim,lpips,niqe,fid,deg,lmd; without --gt the "
                             "full-reference ones are skipped)")
    parser.add_argument("--fid-ref", default=None, metavar="STATS_OR_DIR",
                        help="FID reference: a statistics file, a folder of images, or gt (the "
                             "--gt images); default: the FFHQ-512 statistics asset, as the paper")
    add_device_options(parser, batch_size=8)
    add_ci_options(parser, per_image_only=True)
    parser.add_argument("--json", type=file_path, default=None, metavar="OUT.json",
                        help="also write the values, options and provenance as JSON")
    parser.add_argument("--csv", type=file_path, default=None, metavar="OUT.csv",
                        help="per-image values as CSV")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from vqfr.run.cache import atomic_write_bytes, atomic_write_json
    from vqfr.run.evaluate import evaluate_folders
    from vqfr.zoo import parse_asset_overrides

    names = checked_metrics(args.metrics)
    metric_options = {"fid": {"reference": args.fid_ref}} if args.fid_ref else None
    result = evaluate_folders(args.restored, args.gt, names, device=args.device,
                              assets=parse_asset_overrides(args.asset),
                              batch_size=args.batch_size, metric_options=metric_options,
                              show_progress=not args.quiet, precision=args.precision)
    intervals = per_image_intervals(result, ci_options(args))
    for name, interval in intervals.items():
        result["options"][name]["ci"] = interval
    if args.json:
        atomic_write_json(args.json, result)
    if args.csv:
        columns = ["name"] + [n for n in result["metrics"]
                              if any(n in row for row in result["per_image"])]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(result["per_image"])
        atomic_write_bytes(args.csv, buffer.getvalue().encode())
    for name, value in result["metrics"].items():
        interval = intervals.get(name)
        if interval and interval["low"] is not None:
            print(f"{name}: {value}  ({interval['level']:g} CI {interval['low']:.6g} to "
                  f"{interval['high']:.6g}, {interval['method']})")
        else:
            print(f"{name}: {value}")
    for name, info in result["options"].items():
        for stem, reason in info.get("unmeasured", {}).items():
            print(f"{name}: {stem}: {reason} (left out of the mean)")
    for name, reason in result["skipped"].items():
        print(f"{name}: skipped ({reason})")
    for note, converted in result["conversions"].items():
        print(f"converted on reading, {note}: {converted['count']} file(s): "
              f"{', '.join(converted['files'])}", file=sys.stderr)
    if result["missing_files"]:
        print(f"\n{result['missing_files']}", file=sys.stderr)
    written = [str(p) for p in (args.json, args.csv) if p]
    if written:
        print(f"wrote {', '.join(written)}")
    return 0


def per_image_intervals(result: dict, options) -> dict[str, dict]:
    """Bootstrap intervals over the images (``vqfr.stats``, as a run's) of the metrics with
    per-image values; FID and KID have none here: their intervals resample the feature rows a
    run keeps (``vqfr-eval run``)."""
    if options is None or len(result["per_image"]) < 2:
        return {}
    import numpy as np

    from vqfr.stats.analysis import dataset_statistics
    from vqfr.stats.rows import MethodRows

    count = len(result["per_image"])
    rows = MethodRows(Path("."), {"metrics": result["metrics"], "metric_info": result["options"],
                                  "dataset": {"count": count}}, key="restored")
    for name in result["metrics"]:
        values = np.array([row.get(name, np.nan) for row in result["per_image"]], dtype=float)
        if not np.all(np.isnan(values)):
            rows.values[name] = values
    return dataset_statistics([rows], options).intervals.get("restored", {})
