"""The status page of `sitewatch dev` in a real browser: the demo's sites with their states
(the page updates itself as the demo's outage is confirmed), readable without JavaScript,
fitting a phone, with landmarks and table headers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.devrun import running_dev

from .browser import PHONE, chromium, hidden_in_scroll_regions, horizontal_overflow, screenshot

pytestmark = pytest.mark.integration

#: the demo fleet of `sitewatch dev` (app/dev/sites.py), each site's URL path is its name
DEMO = ("www", "blog", "docs", "shop", "api", "legacy", "flaky", "pay", "intranet")


@pytest.fixture(scope="module")
async def dev(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """`sitewatch dev` (bundled broker, SQLite); yields the status page URL it prints."""
    async with running_dev(tmp_path_factory.mktemp("dev"), 240) as demo:
        url = (await demo.line(r"^status +(http://\S+/) ")).group(1)
        # dev prints the URL as it starts the api: the page answers a moment later
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while True:
                try:
                    async with http.get(url) as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert demo.proc.returncode is None and time.monotonic() < deadline, demo.text()
                await asyncio.sleep(0.2)
        yield url


def row(name: str) -> str:
    """The status table's row of a demo site (its link ends with the site's name)."""
    return f'table.sites tr:has(a[href^="/sites/"]:text-matches("/{name}$"))'


async def test_status_page_lists_the_demo_sites_with_their_states(dev: str, tmp_path: Path) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(dev)
        assert await page.title() == "Status · sitewatch"
        # the sink fills the table as the demo starts; the page updates itself (no reload)
        await page.wait_for_function(
            "document.querySelectorAll('table.sites tbody tr').length >= 9", timeout=60_000
        )
        await page.evaluate("window.sameDocument = true")
        # the down site is confirmed by both verifiers; the TLS site is degraded
        await page.locator(f'{row("legacy")}[data-state="down"]').wait_for(timeout=120_000)
        await page.locator(f'{row("pay")}[data-state="degraded"]').wait_for(timeout=60_000)
        states = {}
        for name in DEMO:
            line = page.locator(row(name))
            assert await line.count() == 1, name
            states[name] = await line.get_attribute("data-state")
            # the state is a word, not only a colour; 90 bars with a text alternative
            # the state column's badge (a phone shows the same badge under the site instead)
            assert (await line.locator("td .state").inner_text()).split(" ")[0] in {
                "up",
                "down",
                "seems",
                "warning",
                "degraded",
                "maintenance",
            }
            assert await line.locator(".bars .day").count() == 90
            assert "Last 90 days" in (await line.locator(".bars").get_attribute("aria-label") or "")
        assert states["legacy"] == "down" and states["pay"] == "degraded"
        assert states["intranet"] == "maintenance"
        assert all(states[n] == "up" for n in ("www", "blog", "docs", "shop", "api")), states
        assert await page.evaluate("window.sameDocument") is True
        # the open incidents come first, each with a link to its timeline
        incidents = page.locator("table.incidents tbody tr")
        assert await incidents.count() >= 2
        text = await page.locator("table.incidents").inner_text()
        assert "legacy" in text and "pay" in text
        summary = await page.locator("[data-summary]").inner_text()
        assert summary.startswith("1 down") and "1 maintenance" in summary, summary
        await screenshot(page, "status-page", tmp_path)


async def test_status_page_reads_without_javascript_fits_a_phone_and_has_landmarks(
    dev: str, tmp_path: Path
) -> None:
    async with chromium(java_script_enabled=False) as browser:
        page = await browser.new_page()
        await page.goto(dev)
        await page.locator("table.sites tbody tr").first.wait_for()
        assert await page.locator(f"{row('www')} td .state").inner_text() != ""
        assert not await page.locator(".js-only").first.is_visible()  # no "updates itself"
    async with chromium(viewport=PHONE) as browser:
        page = await browser.new_page()
        await page.goto(dev)
        await page.locator(f'{row("legacy")}[data-state="down"]').wait_for(timeout=120_000)
        assert await horizontal_overflow(page) == 0
        assert await hidden_in_scroll_regions(page) == []
        # the state moves under the site's name
        assert await page.locator(f"{row('legacy')} th .state").inner_text() == "down"
        # a phone shows the last 30 days, and says so
        bars = page.locator(f"{row('www')} .bars .day")
        visible = await bars.evaluate_all("ds => ds.filter(d => d.offsetWidth > 0).length")
        assert visible == 30
        assert await page.locator(".narrow-only").first.is_visible()
        for landmark in ("banner", "navigation", "main", "contentinfo"):
            assert await page.get_by_role(landmark).count() >= 1, landmark
        for table in await page.locator("table").all():
            assert await table.locator("thead th[scope=col]").count() >= 3
            assert await table.locator("tbody th[scope=row]").count() >= 1
        await screenshot(page, "status-page-phone", tmp_path)
        # the down site's page and its open incident's timeline fit the phone too
        await page.locator(f"{row('legacy')} a").first.click()
        await page.locator("table.uptime").wait_for()
        assert await horizontal_overflow(page) == 0
        await page.locator('a[href^="/events/"]').first.click()
        await page.locator("ol.timeline").wait_for()
        assert await horizontal_overflow(page) == 0
        await screenshot(page, "incident-open-phone", tmp_path)
