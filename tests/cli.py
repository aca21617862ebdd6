"""The command line as a user meets it: ``python -m vqfr ...`` in a subprocess, with its own
cache home (``VQFR_EVAL_HOME``: nothing of the machine's cache is read) and downloads failing at
once (no proxy can reach anything)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def vqfr_eval(*args: str | Path, home: Path, cwd: Path | None = None,
              env: dict[str, str] | None = None,
              timeout: float = 600) -> subprocess.CompletedProcess:
    environment = {**os.environ, "VQFR_EVAL_HOME": str(home),
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                               os.environ.get("PYTHONPATH")])),
                   "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
                   "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
                   "no_proxy": "", "NO_PROXY": "", **(env or {})}
    return subprocess.run([sys.executable, "-m", "vqfr", *map(str, args)], cwd=cwd or REPO,
                          env=environment, capture_output=True, text=True, timeout=timeout)
