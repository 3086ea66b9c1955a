"""`/api/v1/webhooks...` (admin): the notifier's subscriptions and their delivery log.

Subscriptions are the notifier's configuration, not lifecycle state, so the API writes
them directly (as `sitewatch webhooks add|remove` does).
"""

from __future__ import annotations

import asyncio
import secrets
from functools import partial

import msgspec
import sqlalchemy as sa
from aiohttp import web

from sitewatch.notify import tables as nt
from sitewatch.notify.subscriptions import WebhookError, check_target

from . import models, queries
from .keys import Scope
from .problems import Kind, Problem
from .routing import (
    Tag,
    answer,
    body_json,
    connection,
    context,
    convert,
    found,
    listed,
    path_param,
    query,
    route,
)
from .timefmt import db_now

#: every webhook route: the notifier's configuration is the operator's, so admin only
admin = partial(route, tag=Tag.WEBHOOKS, scope=Scope.ADMIN)


@admin(
    "GET",
    "/api/v1/webhooks",
    summary="Webhook subscriptions (secrets never shown)",
    query=models.PageQuery,
    answer=models.WebhookPage,
    errors=(400,),
)
async def list_webhooks(request: web.Request) -> web.Response:
    return await listed(request, models.PageQuery, queries.webhooks_page)


@admin(
    "POST",
    "/api/v1/webhooks",
    summary="Subscribe a URL to downs and recoveries; the secret is answered once",
    body=models.WebhookBody,
    answer=models.WebhookCreated,
    status=201,
    errors=(400, 422),
)
async def create_webhook(request: web.Request) -> web.Response:
    body = convert(await body_json(request), models.WebhookBody)
    ctx = context(request)
    if ctx.secrets is None:
        raise Problem(
            Kind.UNAVAILABLE,
            "SITEWATCH_SECRET_KEY is not set: webhook secrets are stored sealed with it",
        )
    try:
        # the notifier's own guard (`webhooks add`): no private or metadata targets; it
        # may resolve the host, so off the loop
        await asyncio.to_thread(check_target, body.url, ctx.allow_private_targets)
    except WebhookError as exc:
        raise Problem(Kind.INVALID_BODY, f"url: {exc}") from None
    secret = body.secret or secrets.token_hex(24)
    async with context(request).engine.begin() as conn:
        res = await conn.execute(
            sa.insert(nt.subscriptions).values(
                url=body.url,
                secret=ctx.secrets.seal(secret),
                site_id=body.site_id,
                created_at=db_now(),
            )
        )
        pk = res.inserted_primary_key
        assert pk is not None
        row = await queries.webhook_row(conn, int(pk[0]))
    assert row is not None
    hook = queries.webhook_of(row._mapping)
    created = models.WebhookCreated(**msgspec.structs.asdict(hook), secret=secret)
    return answer(created, status=201)


@admin(
    "DELETE",
    "/api/v1/webhooks/{webhook_id}",
    summary="Delete a subscription and its pending deliveries",
    answer=None,
    status=204,
    errors=(400, 404),
)
async def delete_webhook(request: web.Request) -> web.Response:
    webhook_id = path_param(request, "webhook_id")
    async with context(request).engine.begin() as conn:
        res = await conn.execute(
            sa.delete(nt.subscriptions).where(nt.subscriptions.c.id == webhook_id)
        )
    if not res.rowcount:
        raise Problem(Kind.NOT_FOUND, f"no webhook {webhook_id}")
    return web.Response(status=204)


@admin(
    "GET",
    "/api/v1/webhooks/{webhook_id}/deliveries",
    summary="A subscription's deliveries, newest first",
    query=models.PageQuery,
    answer=models.DeliveryPage,
    errors=(400, 404),
)
async def webhook_deliveries(request: web.Request) -> web.Response:
    webhook_id = path_param(request, "webhook_id")
    q = query(request, models.PageQuery)
    async with connection(request) as conn:
        found(await queries.webhook_row(conn, webhook_id), f"webhook {webhook_id}")
        return answer(await queries.deliveries_page(conn, webhook_id, q))
