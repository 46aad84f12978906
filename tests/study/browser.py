"""Open an HTML file in headless Chromium and read back what its load script found.

The study report ends with a script that, on the window ``load`` event, writes the
number of ``<img>`` elements and of those that decoded into ``data-images`` and
``data-images-loaded`` on ``<body>``. ``--dump-dom`` prints the DOM after the scripts
ran, so a test can tell that every embedded image really renders.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM_TIMEOUT_S = 60


def chromium_or_skip() -> str:
    """The chromium executable; skips the test when it is not installed."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium not found (the Debian package; `make test` installs it)")
    return chromium


class _BodyAttributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.body: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" and self.body is None:
            self.body = dict(attrs)


#: The page width the report must fit without horizontal scrolling.
PAGE_WIDTH = 1300


def _run(command: list[str]) -> str:
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its helpers share the group: a timeout ends them all
    )
    try:
        out, errors = process.communicate(timeout=CHROMIUM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"chromium did not finish in {CHROMIUM_TIMEOUT_S} s") from None
    if process.returncode != 0:
        raise AssertionError(f"chromium failed ({process.returncode}): {errors[-2000:]}")
    return out


def _base_command(chromium: str, tmp_path: str | Path, width: int, height: int) -> list[str]:
    return [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        f"--user-data-dir={Path(tmp_path) / 'chromium-profile'}",
        "--virtual-time-budget=5000",
    ]


def screenshot(
    html_path: str | Path,
    png_path: str | Path,
    tmp_path: str | Path,
    width: int = PAGE_WIDTH,
    height: int = 4000,
) -> Path:
    """A PNG of the first ``height`` pixels of ``html_path`` at ``width`` px wide."""
    chromium = chromium_or_skip()
    command = _base_command(chromium, tmp_path, width, height)
    command += [f"--screenshot={Path(png_path).resolve()}", Path(html_path).resolve().as_uri()]
    _run(command)
    if not Path(png_path).is_file():
        raise AssertionError(f"chromium wrote no screenshot at {png_path}")
    return Path(png_path)


def render_in_chromium(
    html_path: str | Path, tmp_path: str | Path, width: int = PAGE_WIDTH
) -> dict:
    """Load ``html_path`` in headless Chromium (no network, fresh profile) at ``width``
    px wide.

    Args:
        html_path: the HTML file.
        tmp_path: a scratch folder for the browser profile.
        width: the window width in CSS pixels.

    Returns:
        ``{"images": int, "loaded": int, "wide_tables": int, "dom": str}``: the counts
        the page's load script wrote on ``<body>`` (-1 when missing: the script did not
        run; ``wide_tables``: tables reaching past the page's right edge) and the
        dumped DOM.
    """
    chromium = chromium_or_skip()
    command = _base_command(chromium, tmp_path, width, 900)
    command += ["--dump-dom", Path(html_path).resolve().as_uri()]
    dom = _run(command)
    if "<body" not in dom:
        raise AssertionError("chromium dumped no <body>")
    parser = _BodyAttributes()
    parser.feed(dom)
    body = parser.body or {}
    return {
        "images": int(body.get("data-images") or -1),
        "loaded": int(body.get("data-images-loaded") or -1),
        "wide_tables": int(body.get("data-wide-tables") or -1),
        "dom": dom,
    }
