"""Command line: ``vqfr-eval [run] --dataset NAME ...`` and its subcommands.

Each subcommand lives in ``vqfr/cli/<command>.py`` and defines ``register(subparsers)``, which
adds its parser and sets ``func`` to a handler taking the parsed arguments and returning an exit
code. Handlers only translate arguments into one call of the package's rooms (run, metrics, data,
zoo, report); nothing else imports this package.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import warnings

from vqfr import __version__

# Order = order in --help.
COMMANDS = ("run", "restore", "metrics", "fid_stats", "datasets", "models", "profile",
            "ablate", "report", "power")


from vqfr.errors import VqfrError as UserError  # noqa: E402  (re-exported for the commands)

_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _test_sets() -> list[str]:
    """The registered test sets' titles (the procedural demo set aside)."""
    from vqfr.data.datasets import load_manifest, registered_names

    manifests = [load_manifest(name) for name in registered_names()]
    return [m.title for m in manifests if not m.data.get("procedural")]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vqfr-eval",
        description="Evaluate blind face restoration: VQFR, GFPGAN, CodeFormer and your own "
                    f"results on {', '.join(_test_sets())}.")
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


def plain_warning_printer():
    """``warnings.showwarning`` for the command line: one plain line on stderr per distinct
    message (no Python source line; a file reported by several parts of a run, once)."""
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if text not in shown:
            shown.add(text)
            print(f"vqfr-eval: warning: {text}", file=sys.stderr, flush=True)

    return show


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
        with warnings.catch_warnings():
            warnings.showwarning = plain_warning_printer()
            code = int(args.func(args) or 0)
        sys.stdout.flush()   # a closed pipe shows here, not at exit
        return code
    except UserError as exc:
        print(f"vqfr-eval: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vqfr-eval: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:   # output piped into a reader that stopped (| head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:   # anything else is a bug: keep its traceback
            raise
        # writes the package makes are atomic and raise OutputError; this covers the others
        print(f"vqfr-eval: error: {exc.filename or 'writing a file'}: {exc.strerror}",
              file=sys.stderr)
        return 2
