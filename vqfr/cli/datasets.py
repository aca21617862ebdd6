"""``vqfr-eval datasets list|verify|import|synth|demo``: test sets on disk."""
from __future__ import annotations

import argparse

from vqfr.cli.argtypes import folder_path, non_negative_int, positive_int


def _list(args: argparse.Namespace) -> int:
    from vqfr.data.datasets import data_root
    from vqfr.data.verify import list_datasets
    rows = list_datasets(args.root)
    print(f"data root: {data_root(args.root)}")
    print(f"{'name':<17} {'expected':>9} {'present':>8}  status")
    for row in rows:
        expected = "/".join(map(str, row.expected))
        present = "-" if row.present is None else str(row.present)
        print(f"{row.name:<17} {expected:>9} {present:>8}  {row.status}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from vqfr.data.verify import verify_dataset
    report = verify_dataset(args.name, args.root, workers=args.workers)
    for problem in report.problems:
        if problem.severity != "note" or args.notes:
            print(problem)
    notes = sum(p.severity == "note" for p in report.problems)
    hq = "" if report.hq_count is None else f", {report.hq_count} HQ"
    if report.procedural:
        verdict = ("complete; a procedural smoke-test set, its numbers compare with no paper"
                   if report.complete else "incomplete (regenerate it: vqfr-eval datasets demo "
                   "--force)")
    else:
        verdict = "paper-comparable" if report.comparable else "NOT paper-comparable"
    print(f"{report.name}: {report.lq_count} LQ{hq} images in {report.folder}: {verdict}"
          + (f" ({notes} conversion note(s); --notes lists them)" if notes and not args.notes else ""))
    return 0 if report.complete else 1


def _import(args: argparse.Namespace) -> int:
    from vqfr.data.archive import import_dataset
    result = import_dataset(args.name, args.sources, root=args.root, lq_subdir=args.lq_subdir,
                            hq_subdir=args.hq_subdir, force=args.force,
                            max_member_bytes=args.max_member_mb << 20, max_ratio=args.max_ratio)
    print(f"imported {result.lq_count} LQ images from {result.lq_from}"
          + (f" and {result.hq_count} HQ images from {result.hq_from}" if result.hq_from else "")
          + f" into {result.target}")
    for name in result.skipped:
        print(f"skipped (not an image): {name}")
    print(f"next: vqfr-eval datasets verify {args.name}"
          + (f" --root {args.root}" if args.root else ""))
    return 0


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N, got {text!r}") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"K/N needs 0 <= K < N, got {text!r}")
    return index, count


def _synth(args: argparse.Namespace) -> int:
    from vqfr.data.degradation import synthesize
    stems = synthesize(args.hq, args.out, seed=args.seed, config=args.config, shard=args.shard)
    print(f"wrote {len(stems)} LQ/HQ pairs to {args.out}/lq and {args.out}/hq "
          f"(config {args.config}, seed {args.seed})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from vqfr.data.demo import make_demo
    target = make_demo(args.out, root=args.root, count=args.count, seed=args.seed,
                       force=args.force)
    dataset = "demo" if args.out is None else str(target)
    print(f"wrote the demo set ({args.count} pairs) to {target}; try, with nothing to download: "
          f"vqfr-eval --dataset {dataset} --method lq (the models need their weights first: "
          "vqfr-eval models)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from vqfr.data.archive import MAX_MEMBER_BYTES, MAX_RATIO
    from vqfr.data.degradation import CONFIGS
    parser = subparsers.add_parser("datasets", help="list, verify, import or synthesise test sets")
    sub = parser.add_subparsers(dest="datasets_command", metavar="ACTION", required=True)
    root_help = ("data root (default: $VQFR_EVAL_DATA, ./datasets if it holds manifests, "
                 "else the checkout's datasets/)")

    p = sub.add_parser("list", help="registered sets: expected and present counts")
    p.add_argument("--root", help=root_help)
    p.set_defaults(func=_list)

    p = sub.add_parser("verify", help="check counts, readability, size/mode and LQ/HQ pairing; "
                                      "exit 0 only if complete (and, but for the procedural "
                                      "demo, paper-comparable)")
    p.add_argument("name")
    p.add_argument("--root", help=root_help)
    p.add_argument("--notes", action="store_true", help="also list conversion notes")
    p.add_argument("--workers", type=positive_int, default=4, help="decoding threads (default 4)")
    p.set_defaults(func=_verify)

    p = sub.add_parser("import", help="unpack downloaded archive(s)/folder(s) into ROOT/NAME")
    p.add_argument("name")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="zip, tar(.gz) or folder; "
                   "separate LQ and HQ archives may be given together")
    p.add_argument("--root", help=root_help)
    p.add_argument("--lq-subdir", help="folder inside a source holding the LQ images")
    p.add_argument("--hq-subdir", help="folder inside a source holding the HQ images")
    p.add_argument("--force", action="store_true", help="replace an existing ROOT/NAME")
    p.add_argument("--max-member-mb", type=positive_int, default=MAX_MEMBER_BYTES >> 20,
                   metavar="MB", help="refuse members larger than this (archive bombs; default "
                                      f"{MAX_MEMBER_BYTES >> 20})")
    p.add_argument("--max-ratio", type=positive_int, default=MAX_RATIO, metavar="R",
                   help="refuse members over 1 MiB compressed more than R times (archive bombs; "
                        f"default {MAX_RATIO})")
    p.set_defaults(func=_import)

    p = sub.add_parser("synth", help="CelebA-Test-style LQ/HQ pairs from HQ faces")
    p.add_argument("--hq", required=True, help="folder of HQ images")
    p.add_argument("--out", required=True, type=folder_path,
                   help="writes OUT/lq, OUT/hq, OUT/params")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--config", choices=sorted(CONFIGS), default="vqfr-v1",
                   help="degradation ranges of a training yml (default vqfr-v1)")
    p.add_argument("--shard", type=_shard, default=(0, 1), metavar="K/N",
                   help="only every N-th file starting at K (results do not depend on sharding)")
    p.set_defaults(func=_synth)

    p = sub.add_parser("demo", help="offline demo set (procedural faces) for smoke runs")
    p.add_argument("--out", type=folder_path,
                   help="default: ROOT/demo, opened as --dataset demo")
    p.add_argument("--root", help=root_help)
    p.add_argument("--count", type=positive_int, default=8)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--force", action="store_true", help="replace an existing demo set")
    p.set_defaults(func=_demo)
