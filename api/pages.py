"""The public pages (no token): `/` the status page, `/sites/{site_id}`, `/events/{event_id}`
(the incident timeline), and `/status/live`, the status page's live part, which the page's
script polls (conditional requests: a 304 while nothing changed).

Server-rendered from `templates/`, readable without JavaScript. Every figure comes from
`availability.report` (through `daily`), the same function as the JSON API's. A bad or
unknown id is a 404 page; errors on these paths are HTML, not problem+json.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web
from markupsafe import Markup
from msgspec import UNSET

from sitewatch import clock
from sitewatch.streams.enums import SiteState

from . import cursor, daily, models, page_queries, queries
from .availability import Interval, Report, Span, report
from .html import page, render, static_files, weak_etag
from .problems import TITLES, Kind, Problem
from .routes_sites import maintenance_ms
from .routing import connection, context
from .timefmt import parse, to_ms

#: sites per status page, events per site page
SITES_PER_PAGE: Final = 50
EVENTS_PER_PAGE: Final = 20
#: open incidents listed on the status page (the count says how many there are)
OPEN_LISTED: Final = 50
#: how often the status page's script asks for its live part
REFRESH_MS: Final = 3000
#: paths the API's JSON error format keeps; every other path is a page
NOT_PAGES: Final = ("/api/", "/metrics")
_DIGITS: Final = re.compile(r"[1-9][0-9]{0,18}")


# -- what the templates show ----------------------------------------------------------------


@dataclass(slots=True)
class SiteLine:
    site_id: int
    url: str
    state: str
    severity: int
    since_ms: int | None
    days: list[daily.Day]

    @property
    def measured_ms(self) -> int:
        return sum(d.measured_ms for d in self.days)

    @property
    def down_ms(self) -> int:
        return sum(d.down_ms for d in self.days)

    @property
    def uptime_ratio(self) -> float | None:
        # the days are adjacent windows: their figures add up to those of the 90 days
        measured = self.measured_ms
        return None if measured <= 0 else 1.0 - self.down_ms / measured


@dataclass(slots=True)
class Step:
    """One transition on the timeline, with the time since the previous step."""

    t: models.Transition
    at_ms: int
    since_previous_ms: int | None
    since_start_ms: int
    votes: list[tuple[str, bool]] = field(default_factory=list)
    verification: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


VERIFICATION_KEYS: Final = ("asked", "quorum", "confirmations", "request_id")


def in_maintenance(maintenance: Sequence[Interval], now_ms: int) -> bool:
    return any(a <= now_ms < b for a, b in maintenance)


def display_state(row: Any, maintenance: Sequence[Interval], now_ms: int) -> str:
    """The projection's state; an up site inside a maintenance window says so."""
    state = str(row.current_state)
    if state == SiteState.UP and in_maintenance(maintenance, now_ms):
        return SiteState.MAINTENANCE.value
    return state


def counts_shown(counts: dict[str, int], up_windows: Sequence[Any], now_ms: int) -> dict[str, int]:
    """Active sites by the state the pages show: up sites inside a maintenance window now
    count as in maintenance, as their rows say."""
    inside = sum(in_maintenance(maintenance_ms(w), now_ms) for w in up_windows)
    if not inside:
        return counts
    up, maint = SiteState.UP.value, SiteState.MAINTENANCE.value
    return {**counts, up: counts.get(up, 0) - inside, maint: counts.get(maint, 0) + inside}


def site_lines(
    rows: Sequence[Any],
    spans: dict[int, list[Span]],
    firsts: dict[int, int],
    now_ms: int,
) -> list[SiteLine]:
    windows = daily.day_windows(now_ms)
    clear: dict[int, Report] = {}  # shared by every site of the page
    out = []
    for row in rows:
        maint = maintenance_ms(row.maintenance)
        created = None if row.created_at is None else to_ms(row.created_at)
        days = daily.daily(
            spans.get(row.site_id, ()),
            maint,
            windows,
            site_created_ms=created,
            first_event_ms=firsts.get(row.site_id),
            clear_days=clear,
        )
        out.append(
            SiteLine(
                site_id=row.site_id,
                url=row.url,
                state=display_state(row, maint, now_ms),
                severity=int(row.current_severity),
                since_ms=None if row.last_status_change is None else to_ms(row.last_status_change),
                days=days,
            )
        )
    return out


