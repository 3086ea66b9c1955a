"""Debian's Chromium driven by Playwright, for the page tests: never a downloaded browser.

Each launch gets a fresh profile (`--user-data-dir`) and the flags that keep Chromium off
the network (this machine refuses any connection but loopback). A missing
/usr/bin/chromium fails the test that needs it, loudly: `make services` installs it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import BrowserContext, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
#: the README's screenshots, rewritten when SITEWATCH_UPDATE_SCREENSHOTS=1
DOCS = Path(__file__).parents[2] / "docs" / "screenshots"


@asynccontextmanager
async def chromium(**context: Any) -> AsyncIterator[BrowserContext]:
    """A headless Chromium with a profile of its own, gone afterwards."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is required (Debian's chromium package; `make services`)")
    profile = tempfile.mkdtemp(prefix="sitewatch-chromium-")
    try:
        async with async_playwright() as pw:
            ctx = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=FLAGS,
                viewport=context.pop("viewport", DESKTOP),
                **context,
            )
            try:
                yield ctx
            finally:
                await ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


async def screenshot(page: Page, name: str, artifacts: Path, *, full_page: bool = True) -> Path:
    """Saves `name.png` with the test's artifacts (and for the README when asked)."""
    path = artifacts / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)  # makes the folder
    if os.environ.get("SITEWATCH_UPDATE_SCREENSHOTS") == "1":
        await asyncio.to_thread(_copy, path, DOCS / path.name)
    return path


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


async def horizontal_overflow(page: Page) -> int:
    """How many pixels the page is wider than its window (0: nothing to scroll sideways)."""
    width: int = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    return width


async def hidden_in_scroll_regions(page: Page) -> list[str]:
    """The scrolling regions (wide tables) whose content is wider than they are: on a phone
    the status page's tables must fit whole, not behind a sideways scroll."""
    wider: list[str] = await page.evaluate(
        """[...document.querySelectorAll('.scroll')]
            .filter(s => s.scrollWidth > s.clientWidth)
            .map(s => s.getAttribute('aria-labelledby'))"""
    )
    return wider
