"""A real headless Chromium (the system's `chromium`), driven by Playwright over CDP: no browser download.

Tests that need it skip when chromium is absent, unless VIBE_JOBS_REQUIRE_BROWSER=1 (set by .ci/run) makes
that a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.e2e.conftest import free_port, stop, wait_for_port

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> str:
    found = next((p for name in CANDIDATES if (p := shutil.which(name))), None)
    if found is None:
        why = "no chromium on PATH (apt-get install -y chromium)"
        if os.environ.get("VIBE_JOBS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"VIBE_JOBS_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("playwright is a dev dependency: pip install -e '.[dev]'")
    return found


@contextmanager
def chromium() -> Iterator[int]:
    """A fresh headless chromium (its own profile) listening for CDP; yields its port."""
    binary, port = chromium_path(), free_port()
    # chromium's helper processes may still write to the profile while they exit: cleanup errors are ignored
    with tempfile.TemporaryDirectory(prefix="vj-chromium-", ignore_cleanup_errors=True) as profile:
        cmd = [
            binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
            f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check", "about:blank",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_for_port(port, proc)
            yield port
        finally:
            stop(proc)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # its renderers and helpers too


@asynccontextmanager
async def browser_page(width: int = 1280, height: int = 800) -> AsyncIterator[Any]:
    """A page of a fresh headless chromium, closed with it."""
    from playwright.async_api import async_playwright

    with chromium() as port:
        async with async_playwright() as pw:
            browser = await pw.chromium.connect_over_cdp(f"http://127.0.0.1:{port}")
            context = browser.contexts[0] if browser.contexts else await browser.new_context()
            page = await context.new_page()
            await page.set_viewport_size({"width": width, "height": height})
            try:
                yield page
            finally:
                await browser.close()


async def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path), full_page=True)
    return path


async def until_true(page: Any, expression: str, seconds: float = 30.0) -> None:
    """Until the JavaScript `expression` is true in `page`, read through the DevTools protocol, which the pages'
    Content-Security-Policy does not govern (Playwright's `wait_for_function` compiles its predicate in the page,
    which the policy refuses: no 'unsafe-eval')."""
    with anyio.fail_after(seconds):
        while not await page.evaluate(expression):  # noqa: ASYNC110 - no event of ours tells of a page's state
            await anyio.sleep(0.05)  # polled under a deadline, as wait_for_function polled
