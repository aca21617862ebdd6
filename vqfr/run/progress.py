"""Progress bars (tqdm, images/s and ETA) and the run's concise ``log.txt``."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from tqdm import tqdm

from vqfr.errors import output_error


def progress(total: int, desc: str, enabled: bool = True) -> tqdm:
    """A bar on stderr when it is a terminal; none in a log file (no carriage returns or
    escape codes there: the run's log lines say the same)."""
    return tqdm(total=total, desc=desc, unit="img", disable=None if enabled else True,
                dynamic_ncols=True, leave=False, file=sys.stderr, smoothing=0.1)


class RunLog:
    """Appends timestamped lines to ``log.txt`` (rank 0 only) and echoes them unless quiet."""

    def __init__(self, path: Path | None, quiet: bool = False, enabled: bool = True) -> None:
        self.path = Path(path) if path else None
        self.quiet = quiet
        self.enabled = enabled
        if self.path and enabled:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise output_error(self.path.parent, exc) from None

    def __call__(self, message: str, echo: bool = True) -> None:
        if not self.enabled:
            return
        if self.path:
            try:
                with open(self.path, "a") as f:
                    f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")
            except OSError as exc:
                raise output_error(self.path, exc) from None
        if echo and not self.quiet:
            tqdm.write(message, file=sys.stderr)
