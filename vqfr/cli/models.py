"""``vqfr-eval models``: list the models and weight files (where they are, whether they check
out, where to get them); ``vqfr-eval models fetch NAME...`` downloads them."""
from __future__ import annotations

import argparse
import importlib.util

from vqfr import zoo
from vqfr.errors import AssetUnavailable, VqfrError
from vqfr.zoo.cache import hash_matches


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models", help="list models and weight files; fetch them",
        description="List every restoration model and every weight/parameter file (asset): "
                    "its file name, where it is or would be, whether it is present and "
                    "verified, and where to get it.")
    parser.add_argument("--asset", action="append", default=[], metavar="NAME=PATH",
                        help="use this file for asset NAME (repeatable)")
    parser.add_argument("--verify", action="store_true",
                        help="hash the present files and compare with the published sha256")
    parser.set_defaults(func=list_command)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    fetch = actions.add_parser("fetch", help="download assets into the cache",
                               description="Download assets (or the weights of models) into "
                                           "the cache; prints what to do for manual-only files.")
    fetch.add_argument("names", nargs="*", metavar="NAME", help="asset or model names")
    fetch.add_argument("--all", action="store_true", help="every asset")
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    fetch.set_defaults(func=fetch_command)


def _arch_state(spec: zoo.ModelSpec) -> str:
    module = spec.arch.partition(":")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        found = False
    return spec.arch if found else f"{spec.arch} (not installed)"


def _asset_lines(asset: zoo.Asset, overrides: dict, verify: bool) -> tuple[list[str], bool]:
    """Lines describing one asset, and whether a present file failed verification."""
    path = overrides.get(asset.name) or zoo.weights_dir() / asset.filename
    source = "override" if asset.name in overrides else "cache"
    lines = [f"  {asset.name:<18} {asset.filename}  ({asset.description})"]
    expected = (asset.sha256 or (f"{asset.sha256_prefix}..." if asset.sha256_prefix else None))
    failed = False
    if not path.is_file():
        lines.append(f"      missing: {path}")
    else:
        lines.append(f"      present ({source}): {path}")
        if verify:
            actual = zoo.sha256_file(path)
            ok = hash_matches(actual, asset.sha256, asset.sha256_prefix)
            failed = ok is False
            verdict = {True: "verified", False: f"MISMATCH, expected {expected}",
                       None: "no published hash to check"}[ok]
            lines.append(f"      sha256 {actual}: {verdict}")
    if not verify or not path.is_file():
        lines.append(f"      sha256: {expected or 'not published'}")
    for url in asset.urls:
        lines.append(f"      url: {url}")
    if asset.manual:
        lines.append(f"      {'note' if asset.urls else 'manual'}: {asset.manual}")
    if not path.is_file():
        lines.append(f"      or pass: --asset {asset.name}=/path/to/{asset.filename}")
    return lines, failed


def list_command(args: argparse.Namespace) -> int:
    overrides = zoo.parse_asset_overrides(args.asset)
    print("Models")
    rows = [("NAME", "WEIGHTS", "INPUT", "DEFAULT OPTIONS", "ARCH")]
    for name in zoo.list_models():
        spec = zoo.get_model_spec(name)
        rows.append((name, spec.asset, spec.input_size,
                     ", ".join(f"{k}={v}" for k, v in spec.options.items()), _arch_state(spec)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  " + "  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths))
              + f"  {row[-1]}")
    print(f"\nAssets (cache: {zoo.weights_dir()}; set VQFR_EVAL_HOME to move it)")
    any_failed = False
    for name in zoo.list_assets():
        lines, failed = _asset_lines(zoo.get_asset(name), overrides, args.verify)
        any_failed |= failed
        print("\n".join(lines))
    return 1 if any_failed else 0


def _asset_names(names: list[str], everything: bool) -> list[str]:
    if everything:
        return zoo.list_assets()
    if not names:
        raise VqfrError("models fetch: name at least one asset or model, or use --all")
    resolved = []
    for name in names:
        if name in zoo.MODELS:
            name = zoo.MODELS[name].asset
        zoo.get_asset(name)  # unknown name -> error listing the known ones
        resolved.append(name)
    return list(dict.fromkeys(resolved))


def fetch_command(args: argparse.Namespace) -> int:
    failures = []
    for name in _asset_names(args.names, args.all):
        try:
            resolved = zoo.resolve_asset(name, quiet=args.quiet)
        except AssetUnavailable as exc:
            failures.append(str(exc))
            print(f"{name}: not fetched")
            continue
        print(f"{name}: {resolved.source} {resolved.path} (sha256 {resolved.sha256})")
    if failures:
        raise AssetUnavailable("\n\n".join(failures))
    return 0