def steps_of(detail: models.EventDetail) -> list[Step]:
    started = parse(detail.started_at)
    out: list[Step] = []
    previous: int | None = None
    for t in detail.transitions:
        at = parse(t.at)
        meta = dict(t.metadata or {})
        answers = meta.pop("answers", None)
        votes = (
            [(str(name), bool(ok)) for name, ok in sorted(answers.items())]
            if isinstance(answers, dict)
            else []
        )
        verification: dict[str, Any] = {k: meta.pop(k) for k in VERIFICATION_KEYS if k in meta}
        out.append(
            Step(
                t=t,
                at_ms=at,
                since_previous_ms=None if previous is None else at - previous,
                since_start_ms=at - started,
                votes=votes,
                verification=verification,
                details=meta,
            )
        )
        previous = at
    return out


# -- handlers -------------------------------------------------------------------------------


@dataclass(slots=True)
class StatusData:
    """What the status page's live part is made of, as read, and a version of it."""

    now_ms: int
    after: tuple[int, int] | None
    page_param: str
    rows: Sequence[Any]
    more: bool
    spans: dict[int, list[Span]]
    firsts: dict[int, int]
    counts: dict[str, int]
    incidents: Sequence[Any]
    incidents_total: int

    @property
    def version(self) -> str:
        """The ETag of the live part: the data it shows, and the minute. Durations and
        today's bar move with the clock; re-rendering them once a minute is enough, and
        a poll while nothing changed costs the reads, not the rendering."""
        return weak_etag(
            repr(
                (
                    self.now_ms // 60_000,
                    self.page_param,
                    self.rows,
                    self.more,
                    self.spans,
                    self.firsts,
                    self.counts,
                    self.incidents,
                    self.incidents_total,
                )
            )
        )


async def status_data(request: web.Request) -> StatusData:
    raw = request.query.get("page") or ""
    after = None
    if raw:
        severity, site_id = cursor.decode(cursor.List.STATUS, raw, int, int)
        after = (severity, site_id)
    now = clock.now_ms()
    since = daily.day_windows(now)[0][0]
    async with connection(request) as conn:
        rows, more = await page_queries.status_sites(conn, SITES_PER_PAGE, after)
        ids = [r.site_id for r in rows]
        spans = await page_queries.window_spans(conn, ids, since, now)
        # a site's first event matters only when it may predate the row (unknown time)
        need_first = [
            r.site_id for r in rows if r.created_at is None or to_ms(r.created_at) > since
        ]
        firsts = await page_queries.first_events(conn, need_first)
        counts = await page_queries.state_counts(conn)
        up_windows = await page_queries.up_maintenance(conn)
        incidents, incidents_total = await page_queries.open_incidents(conn, OPEN_LISTED)
    counts = counts_shown(counts, up_windows, now)
    return StatusData(
        now, after, raw, rows, more, spans, firsts, counts, incidents, incidents_total
    )


def status_values(data: StatusData) -> dict[str, Any]:
    lines = site_lines(data.rows, data.spans, data.firsts, data.now_ms)
    next_page = (
        cursor.encode(cursor.List.STATUS, lines[-1].severity, lines[-1].site_id)
        if data.more and lines
        else None
    )
    return {
        "now_ms": data.now_ms,
        "sites": lines,
        "counts": data.counts,
        "total": sum(data.counts.values()),
        "incidents": data.incidents,
        "incidents_total": data.incidents_total,
        "next_page": next_page,
        "first_page": data.after is None,
        "page_param": data.page_param,
        "days": daily.DAYS,
    }


async def status_page(request: web.Request) -> web.Response:
    data = await status_data(request)
    values = status_values(data)
    live = render("_status_live.html", **values)
    return page(
        render(
            "status.html",
            live=Markup(live),  # rendered, and so escaped, by our own template
            etag=data.version,
            refresh_ms=REFRESH_MS,
            **values,
        )
    )


