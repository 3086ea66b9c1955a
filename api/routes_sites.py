"""`/api/v1/sites...`: read sites and their uptime; change them by publishing to `sites`."""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from typing import Any, Final

import msgspec
from aiohttp import web
from msgspec import UNSET

from sitewatch.clock import now_ms
from sitewatch.crypto import SecretBox, SecretError, open_secret
from sitewatch.sink.rows import REDACTED_VALUE
from sitewatch.sink.tables import SETTINGS_COLUMNS
from sitewatch.streams import records
from sitewatch.streams.topics import Topic

from . import availability, models, queries
from .keys import Scope
from .problems import Kind, Problem
from .routing import (
    Tag,
    answer,
    body_json,
    connection,
    context,
    found,
    listed,
    path_param,
    publish,
    query,
    route,
)
from .timefmt import from_ms, parse, to_ms

#: the uptime window when `from` is not given: this long before `to`
DEFAULT_UPTIME_DAYS: Final = 30
DAY_MS: Final = 86_400_000

#: the writes: each publishes the site's record (or its tombstone) to `sites`, answered 202
publishes = partial(
    route, tag=Tag.SITES, scope=Scope.WRITE, answer=models.SitePublished, status=202
)


@route(
    "GET",
    "/api/v1/sites",
    summary="List sites with their settings and current state",
    tag=Tag.SITES,
    scope=Scope.READ,
    query=models.SitesQuery,
    answer=models.SitePage,
    errors=(400,),
)
async def list_sites(request: web.Request) -> web.Response:
    return await listed(request, models.SitesQuery, queries.sites_page)


@route(
    "GET",
    "/api/v1/sites/{site_id}",
    summary="One site",
    tag=Tag.SITES,
    scope=Scope.READ,
    answer=models.Site,
    errors=(400, 404),
)
async def get_site(request: web.Request) -> web.Response:
    site_id = path_param(request, "site_id")
    async with connection(request) as conn:
        row = found(await queries.site_row(conn, site_id), f"site {site_id}")
    return answer(queries.site_of(row._mapping))


@publishes(
    "PUT",
    "/api/v1/sites/{site_id}",
    summary="Create or replace a site: validated as a `sites` record and published",
    description="The body is a `sites` record whose `site_id` is the path's. Answered 202 "
    "with what was published; the sink applies it to the database.",
    body=records.SiteRecord,
    errors=(400, 422, 503),
)
async def put_site(request: web.Request) -> web.Response:
    site_id = path_param(request, "site_id")
    raw = await body_json(request)
    try:
        site = msgspec.convert(raw, records.SiteRecord)
    except msgspec.ValidationError as exc:
        raise Problem(Kind.INVALID_BODY, f"not a valid `sites` record: {exc}") from None
    if site.site_id != site_id:
        raise Problem(Kind.INVALID_BODY, f"body site_id {site.site_id} is not the path's {site_id}")
    check_site(site)
    return await publish_site(request, site_id, site)


@publishes(
    "POST",
    "/api/v1/sites/{site_id}/pause",
    summary="Pause a site: publishes its record with `active` false",
    errors=(400, 404, 409, 503),
)
async def pause_site(request: web.Request) -> web.Response:
    return await _set_active(request, False)


@publishes(
    "POST",
    "/api/v1/sites/{site_id}/resume",
    summary="Resume a site: publishes its record with `active` true",
    errors=(400, 404, 409, 503),
)
async def resume_site(request: web.Request) -> web.Response:
    return await _set_active(request, True)


@publishes(
    "DELETE",
    "/api/v1/sites/{site_id}",
    summary="Delete a site: publishes a tombstone (null value) to `sites`",
    errors=(400, 503),
)
async def delete_site(request: web.Request) -> web.Response:
    site_id = path_param(request, "site_id")
    return await publish_site(request, site_id, None)


@route(
    "GET",
    "/api/v1/sites/{site_id}/events",
    summary="A site's events, newest first",
    tag=Tag.EVENTS,
    scope=Scope.READ,
    query=models.SiteEventsQuery,
    answer=models.EventPage,
    errors=(400, 404),
)
async def site_events(request: web.Request) -> web.Response:
    site_id = path_param(request, "site_id")
    q = query(request, models.SiteEventsQuery)
    async with connection(request) as conn:
        found(await queries.site_row(conn, site_id), f"site {site_id}")
        return answer(await queries.events_page(conn, q, site_id))


