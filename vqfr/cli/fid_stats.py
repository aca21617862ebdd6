"""``vqfr-eval fid-stats DIR -o STATS.pth``: FID reference statistics of a folder of images, in
the official format (a torch-saved dict ``{'name', 'size', 'mean', 'cov'}`` of numpy arrays, as
TencentARC/VQFR ``scripts/metrics/inception_stat.py`` writes; readable by the official FID
script and by ``vqfr-eval ... --fid-ref STATS.pth``)."""
from __future__ import annotations

import argparse

from vqfr.cli.argtypes import device, existing_folder, file_path, positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "fid-stats", help="build FID reference statistics from a folder of images",
        description="Inception pool3 statistics (mean float32, covariance float64) of every "
                    "image directly in DIR, sorted by name, saved in the official format.")
    parser.add_argument("folder", type=existing_folder, metavar="DIR")
    parser.add_argument("-o", "--output", required=True, type=file_path, metavar="STATS.pth")
    parser.add_argument("--name", default=None, help="dataset name stored in the file "
                                                     "(default: the folder name)")
    parser.add_argument("--asset", action="append", default=[], metavar="NAME=PATH",
                        help="use a local file for an asset, e.g. fid-inception=PATH")
    parser.add_argument("--device", type=device, default="cpu")
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from vqfr.data.images import is_image_file, read_image
    from vqfr.metrics.fid import FID, feature_statistics
    from vqfr.zoo import parse_asset_overrides

    metric = FID(reference="gt", device=args.device, batch_size=args.batch_size,
                 assets=parse_asset_overrides(args.asset))
    features = metric.folder_features(args.folder)
    mean, cov = feature_statistics(features)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    first = min(p for p in args.folder.iterdir() if p.is_file() and is_image_file(p))
    stats = {"name": args.name or args.folder.name, "size": int(read_image(first).shape[0]),
             "mean": mean, "cov": cov}
    tmp = args.output.with_name(args.output.name + ".tmp")
    torch.save(stats, tmp)
    tmp.replace(args.output)
    print(f"{args.output}: {len(features)} images, mean {mean.dtype} {mean.shape}, "
          f"cov {cov.dtype} {cov.shape}, trace {float(np.trace(cov)):.6g}")
    return 0
