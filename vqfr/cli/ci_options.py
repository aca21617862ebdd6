"""Options of the confidence intervals and paired tests (``vqfr.stats``), shared by ``run``
and ``power``; checked while parsing (a bad value is a usage error, exit 2)."""
from __future__ import annotations

import argparse

from vqfr.cli.argtypes import non_negative_int, open_unit_interval, positive_int


def ci_level(text: str) -> float | None:
    """``--ci``: a confidence level in (0, 1), or ``off``."""
    return None if text.strip().lower() == "off" else open_unit_interval(text)


CI_DEFAULTS = {"ci": 0.95, "ci_method": "bca", "resamples": 2000, "fid_resamples": 200,
               "ci_seed": 0, "paired_test": "bootstrap"}


def add_ci_options(parser: argparse.ArgumentParser, inherit: bool = False,
                   per_image_only: bool = False) -> None:
    """Confidence intervals and paired tests (``vqfr.stats``). ``inherit``: options left out
    are those the run recorded (``ci_options(args, recorded)``), and ``off`` is not offered.
    ``per_image_only``: intervals of per-image metrics alone (one set of images, no feature
    rows), so neither ``--fid-resamples`` nor ``--paired-test``."""
    defaults = CI_DEFAULTS if not inherit else dict.fromkeys(CI_DEFAULTS)
    parser.add_argument("--ci", type=open_unit_interval if inherit else ci_level,
                        default=defaults["ci"], metavar="LEVEL" if inherit else "LEVEL|off",
                        help="confidence level of the intervals and tests (default: " +
                             ("the run's" if inherit else "0.95; off: none") + ")")
    parser.add_argument("--ci-method", choices=("bca", "percentile"),
                        default=defaults["ci_method"],
                        help="bootstrap interval of per-image metrics (default: " +
                             ("the run's" if inherit else "bca") + ")")
    parser.add_argument("--resamples", type=positive_int, default=defaults["resamples"],
                        metavar="N", help="bootstrap resamples over images (default: " +
                        ("the run's" if inherit else "2000") + ")")
    parser.add_argument("--ci-seed", type=non_negative_int, default=defaults["ci_seed"],
                        metavar="SEED",
                        help="seed of the resamples (default: " +
                             ("the run's" if inherit else "0") + ")")
    if per_image_only:
        return
    parser.add_argument("--fid-resamples", type=positive_int,
                        default=defaults["fid_resamples"], metavar="N",
                        help="of which FID uses the first N (default: " +
                             ("the run's" if inherit else "200") + ")")
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
             "fid_resamples": getattr(args, "fid_resamples", None), "seed": args.ci_seed,
             "test": getattr(args, "paired_test", None)}
    return CIOptions(**{key: getattr(base, key) if value is None else value
                        for key, value in given.items()})