@route(
    "GET",
    "/api/v1/sites/{site_id}/uptime",
    summary="Availability report over [from, to), policy sitewatch-1",
    description="Defaults: `to` now, `from` 30 days before `to`. See docs/api.md for the "
    "policy: downtime counts availability events (http, tcp, dns) that reached `down`, "
    "once; seems-down time, maintenance and unknown time are reported apart.",
    tag=Tag.SITES,
    scope=Scope.READ,
    query=models.UptimeQuery,
    answer=models.UptimeReport,
    errors=(400, 404),
)
async def uptime(request: web.Request) -> web.Response:
    site_id = path_param(request, "site_id")
    q = query(request, models.UptimeQuery)
    end = queries.stamp_ms(q.to, "to") if q.to is not UNSET else now_ms()
    if q.from_ is not UNSET:
        start = queries.stamp_ms(q.from_, "from")
    else:  # not before 1970: wire times are 1970-8999 (streams.records.Timestamp)
        start = max(0, end - DEFAULT_UPTIME_DAYS * DAY_MS)
    if end < start:
        raise Problem(Kind.INVALID_PARAMETER, "`to` is before `from`")
    async with connection(request) as conn:
        row = found(await queries.site_row(conn, site_id), f"site {site_id}")
        created = row._mapping["created_at"]
        created_ms = None if created is None else to_ms(created)
        got = await context(request).uptime.inputs(conn, site_id, created_ms, start, end)
    rep = availability.report(
        got.opened,
        maintenance_ms(row._mapping["maintenance"]),
        start,
        end,
        site_created_ms=created_ms,
        first_event_ms=got.first_event_ms,
        kept=got.kept,
    )
    return answer(uptime_answer(site_id, rep))


def uptime_answer(site_id: int, rep: availability.Report) -> models.UptimeReport:
    mttr = rep.mttr_ms
    incident, stamp = models.Incident, from_ms
    return models.UptimeReport(
        policy=availability.POLICY,
        site_id=site_id,
        from_=stamp(rep.start_ms),
        to=stamp(rep.end_ms),
        down_s=rep.down_ms / 1000,
        seems_down_s=rep.seems_down_ms / 1000,
        maintenance_s=rep.maintenance_ms / 1000,
        unknown_s=rep.unknown_ms / 1000,
        measured_s=rep.measured_ms / 1000,
        uptime_ratio=rep.uptime_ratio,
        incidents=[
            incident(
                event_id=eid,
                started_at=stamp(began),
                ended_at=None if ended is None else stamp(ended),
                down_s=down / 1000,
            )
            for eid, began, ended, down in rep.incidents
        ],
        mttr_s=None if mttr is None else mttr / 1000,
    )


def maintenance_ms(value: Any) -> list[tuple[int, int]]:
    """Stored maintenance windows as ms intervals; unreadable ones are skipped."""
    out = []
    for w in queries.maintenance_windows(value):
        try:
            out.append((parse(w.start), parse(w.end)))
        except ValueError:
            continue
    return out


# -- publishing -----------------------------------------------------------------------------


def check_site(site: records.SiteRecord) -> None:
    """Strict in what we write: maintenance windows are real times, in order."""
    for i, w in enumerate(site.maintenance):
        try:
            start, end = parse(w.start), parse(w.end)
        except ValueError:
            raise Problem(Kind.INVALID_BODY, f"maintenance[{i}]: not a real time") from None
        if end < start:
            raise Problem(Kind.INVALID_BODY, f"maintenance[{i}]: end is before start")


async def publish_site(
    request: web.Request, site_id: int, site: records.SiteRecord | None
) -> web.Response:
    value = None if site is None else records.encode(site)
    done = await publish(request, Topic.SITES, site_id, value)
    return answer(models.SitePublished(**asdict(done), key=str(site_id), value=site), status=202)


async def _set_active(request: web.Request, active: bool) -> web.Response:
    site_id = path_param(request, "site_id")
    async with connection(request) as conn:
        row = found(await queries.site_row(conn, site_id), f"site {site_id}")
    m = row._mapping
    fields = {c: m[c] for c in SETTINGS_COLUMNS if m[c] is not None}
    fields.update(site_id=site_id, active=active)
    if isinstance(fields.get("custom_headers"), dict):
        fields["custom_headers"] = _header_values(
            site_id, fields["custom_headers"], context(request).secrets
        )
    try:
        site = msgspec.convert(fields, records.SiteRecord)
    except msgspec.ValidationError as exc:
        # e.g. a row the sink made from a transition before any settings arrived
        raise Problem(Kind.CONFLICT, f"site {site_id} has no complete settings: {exc}") from None
    return await publish_site(request, site_id, site)


def _header_values(site_id: int, stored: dict[str, Any], box: SecretBox | None) -> dict[str, str]:
    """The site's header values in the clear, as the record must carry them: the sink
    stores them sealed, or not at all without a key; then only a full PUT can say them."""
    out = {}
    for name, value in stored.items():
        if not isinstance(value, str) or value == REDACTED_VALUE:
            raise Problem(
                Kind.CONFLICT,
                f"site {site_id}: the database does not hold the value of header {name!r}; "
                "PUT the whole record instead",
            )
        try:
            out[str(name)] = open_secret(box, value)
        except SecretError as exc:
            raise Problem(Kind.CONFLICT, f"site {site_id}: header {name!r}: {exc}") from None
    return out
