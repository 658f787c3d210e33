"""The HTML report in a real browser: headless Chromium opens it from disk; the verdict and the
findings table read right, and no script from the trace ran. A screenshot is kept as an artifact
(in $BLKREPLAY_ARTIFACTS when set, else in the test's tmp dir)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analyzer.report import build_report, render
from tests.analyzer.report.fixtures import HOSTILE_DEVICE, failing_trace

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "chromium not installed (Debian package `chromium`; .ci/run installs it)"
    if os.environ.get("BLKREPLAY_REQUIRE_BROWSER") == "1":  # .ci/run: never skip silently
        pytest.fail(f"{reason}, but BLKREPLAY_REQUIRE_BROWSER=1")
    pytest.skip(reason)


def _run(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


class _Dom(HTMLParser):
    """Text per element id, body attributes, the title and every tag of a serialized DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str | None] = []
        self.by_id: dict[str, list[str]] = {}
        self.body_attrs: dict[str, str | None] = {}
        self.title = ""
        self.tags: list[str] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "body":
            self.body_attrs = attrs
        self._in_title = tag == "title"
        if tag not in ("meta", "br", "input", "link", "hr", "img", "col"):
            self.stack.append(attrs.get("id"))
            if attrs.get("id"):
                self.by_id.setdefault(attrs["id"], [])

    def handle_endtag(self, tag):
        self._in_title = False
        if self.stack and tag not in ("meta", "br", "input", "link", "hr", "img", "col"):
            self.stack.pop()

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        for ident in self.stack:
            if ident:
                self.by_id[ident].append(data)

    def text(self, ident: str) -> str:
        return re.sub(r"\s+", " ", "".join(self.by_id.get(ident, []))).strip()


def test_report_in_headless_chromium(tmp_path):
    browser = _chromium()
    _, _, path = failing_trace(tmp_path, device=HOSTILE_DEVICE)
    rep = build_report([path], command=f"blkreplay report {path} -o report.html")  # real check
    report = tmp_path / "report.html"
    report.write_bytes(render(rep, "html"))
    url = report.resolve().as_uri()

    dom_text = _run(browser, tmp_path / "profile-dom", "--virtual-time-budget=2000", "--dump-dom", url).stdout
    dom = _Dom()
    dom.feed(dom_text)

    assert dom.text("verdict") == "FAIL"
    table = dom.text("findings-table")
    assert "stop-follows-error" in table
    assert HOSTILE_DEVICE in table  # the hostile name is shown as text ...
    assert "data-pwned" not in dom.body_attrs  # ... and none of its scripts ran
    assert dom.title == "blkreplay audit report: FAIL"  # not 'pwned'
    assert "script" not in dom.tags and "img" not in dom.tags

    artifacts = Path(os.environ.get("BLKREPLAY_ARTIFACTS") or tmp_path / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "report-failing.png"
    _run(browser, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2000",
         "--hide-scrollbars", url)
    assert shot.stat().st_size > 10_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("vms", [50, 2_000])
def test_fleet_report_screenshots(tmp_path, vms):
    """The fleet report of 50 and 2,000 VMs as a reader first sees it, kept as PNG artefacts
    (in $BLKREPLAY_ARTIFACTS, else tests/artifacts/, ignored by git, and the tmp dir)."""
    from tests.analyzer.report.fixtures import fleet_trace

    browser = _chromium()
    path = fleet_trace(tmp_path, vms, max(vms // 50, 2))
    rep = build_report([path], max_findings=20, command=f"blkreplay report {path.name} -o fleet.html")
    report = tmp_path / "fleet.html"
    report.write_bytes(render(rep, "html"))
    url = report.resolve().as_uri()
    dom = _Dom()
    dom.feed(_run(browser, tmp_path / "profile-dom", "--dump-dom", url).stdout)
    assert dom.text("verdict") == "FAIL"
    assert dom.text("window").startswith("VMs paused by I/O errors during 2025-12-02T10:00:")
    shots = [tmp_path / f"fleet-{vms}.png"]
    artifacts = Path(os.environ.get("BLKREPLAY_ARTIFACTS")
                     or Path(__file__).resolve().parents[2] / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    shots.append(artifacts / f"report-fleet-{vms}.png")
    _run(browser, tmp_path / "profile-shot", f"--screenshot={shots[0]}", "--window-size=1280,2400",
         "--hide-scrollbars", url)
    assert shots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shots[0].stat().st_size > 20_000
    shots[1].write_bytes(shots[0].read_bytes())
