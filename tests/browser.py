"""Debian's Chromium driven by Playwright (never a downloaded browser), shared by the browser
tests and bench/screenshots.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
#: no sandbox (root), no GPU, and none of the background traffic a closed network refuses
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def chromium() -> Iterator:
    """A launched headless Chromium; skips the test when Chromium is not installed."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_app(page, url: str, tab: str | None = None, timeout: float = 60_000) -> None:
    """Loads the DeepColor app in ``page`` and, when ``tab`` is given, shows that tab."""
    page.goto(url, timeout=timeout)
    page.wait_for_selector("#compare-input", timeout=timeout)
    if tab:
        page.get_by_role("tab", name=tab).click()
        page.get_by_role("tab", name=tab, selected=True).wait_for(timeout=timeout)
