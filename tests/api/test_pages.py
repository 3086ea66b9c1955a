"""The status pages over HTTP against a live `sitewatch api` on MariaDB (no browser: the
browser tests are tests/pages/): no token, HTML with its security headers, bad ids a 404
page, the live part answered 304 while nothing changed, figures equal to the API's."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from sitewatch.api import cursor, pages

from .live import LiveApi, event_row, same_as_report, seed, site_row

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
#: today's UTC midnight: incidents are placed inside one day, whatever the time of the run
DAY0 = NOW.replace(hour=0, minute=0, second=0)


def ago(**kw: float) -> datetime:
    return NOW - timedelta(**kw)


def wire(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def transition(
    event_id: str, site_id: int, seq: int, reason: str, at: datetime, **kw: Any
) -> dict[str, Any]:
    return {
        "transition_id": f"{event_id}:{seq}",
        "event_id": event_id,
        "site_id": site_id,
        "seq": seq,
        "reason": reason,
        "state_before": kw.pop("before"),
        "state_after": kw.pop("after"),
        "severity_before": kw.pop("sb"),
        "severity_after": kw.pop("sa"),
        "source": kw.pop("source", "local"),
        "at": at,
        "metadata": kw.pop("metadata", {}),
        "check_type": "http",
        "started_at": kw.pop("started"),
        "kafka_topic": "t",
        "kafka_partition": 0,
        "kafka_offset": seq,
    }


@pytest.fixture(scope="module")
async def seeded(api: LiveApi) -> LiveApi:
    started = DAY0 - timedelta(days=2) + timedelta(hours=10)
    confirmed, cleared = started + timedelta(seconds=65), started + timedelta(hours=1)
    # one at a time: the rows differ in their columns
    for site in [
        site_row(
            9001,
            created_at=ago(days=200),
            maintenance=[
                {
                    "start": wire(DAY0 - timedelta(days=5, hours=-8)),
                    "end": wire(DAY0 - timedelta(days=5, hours=-10)),
                }
            ],
        ),
        site_row(9002, created_at=ago(days=200)),
        site_row(9003, created_at=ago(days=3)),  # known for 3 days only
        site_row(9004, created_at=ago(days=200), active=False),  # paused: not listed
    ]:
        await seed(api.db_url, sites=[site])
    await seed(
        api.db_url,
        events=[
            event_row(
                "ev9001", 9001, wire(started), wire(cleared), resolution_reason="verifier_cleared"
            ),
            event_row(
                "fa9001",
                9001,
                wire(DAY0 - timedelta(days=3, hours=-12)),
                wire(DAY0 - timedelta(days=3, hours=-12, minutes=-1)),
                severity=3,
                resolution_reason="false_alarm",
            ),
            event_row("open9002", 9002, wire(ago(minutes=20)), state="down", severity=4),
        ],
        transitions=[
            transition(
                "ev9001",
                9001,
                1,
                "opened",
                started,
                before="up",
                after="seems_down",
                sb=0,
                sa=3,
                started=started,
                metadata={"error": "connect"},
            ),
            transition(
                "ev9001",
                9001,
                2,
                "verifier_confirmed",
                confirmed,
                before="seems_down",
                after="down",
                sb=3,
                sa=4,
                started=started,
                source="verifier:us",
                metadata={
                    "answers": {"eu": False, "us": False},
                    "asked": 2,
                    "quorum": 2,
                    "confirmations": 2,
                },
            ),
            transition(
                "ev9001",
                9001,
                3,
                "verifier_cleared",
                cleared,
                before="down",
                after="resolved",
                sb=4,
                sa=None,
                started=started,
            ),
        ],
    )
    # the projection, as the sink would have left it
    api.sql(
        "UPDATE jetpack_monitor_sites SET current_state='down', current_severity=4, "
        "site_status=2, active_event_id='open9002' WHERE site_id=9002"
    )
    return api


async def get(api: LiveApi, path: str, **kw: Any) -> tuple[int, str, Any]:
    status, body, resp = await api.request("GET", path, **kw)
    return status, body or "", resp


async def test_pages_need_no_token_and_are_html_with_a_content_security_policy(
    seeded: LiveApi,
) -> None:
    for path in ("/", "/sites/9001", "/events/ev9001", "/status/live"):
        status, body, resp = await get(seeded, path)
        assert status == 200, (path, body[:500])
        assert resp.content_type == "text/html"
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert "<script>" not in body and " style=" not in body  # nothing inline


async def test_status_page_lists_active_sites_worst_first_with_90_bars_each(
    seeded: LiveApi,
) -> None:
    _, body, _ = await get(seeded, "/")
    listed = re.findall(r'<tr data-site-id="(\d+)" data-state="(\w+)">', body)
    ours = [(int(s), state) for s, state in listed if s.startswith("900")]
    assert ours == [(9002, "down"), (9001, "up"), (9003, "up")]  # 9004 is paused
    row = body.split('<tr data-site-id="9001"', 1)[1].split("</tr>", 1)[0]
    assert row.count('class="day ') == 90
    assert row.count('class="day partial"') + row.count('class="day down"') == 1
    assert row.count('class="day maintenance"') == 0  # two hours of a day: not a whole day
    newer = body.split('<tr data-site-id="9003"', 1)[1].split("</tr>", 1)[0]
    # known for the last 3 days: today, the 2 before, and part of the day before those
    assert newer.count('class="day no-data"') == 86
    # the open incident is listed first, with its timeline
    assert 'data-event-id="open9002"' in body and 'href="/events/open9002"' in body


async def test_status_pages_through_every_active_site(seeded: LiveApi) -> None:
    await seed(
        seeded.db_url,
        sites=[site_row(9100 + i, created_at=ago(days=1)) for i in range(pages.SITES_PER_PAGE)],
    )
    seen: list[int] = []
    path = "/"
    for _ in range(10):
        _, body, _ = await get(seeded, path)
        seen += [int(s) for s in re.findall(r'<tr data-site-id="(\d+)" data-state', body)]
        more = re.search(r'href="(/\?page=[^"]+)" rel="next"', body)
        if more is None:
            break
        path = more.group(1).replace("&amp;", "&")
    active = seeded.sql("SELECT site_id FROM jetpack_monitor_sites WHERE active")
    assert sorted(seen) == sorted(r["site_id"] for r in active)
    assert len(seen) == len(set(seen)) > pages.SITES_PER_PAGE


@pytest.mark.parametrize(
    "path",
    [
        "/sites/abc",
        "/sites/0",
        "/sites/-1",
        "/sites/01",
        "/sites/99999999999999999999999",
        "/sites/1%00",
        "/sites/424242424",
        "/events/no-such-event",
        "/events/" + "x" * 65,
        "/events/%00",
        "/nothing-here",
        "/static/nothing.css",
    ],
)
async def test_bad_or_unknown_ids_are_a_404_page_never_a_500(seeded: LiveApi, path: str) -> None:
    status, body, resp = await get(seeded, path)
    assert status == 404, body[:300]
    assert resp.content_type == "text/html"
    assert "Back to the status page" in body


async def test_a_bad_page_cursor_is_a_400_page(seeded: LiveApi) -> None:
    status_cursor = quote(cursor.encode(cursor.List.STATUS, 4, 9002))
    events_cursor = quote(cursor.encode(cursor.List.EVENTS, 1_764_000_000_000, "x"))
    for path in (
        "/?page=garbage",
        "/status/live?page=garbage",
        "/sites/9001?cursor=garbage",
        f"/?page={events_cursor}",  # another list's cursor
        f"/sites/9001?cursor={status_cursor}",
        "/?page=" + "x" * 5000,
    ):
        status, body, resp = await get(seeded, path)
        assert status == 400 and resp.content_type == "text/html", (path, body[:300])
    status, _, resp = await seeded.request("POST", "/")
    assert status == 405 and resp.headers["Allow"] == "GET, HEAD"
    # the JSON API keeps its problem documents
    status, _, resp = await seeded.request("GET", "/api/v1/nothing")
    assert status == 404 and resp.content_type == "application/problem+json"


async def test_live_part_is_304_while_nothing_changed_and_200_after_a_change(
    seeded: LiveApi,
) -> None:
    status, _, resp = await get(seeded, "/status/live")
    etag = resp.headers["ETag"]
    assert status == 200 and etag.startswith('W/"')
    status, _, resp = await get(seeded, "/status/live", headers={"If-None-Match": etag})
    if status == 200:  # the minute turned between the two requests (it is in the version)
        etag = resp.headers["ETag"]
        status, _, resp = await get(seeded, "/status/live", headers={"If-None-Match": etag})
    assert status == 304
    seeded.sql(
        "UPDATE jetpack_monitor_sites SET current_state='seems_down', current_severity=3 "
        "WHERE site_id=9003"
    )
    try:
        status, body, resp = await get(seeded, "/status/live", headers={"If-None-Match": etag})
        assert status == 200 and resp.headers["ETag"] != etag
        assert '<tr data-site-id="9003" data-state="seems_down">' in body
    finally:
        seeded.sql(
            "UPDATE jetpack_monitor_sites SET current_state='up', current_severity=0 "
            "WHERE site_id=9003"
        )


def figures(body: str) -> dict[str, dict[str, Any]]:
    """Each window row of the site page: its from/to and the exact values it shows."""
    out = {}
    for m in re.finditer(
        r'<tr data-window="([^"]+)" data-from="([^"]+)" data-to="([^"]+)">(.*?)</tr>', body, re.S
    ):
        values = dict(re.findall(r'<data class="(\w+)" value="([^"]*)">', m.group(4)))
        out[m.group(1)] = {"from": m.group(2), "to": m.group(3), **values}
    return out


async def test_site_page_figures_equal_the_api_report_for_the_same_windows(
    seeded: LiveApi,
) -> None:
    _, body, _ = await get(seeded, "/sites/9001")
    shown = figures(body)
    assert list(shown) == ["24 h", "7 d", "30 d", "90 d"]
    for label, row in shown.items():
        status, report, _ = await seeded.request(
            "GET", f"/api/v1/sites/9001/uptime?from={row['from']}&to={row['to']}", who="reader"
        )
        assert status == 200, report
        same_as_report(row, report)
        if label != "24 h":
            assert report["down_s"] == 3600 and report["maintenance_s"] == 7200


async def test_timeline_shows_each_transition_with_votes_and_durations(seeded: LiveApi) -> None:
    _, body, _ = await get(seeded, "/events/ev9001")
    reasons = re.findall(r'<li class="step" data-reason="(\w+)"', body)
    assert reasons == ["opened", "verifier_confirmed", "verifier_cleared"]
    votes = re.findall(r'data-verifier="(\w+)" data-vote="(\w+)"', body)
    assert votes == [("eu", "down"), ("us", "down")]
    gaps = re.findall(r'<data class="since-previous" value="([^"]+)">([^<]+)</data>', body)
    assert [float(v) for v, _ in gaps] == [65.0, 3600.0 - 65.0]
    assert [text.replace("\u00a0", " ") for _, text in gaps] == ["1 min 05 s", "58 min 55 s"]
    assert "2 of 2 asked confirmed; quorum 2." in body


async def test_a_site_in_maintenance_now_shows_and_counts_as_in_maintenance(
    seeded: LiveApi,
) -> None:
    window = {"start": wire(ago(hours=1)), "end": wire(ago(hours=-1))}
    await seed(seeded.db_url, sites=[site_row(9201, created_at=ago(days=9), maintenance=[window])])
    _, page, _ = await get(seeded, "/sites/9201")
    assert '<dd data-state="maintenance">' in page
    _, body, _ = await get(seeded, "/")  # the site may be on a later page; the count is not
    summary = body.split("<p data-summary>", 1)[1].split("</p>", 1)[0]
    up = int(re.search(r"(\d+) of \d+ sites up", summary).group(1))  # type: ignore[union-attr]
    states = seeded.sql(
        "SELECT current_state, COUNT(*) AS n FROM jetpack_monitor_sites WHERE active"
        " GROUP BY current_state"
    )
    assert "1 maintenance" in summary, summary
    assert up == next(r["n"] for r in states if r["current_state"] == "up") - 1
