"""`/api/v1/events...`: read events; close one by publishing a `close_event` command."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from functools import partial

from aiohttp import web
from msgspec import UNSET

from sitewatch.clock import now_ms
from sitewatch.streams import records
from sitewatch.streams.enums import CommandKind
from sitewatch.streams.topics import Topic

from . import models, queries
from .keys import Scope
from .problems import Kind, Problem
from .routing import (
    Tag,
    answer,
    api_key,
    body_json,
    connection,
    convert,
    found,
    path_param,
    publish,
    query,
    route,
)
from .timefmt import from_ms

#: the event routes (a site's own events are `GET /api/v1/sites/{site_id}/events`)
events_route = partial(route, tag=Tag.EVENTS)


@events_route(
    "GET",
    "/api/v1/events",
    summary="Events, newest first",
    description="`state`: `open`, `closed`, or an event state; `from`/`to` bound "
    "`started_at` (from <= started_at < to).",
    scope=Scope.READ,
    query=models.EventsQuery,
    answer=models.EventPage,
    errors=(400,),
)
async def list_events(request: web.Request) -> web.Response:
    q = query(request, models.EventsQuery)
    async with connection(request) as conn:
        site_id = None if q.site_id is UNSET else q.site_id
        return answer(await queries.events_page(conn, q, site_id))


@events_route(
    "GET",
    "/api/v1/events/{event_id}",
    summary="One event with its transitions in `seq` order",
    scope=Scope.READ,
    answer=models.EventDetail,
    errors=(400, 404),
)
async def get_event(request: web.Request) -> web.Response:
    event_id = path_param(request, "event_id")
    async with connection(request) as conn:
        detail = await queries.event_detail(conn, event_id)
    return answer(found(detail, f"event {event_id}"))


@events_route(
    "POST",
    "/api/v1/events/{event_id}/close",
    summary="Close an open event: publishes a `close_event` command (actor: the key's name)",
    description="The worker closes the event with `manual_override`, source "
    "`operator:<key name>`. Answered 202 with the command published to `check-results`.",
    scope=Scope.WRITE,
    body=models.CloseEventBody,
    body_required=False,
    answer=models.CommandPublished,
    status=202,
    errors=(400, 404, 409, 422, 503),
)
async def close_event(request: web.Request) -> web.Response:
    event_id = path_param(request, "event_id")
    raw = await body_json(request, required=False)
    body = models.CloseEventBody() if raw is None else convert(raw, models.CloseEventBody)
    async with connection(request) as conn:
        site_id, is_open = found(await queries.event_site(conn, event_id), f"event {event_id}")
    if not is_open:
        raise Problem(Kind.CONFLICT, f"event {event_id} is closed already")
    command = records.Command(
        command_id=str(uuid.uuid4()),
        site_id=site_id,
        command=CommandKind.CLOSE_EVENT,
        event_id=event_id,
        actor=api_key(request).name,
        issued_at=from_ms(now_ms()),
        note=body.note,
    )
    done = await publish(request, Topic.CHECK_RESULTS, site_id, records.encode(command))
    published = models.CommandPublished(
        **asdict(done), key=str(site_id), command_id=command.command_id, value=command
    )
    return answer(published, status=202)
