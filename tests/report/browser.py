"""Open a page in Debian's headless chromium: the DOM after loading and every console message.

`--dump-dom` prints the DOM once the page has loaded; with `--enable-logging=stderr --v=0` chromium writes each
console message (script errors, refused requests under the page's Content-Security-Policy) to stderr as
`...:CONSOLE:<line>] "<message>", source: <url> (<line>)`. A fresh profile per run, no sandbox (tests run as root),
no GPU and none of the browser's own background traffic.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CONSOLE = re.compile(r":CONSOLE(?:\(\d+\)|:\d+)\] (.*)$")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--disable-default-apps", "--enable-logging=stderr", "--v=0")


@dataclass(frozen=True)
class PageLoad:
    dom: str
    console: list[str]
    returncode: int


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, "chromium is missing: run deploy/install-test-deps.sh (Debian package chromium)"
    return path


def open_page(page: Path, timeout_s: float = 60.0) -> PageLoad:
    with tempfile.TemporaryDirectory(prefix="sinkwatch-chromium-") as profile:
        result = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                                 page.resolve().as_uri()], capture_output=True, text=True, timeout=timeout_s,
                                check=False)
    console = [m.group(1) for line in result.stderr.splitlines() if (m := CONSOLE.search(line))]
    return PageLoad(result.stdout, console, result.returncode)


@dataclass(frozen=True)
class UrlLoad:
    dom: str
    console: list[str]
    returncode: int
    screenshot: Path | None


def open_url(url: str, *, virtual_time_ms: int = 0, screenshot: Path | None = None, window: str = "1400,2200",
             timeout_s: float = 90.0) -> UrlLoad:
    """Load `url` (a served page, e.g. the central service's status page): the DOM after `virtual_time_ms` of the
    page's own timers (chromium's virtual time: intervals fire, network waits are real) and its console messages;
    with `screenshot`, a second load writes a PNG of the page there."""
    budget = [f"--virtual-time-budget={virtual_time_ms}"] if virtual_time_ms else []
    with tempfile.TemporaryDirectory(prefix="sinkwatch-chromium-") as profile:
        result = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *budget, "--dump-dom", url],
                                capture_output=True, text=True, timeout=timeout_s, check=False)
    console = [m.group(1) for line in result.stderr.splitlines() if (m := CONSOLE.search(line))]
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="sinkwatch-chromium-") as profile:
            shot = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", "--hide-scrollbars",
                                   f"--window-size={window}", f"--screenshot={screenshot}", url],
                                  capture_output=True, text=True, timeout=timeout_s, check=False)
        console += [m.group(1) for line in shot.stderr.splitlines() if (m := CONSOLE.search(line))]
    return UrlLoad(result.stdout, console, result.returncode, screenshot)
