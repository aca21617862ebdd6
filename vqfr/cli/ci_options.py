"""Options of the confidence intervals and paired tests (``vqfr.stats``), shared by ``run``
and ``power``; checked while parsing (a bad value is a usage error, exit 2)."""
from __future__ import annotations

import argparse
import math


def _checked(text: str, parse, valid, expected: str):
    """``parse(text)`` if it gives a valid value, else a usage error naming what is expected."""
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
    return value


def confidence_level(text: str) -> float:
    return _checked(text, float, lambda v: 0 < v < 1,
                    "a confidence level in (0, 1) such as 0.95 (or off, where allowed)")


def ci_level(text: str) -> float | None:
    """``--ci``: a confidence level in (0, 1), or ``off``."""
    return None if text.strip().lower() == "off" else confidence_level(text)


def probability(text: str) -> float:
    return _checked(text, float, lambda v: 0 < v < 1, "a probability in (0, 1)")


def positive_number(text: str) -> float:
    return _checked(text, float, lambda v: v > 0 and math.isfinite(v), "a positive number")


def resample_count(text: str) -> int:
    return _checked(text, int, lambda v: v >= 1, "a whole number of resamples >= 1")


CI_DEFAULTS = {"ci": 0.95, "ci_method": "bca", "resamples": 2000, "fid_resamples": 200,
               "ci_seed": 0, "paired_test": "bootstrap"}


def add_ci_options(parser: argparse.ArgumentParser, inherit: bool = False) -> None:
    """Confidence intervals and paired tests (``vqfr.stats``). ``inherit``: options left out
    are those the run recorded (``ci_options(args, recorded)``), and ``off`` is not offered."""
    defaults = CI_DEFAULTS if not inherit else dict.fromkeys(CI_DEFAULTS)
    parser.add_argument("--ci", type=confidence_level if inherit else ci_level,
                        default=defaults["ci"], metavar="LEVEL" if inherit else "LEVEL|off",
                        help="confidence level of the intervals and tests (default: " +
                             ("the run's" if inherit else "0.95; off: none") + ")")
    parser.add_argument("--ci-method", choices=("bca", "percentile"),
                        default=defaults["ci_method"],
                        help="bootstrap interval of per-image metrics (default: " +
                             ("the run's" if inherit else "bca") + ")")
    parser.add_argument("--resamples", type=resample_count, default=defaults["resamples"],
                        metavar="N", help="bootstrap resamples over images (default: " +
                        ("the run's" if inherit else "2000") + ")")
    parser.add_argument("--fid-resamples", type=resample_count,
                        default=defaults["fid_resamples"], metavar="N",
                        help="of which FID uses the first N (default: " +
                             ("the run's" if inherit else "200") + ")")
    parser.add_argument("--ci-seed", type=int, default=defaults["ci_seed"], metavar="SEED",
                        help="seed of the resamples (default: " +
                             ("the run's" if inherit else "0") + ")")
    parser.add_argument("--paired-test", choices=("bootstrap", "wilcoxon"),
                        default=defaults["paired_test"],
                        help="p-values of per-image metrics: paired bootstrap (default) or "
                             "Wilcoxon signed-rank")


def ci_options(args: argparse.Namespace, recorded=None):
    """The parsed options as ``vqfr.stats.analysis.CIOptions`` (None with ``--ci off``);
    options not given are taken from ``recorded`` (a CIOptions) when there is one."""
    from vqfr.stats.analysis import CIOptions

    if args.ci is None and recorded is None:
        return None
    base = recorded or CIOptions()
    given = {"level": args.ci, "method": args.ci_method, "resamples": args.resamples,
             "fid_resamples": args.fid_resamples, "seed": args.ci_seed,
             "test": args.paired_test}
    return CIOptions(**{key: getattr(base, key) if value is None else value
                        for key, value in given.items()})
