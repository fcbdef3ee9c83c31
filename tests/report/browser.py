"""Real headless Chromium from the distribution (/usr/bin/chromium) driven by Playwright's client.

Nothing downloads a browser build: Playwright is pointed at the system binary. Every request a
page makes is recorded and any non-file URL is aborted, so a test can assert the report needs no
network; console errors and uncaught exceptions are recorded too.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "Opened", "launch", "open_page"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@dataclass
class Opened:
    page: Any
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


def launch() -> Iterator[Any]:
    """Yield a Chromium browser, or skip with the reason it cannot start."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found (install Debian's chromium: apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright not installed (pip install -e '.[dev]')")
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: Any, path: Path, *, wait_ready: bool = True) -> Opened:
    """Open ``path`` in a fresh context; records console errors, requests, dialogs."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, java_script_enabled=True)
    page = ctx.new_page()
    o = Opened(page)

    def route(r: Any) -> None:
        url = r.request.url
        if url.startswith(("file://", "data:", "about:")):
            r.continue_()
        else:
            o.blocked.append(url)
            r.abort()

    ctx.route("**/*", route)
    page.on("request", lambda req: o.requests.append(req.url))
    page.on("console", lambda m: o.console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: o.console_errors.append(f"uncaught: {e}"))

    def on_dialog(d: Any) -> None:
        o.dialogs.append(d.message)
        d.dismiss()

    page.on("dialog", on_dialog)
    page.goto(path.resolve().as_uri())
    if wait_ready:
        page.wait_for_selector("body[data-ready='1']", state="attached", timeout=15000)
    return o
