"""Load a rendered report in headless Chromium: the tables and images are in the DOM, nothing is
logged to the console and the page makes no network request. A control page with a console
error and a remote image proves that both checks can fail."""
from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_runs import NASTY_LABEL, make_real_run, make_runs

from vqfr.report.render import build_report

REPO = Path(__file__).resolve().parents[1]
ARTEFACTS = REPO / "reports" / "_test"          # reports/*/ is git-ignored
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed "
                                "(apt-get install chromium; .ci/run installs it)")


class _Elements(HTMLParser):
    """Every (tag, attributes) of a serialised DOM."""

    def __init__(self, dom: str):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))


def _load(page: Path, tmp: Path, *extra: str) -> tuple[str, list[str], list[str]]:
    """(DOM, console lines, URLs the page itself requested) for ``page``."""
    net_log = tmp / f"{page.parent.name}-net.json"
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", "--enable-logging=stderr",
         "--v=0", f"--log-net-log={net_log}", *extra, "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    events = json.loads(net_log.read_text())["events"]
    # Chromium's own background traffic (update checks, ...) has no page behind it; requests of
    # the page carry the file:// page in their network isolation key.
    requested = [e["params"]["url"] for e in events
                 if isinstance(e.get("params"), dict) and "url" in e["params"]
                 and str(e["params"].get("network_isolation_key", "")).startswith("file://")]
    return proc.stdout, console, requested


def test_control_page_is_caught(tmp_path):
    page = tmp_path / "control" / "index.html"
    page.parent.mkdir()
    page.write_text('<html><body><script>console.error("control-error")</script>'
                    '<img src="http://example.invalid/x.png"></body></html>')
    _, console, requested = _load(page, tmp_path)
    assert any("control-error" in line for line in console)
    assert "http://example.invalid/x.png" in requested


@pytest.mark.slow
def test_report_in_chromium(faces_dir, tmp_path):
    # a real small run of the runner, plus the fixture run with hostile names and a sweep
    runs = [make_real_run(faces_dir, tmp_path), make_runs(faces_dir, tmp_path)[0]]
    index = build_report(runs, tmp_path / "report", ["codeformer_celeba_test"])
    dom, console, requested = _load(index, tmp_path)
    assert console == []
    assert requested == []
    elements = _Elements(dom).elements
    tags = [tag for tag, _ in elements]
    assert tags.count("table") >= 6              # spec, 2 measured, 2 grids, provenance
    assert tags.count("img") >= 10
    # the hostile method label and file stem stayed text: no script, no handler attribute
    assert "script" not in tags
    assert not any(name.startswith("on") for _, attrs in elements for name in attrs)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom and NASTY_LABEL not in dom

    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / "report_browser.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1400,2400", f"--screenshot={shot}", index.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.stat().st_size > 50_000          # a rendered page, not a blank canvas
    print(f"screenshot: {shot}")