async def status_live(request: web.Request) -> web.Response:
    """The live part of the status page; 304 when the client has it already."""
    data = await status_data(request)
    etag = data.version
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
    return page(render("_status_live.html", **status_values(data)), headers={"ETag": etag})


async def site_page(request: web.Request) -> web.Response:
    site_id = _site_id(request.match_info["site_id"])
    raw_cursor = request.query.get("cursor")
    q = models.SiteEventsQuery(limit=EVENTS_PER_PAGE, cursor=raw_cursor or UNSET)
    now = clock.now_ms()
    windows = daily.day_windows(now)
    ranges = daily.windows_ending(now)
    earliest = min(windows[0][0], ranges[-1][1][0])
    async with connection(request) as conn:
        row = await queries.site_row(conn, site_id)
        if row is None:
            raise Problem(Kind.NOT_FOUND, f"There is no site {site_id}.")
        m = row._mapping
        created = None if m["created_at"] is None else to_ms(m["created_at"])
        got = await context(request).uptime.inputs(conn, site_id, created, earliest, now)
        spans, first_event = got.spans, got.first_event_ms
        events = await queries.events_page(conn, q, site_id)
    maint = maintenance_ms(m["maintenance"])
    reports = [
        (label, report(spans, maint, a, b, site_created_ms=created, first_event_ms=first_event))
        for label, (a, b) in ranges
    ]
    days = daily.daily(spans, maint, windows, site_created_ms=created, first_event_ms=first_event)
    site = queries.site_of(row._mapping)
    return page(
        render(
            "site.html",
            site=site,
            state=display_state(row, maint, now),
            reports=reports,
            days=days,
            events=events.data,
            next_cursor=events.next_cursor,
            first_page=not raw_cursor,
            now_ms=now,
        )
    )


async def event_page(request: web.Request) -> web.Response:
    event_id = request.match_info["event_id"]
    if not 1 <= len(event_id) <= 64:
        raise Problem(Kind.NOT_FOUND, "There is no such event.")
    async with connection(request) as conn:
        detail = await queries.event_detail(conn, event_id)
        if detail is None:
            raise Problem(Kind.NOT_FOUND, f"There is no event {event_id}.")
        site = await queries.site_row(conn, detail.site_id)
    now = clock.now_ms()
    started = parse(detail.started_at)
    ended = None if detail.ended_at is None else parse(detail.ended_at)
    return page(
        render(
            "event.html",
            event=detail,
            site_url=None if site is None else site._mapping["url"],
            steps=steps_of(detail),
            duration_ms=(ended if ended is not None else now) - started,
            now_ms=now,
        )
    )


async def static_file(request: web.Request) -> web.Response:
    found = static_files().get(request.match_info["name"])
    if found is None:
        raise Problem(Kind.NOT_FOUND, "There is no such file.")
    if found.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers={"ETag": found.etag})
    # URLs carry the content's hash (static_url): a year of caching is safe
    return web.Response(
        body=found.body,
        content_type=found.content_type,
        charset="utf-8",
        headers={"ETag": found.etag, "Cache-Control": "public, max-age=31536000, immutable"},
    )


def _site_id(raw: str) -> int:
    """A site id from a path, or a 404: a page answers "no such site" for any bad id."""
    if _DIGITS.fullmatch(raw) is None or int(raw) > models.MAX_ID:
        raise Problem(Kind.NOT_FOUND, "There is no such site.")
    return int(raw)


# -- wiring ---------------------------------------------------------------------------------


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", status_page)
    app.router.add_get("/status/live", status_live)
    app.router.add_get("/sites/{site_id}", site_page)
    app.router.add_get("/events/{event_id}", event_page)
    app.router.add_get("/static/{name}", static_file)


def is_page(request: web.Request) -> bool:
    return not request.path.startswith(NOT_PAGES)


def error_page(problem: Problem, request: web.Request) -> web.Response:
    body = render(
        "error.html",
        status=problem.status,
        title=TITLES[problem.kind] if problem.kind is not Kind.NOT_FOUND else "Not found",
        detail=problem.detail,
        path=request.path,
    )
    return page(body, status=problem.status)
