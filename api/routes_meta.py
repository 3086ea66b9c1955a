"""Health, the OpenAPI document and Prometheus metrics: no token needed."""

from __future__ import annotations

import asyncio
from typing import Final

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from . import models, openapi
from .routing import ROUTES, Tag, answer, context, route

HEALTH_TIMEOUT_S: Final = 2.0
OPENAPI: Final = web.AppKey("openapi", bytes)


@route(
    "GET",
    "/api/v1/health",
    summary="Is the API able to read the database and publish to Kafka?",
    description="`status` is `ok` when both are, `degraded` otherwise (still a 200: the "
    "API serves what it can).",
    tag=Tag.META,
    scope=None,
    answer=models.Health,
)
async def health(request: web.Request) -> web.Response:
    ctx = context(request)

    async def database() -> bool:
        try:
            async with ctx.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(sa.text("SELECT 1")), HEALTH_TIMEOUT_S)
            return True
        except (SQLAlchemyError, OSError, TimeoutError):
            return False

    db_ok, kafka_ok = await asyncio.gather(database(), ctx.publisher.healthy(HEALTH_TIMEOUT_S))
    ok, down = models.ComponentStatus.OK, models.ComponentStatus.UNAVAILABLE
    return answer(
        models.Health(
            status=models.HealthStatus.OK if db_ok and kafka_ok else models.HealthStatus.DEGRADED,
            database=ok if db_ok else down,
            kafka=ok if kafka_ok else down,
        )
    )


@route(
    "GET",
    "/api/v1/openapi.json",
    summary="This document: OpenAPI 3.1 of every route, generated from the code",
    tag=Tag.META,
    scope=None,
    answer=dict,
)
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


@route(
    "GET",
    "/metrics",
    summary="Prometheus metrics of the API process (bind the API privately)",
    tag=Tag.META,
    scope=None,
    media_type="text/plain",
)
async def metrics(request: web.Request) -> web.Response:
    body, content_type = context(request).metrics.render()
    return web.Response(body=body, headers={"Content-Type": content_type})


def openapi_bytes() -> bytes:
    import msgspec

    return msgspec.json.encode(openapi.document(ROUTES))
