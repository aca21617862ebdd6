"""Command line: ``vqfr-eval [run] --dataset NAME ...`` and its subcommands.

Each subcommand lives in ``vqfr/cli/<command>.py`` and defines ``register(subparsers)``, which
adds its parser and sets ``func`` to a handler taking the parsed arguments and returning an exit
code. Handlers only translate arguments into one call of the package's rooms (run, metrics, data,
zoo, report); nothing else imports this package.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from vqfr import __version__

# Order = order in --help.
COMMANDS = ("run", "restore", "metrics", "fid_stats", "datasets", "models", "profile",
            "ablate", "report")


from vqfr.errors import VqfrError as UserError  # noqa: E402  (re-exported for the commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqfr-eval",
        description="Evaluate blind face restoration: VQFR, GFPGAN, CodeFormer and your own "
                    "results on CelebA-Test, LFW-Test, WebPhoto-Test, WIDER-Test.")
    parser.add_argument("--version", action="version", version=f"vqfr-eval {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"vqfr.cli.{name}")
        except ModuleNotFoundError as exc:  # a command whose module is not written yet
            if exc.name == f"vqfr.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `vqfr-eval --dataset celeba-test` is `vqfr-eval run --dataset celeba-test`.
    if argv and argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
        argv.insert(0, "run")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"vqfr-eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vqfr-eval: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
