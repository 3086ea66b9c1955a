"""The pages in a real browser against the real pipeline (probe, two verifiers, worker and
sink on Apache Kafka and MariaDB, tests/e2e/pipeline.py) and a live `sitewatch api`:
an outage shows on the open status page without a reload, the timeline of a confirmed
then recovered incident shows every step with the votes and the durations, and a site
page's uptime figures are the API's report."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest

from sitewatch.probes.fleet import Behaviour, SiteScript
from tests.api.live import LiveApi, live_api, same_as_report
from tests.conftest import MYSQL_SERVER_URL
from tests.e2e.pipeline import Pipeline, running_pipeline, scratch_database
from tests.kafka_util import RunningBroker

from .browser import PHONE, chromium, horizontal_overflow, screenshot

pytestmark = pytest.mark.integration

LIVE, RECOVERING, STEADY = 1, 2, 3
#: the issue's bound: on the open page within this long of the confirmation
SHOWN_WITHIN_S = 15.0


@dataclass
class Stack:
    pipe: Pipeline
    api: LiveApi


@pytest.fixture(scope="module")
async def stack(
    broker: RunningBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    base = tmp_path_factory.mktemp("pages")
    plan = [
        (LIVE, "live-outage", SiteScript(), None, {}),
        (RECOVERING, "recovering", SiteScript(), None, {}),
        (STEADY, "steady", SiteScript(), None, {}),
    ]
    with scratch_database("pages") as db:
        # the API first: making its keys blocks this process, where the fleet serves (and
        # would look down to the probes); its topics are its own, the pages only read
        async with (
            live_api(broker.bootstrap, base / "api", db=(db, f"{MYSQL_SERVER_URL}/{db}")) as api,
            running_pipeline(broker.bootstrap, db, base, plan) as pipe,
        ):
            yield Stack(pipe, api)


async def wait_reason(pipe: Pipeline, site_id: int, reason: str) -> dict[str, Any]:
    rows = await pipe.wait_sql(
        "SELECT * FROM jetmon_event_transitions WHERE site_id = %s AND reason = %s",
        site_id,
        reason,
        timeout_s=90,
        what=f"{reason} of site {site_id}",
    )
    return rows[0]


@pytest.fixture(scope="module")
async def recovered(stack: Stack) -> str:
    """A confirmed, then recovered, incident of its own site: its event id."""
    await stack.pipe.fleet.set("recovering", behaviour=Behaviour.DOWN)
    confirmed = await wait_reason(stack.pipe, RECOVERING, "verifier_confirmed")
    await stack.pipe.fleet.set("recovering", behaviour=Behaviour.UP)
    cleared = await wait_reason(stack.pipe, RECOVERING, "verifier_cleared")
    assert cleared["event_id"] == confirmed["event_id"]
    return str(confirmed["event_id"])


async def test_outage_appears_on_the_open_page_without_a_reload_within_15_s_of_confirmation(
    stack: Stack, tmp_path: Path
) -> None:
    assert await stack.pipe.events(LIVE) == []  # up so far
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(stack.api.url + "/")
        live_row = page.locator(f'table.sites tr[data-site-id="{LIVE}"]')
        assert await live_row.get_attribute("data-state") == "up"
        assert await page.locator(f'table.incidents tr[data-site-id="{LIVE}"]').count() == 0
        await page.evaluate("window.sameDocument = true")  # gone if the page reloads

        await stack.pipe.fleet.set("live-outage", behaviour=Behaviour.DOWN)
        confirmed = await wait_reason(stack.pipe, LIVE, "verifier_confirmed")
        stored = time.time()
        confirmed_at = confirmed["at"].replace(tzinfo=UTC).timestamp()
        await page.locator(f'table.sites tr[data-site-id="{LIVE}"][data-state="down"]').wait_for(
            timeout=SHOWN_WITHIN_S * 1000
        )
        shown_after = time.time() - confirmed_at
        assert shown_after <= SHOWN_WITHIN_S, (shown_after, stored - confirmed_at)
        assert await page.evaluate("window.sameDocument") is True
        incident = page.locator(f'table.incidents tr[data-event-id="{confirmed["event_id"]}"]')
        assert "down" in await incident.inner_text()
        assert await incident.locator('a[href^="/events/"]').count() == 1
        assert "1 down" in await page.locator("[data-summary]").inner_text()
        print(
            f"confirmed at {confirmed['at']}, stored {stored - confirmed_at:.1f} s later, "
            f"shown {shown_after:.1f} s after the confirmation"
        )
        await screenshot(page, "status-outage", tmp_path)
    await stack.pipe.fleet.set("live-outage", behaviour=Behaviour.UP)


async def test_timeline_of_confirmed_then_recovered_incident_shows_votes_and_durations(
    stack: Stack, recovered: str, tmp_path: Path
) -> None:
    rows = await stack.pipe.sql(
        "SELECT * FROM jetmon_event_transitions WHERE event_id = %s ORDER BY seq", recovered
    )
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{stack.api.url}/sites/{RECOVERING}")
        await page.locator(f'table.events a[href="/events/{recovered}"]').click()
        await page.locator("ol.timeline").wait_for()
        steps = page.locator("ol.timeline > li")
        reasons = [await s.get_attribute("data-reason") for s in await steps.all()]
        assert reasons == ["opened", "verifier_confirmed", "verifier_cleared"]
        assert reasons == [r["reason"] for r in rows]
        # state and severity before -> after, and the source, of each step
        texts = [await s.inner_text() for s in await steps.all()]
        assert "up → seems down" in texts[0] and "0 → 3" in texts[0]
        assert "seems down → down" in texts[1] and "3 → 4" in texts[1]
        assert "down → resolved" in texts[2] and "4 → —" in texts[2]
        for text, r in zip(texts, rows, strict=True):
            assert r["source"] in text
        # the verifiers' votes on the confirmation: both could not reach the site
        votes = steps.nth(1).locator("ul.votes li")
        assert {
            (await v.get_attribute("data-verifier"), await v.get_attribute("data-vote"))
            for v in await votes.all()
        } == {("eu", "down"), ("us", "down")}
        assert "2 of 2 asked confirmed" in texts[1]
        # the duration between steps, as recorded
        gaps = [
            float(await d.get_attribute("value") or "nan")
            for d in await page.locator("data.since-previous").all()
        ]
        recorded = [(b["at"] - a["at"]).total_seconds() for a, b in itertools.pairwise(rows)]
        assert gaps == pytest.approx(recorded, abs=0.001)
        assert all(g > 0 for g in gaps)
        assert "after the previous step" in texts[1] and "after the previous step" in texts[2]
        assert "Lasted" in await page.locator("dl.facts").inner_text()
        await screenshot(page, "incident-timeline", tmp_path)
        await page.set_viewport_size(PHONE)
        assert await horizontal_overflow(page) == 0


async def test_site_page_uptime_figures_equal_the_api_report(
    stack: Stack, recovered: str, tmp_path: Path
) -> None:
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{stack.api.url}/sites/{RECOVERING}")
        windows = await page.locator("table.uptime tbody tr").evaluate_all(
            """rows => rows.map(r => ({
                window: r.dataset.window, from: r.dataset.from, to: r.dataset.to,
                ...Object.fromEntries(
                    [...r.querySelectorAll('data')].map(d => [d.className, d.value]))
            }))"""
        )
        assert [w["window"] for w in windows] == ["24 h", "7 d", "30 d", "90 d"]
        for shown in windows:
            status, report, _ = await stack.api.request(
                "GET",
                f"/api/v1/sites/{RECOVERING}/uptime?from={shown['from']}&to={shown['to']}",
                who="reader",
            )
            assert status == 200, report
            same_as_report(shown, report)
            # the recovered outage is in every window, with its downtime
            assert [i["event_id"] for i in report["incidents"]] == [recovered]
            assert report["down_s"] > 0
        await screenshot(page, "site-page", tmp_path)
