"""The route table: every route with its scope and types, read by the app and OpenAPI.

A route is declared once, with `@route(...)`; the app registers the handler behind the
auth check its scope needs, and `openapi.py` documents it from the same declaration.
"""

from __future__ import annotations

import enum
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import msgspec
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from sitewatch.crypto import SecretBox
from sitewatch.streams import records
from sitewatch.streams.topics import Topic, TopicNames

from . import keys
from .metrics import ApiMetrics
from .models import EventIdParam, Id, SiteIdParam
from .problems import Kind, Problem
from .publisher import Published, Publisher
from .uptime import UptimeReads

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
S = TypeVar("S")
T = TypeVar("T")

JSON: Final = "application/json"


class Tag(enum.StrEnum):
    META = "meta"
    SITES = "sites"
    EVENTS = "events"
    WEBHOOKS = "webhooks"


@dataclass(frozen=True, slots=True)
class Context:
    """What handlers need, one per app."""

    engine: AsyncEngine
    publisher: Publisher
    names: TopicNames
    metrics: ApiMetrics
    #: SITEWATCH_SECRET_KEY: seals webhook secrets, opens stored header values
    secrets: SecretBox | None = None
    #: SITEWATCH_PROBE_ALLOW_PRIVATE: webhooks to loopback/private targets (tests, demo)
    allow_private_targets: bool = False
    #: the uptime report's reads, each site's closed events kept between requests
    uptime: UptimeReads = field(default_factory=UptimeReads)


CONTEXT: Final = web.AppKey("context", Context)
#: the authenticated key of a request (set by the auth check)
API_KEY: Final = "sitewatch.api_key"
#: the database connection the auth check opened, which the handler reuses
CONNECTION: Final = "sitewatch.connection"

#: path parameters: name -> type (documented and parsed the same way)
PATH_PARAMS: Final[dict[str, Any]] = {
    "site_id": SiteIdParam,
    "event_id": EventIdParam,
    "webhook_id": Id,
}


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: Tag
    scope: keys.Scope | None
    query: type[msgspec.Struct] | None = None
    body: Any = None
    body_required: bool = True
    answer: Any = None
    status: int = 200
    errors: tuple[int, ...] = ()
    media_type: str = JSON
    description: str = ""
    path_params: tuple[str, ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def writes(self) -> bool:
        return self.method in ("POST", "PUT", "PATCH", "DELETE")


ROUTES: list[Route] = []


def route(
    method: str,
    path: str,
    *,
    summary: str,
    tag: Tag,
    scope: keys.Scope | None,
    query: type[msgspec.Struct] | None = None,
    body: Any = None,
    body_required: bool = True,
    answer: Any = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
    media_type: str = JSON,
    description: str = "",
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        params = tuple(re.findall(r"{(\w+)}", path))
        unknown = [p for p in params if p not in PATH_PARAMS]
        assert not unknown, f"undeclared path parameters {unknown} in {path}"
        ROUTES.append(
            Route(
                method=method,
                path=path,
                handler=handler,
                summary=summary,
                tag=tag,
                scope=scope,
                query=query,
                body=body,
                body_required=body_required,
                answer=answer,
                status=status,
                errors=errors,
                media_type=media_type,
                description=description,
                path_params=params,
            )
        )
        return handler

    return register


# -- what handlers call -------------------------------------------------------------------


def context(request: web.Request) -> Context:
    return request.app[CONTEXT]


@asynccontextmanager
async def connection(request: web.Request) -> AsyncIterator[AsyncConnection]:
    """The request's database connection: the one the auth check opened (one pool
    checkout and one snapshot per request), or a new one on public routes."""
    conn: AsyncConnection | None = request.get(CONNECTION)
    if conn is not None:
        yield conn
        return
    async with context(request).engine.connect() as fresh:
        yield fresh


async def listed(
    request: web.Request, shape: type[S], read: Callable[[AsyncConnection, S], Awaitable[Any]]
) -> web.Response:
    """A list route's answer: its query parameters as `shape`, the page `read` makes of them."""
    q = query(request, shape)
    async with connection(request) as conn:
        return answer(await read(conn, q))


def found(value: T | None, what: str) -> T:
    """`value`, or a 404 when there is none: `what` names it (`site 7`)."""
    if value is None:
        raise Problem(Kind.NOT_FOUND, f"no {what}")
    return value


async def publish(
    request: web.Request, topic: Topic, site_id: int, value: bytes | None
) -> Published:
    """Publish a record keyed by its site (`value` None: a tombstone), counted by topic."""
    ctx = context(request)
    done = await ctx.publisher.publish(ctx.names.name(topic), records.site_key(site_id), value)
    ctx.metrics.published.labels(topic.value).inc()
    return done


def api_key(request: web.Request) -> keys.ApiKey:
    key: keys.ApiKey = request[API_KEY]
    return key


def path_param(request: web.Request, name: str) -> Any:
    raw = request.match_info[name]
    try:
        return msgspec.convert(raw, PATH_PARAMS[name], strict=False)
    except msgspec.ValidationError as exc:
        raise Problem(Kind.INVALID_PARAMETER, f"path parameter {name}: {exc}") from None


def query(request: web.Request, shape: type[S]) -> S:
    # a repeated parameter is ambiguous: refuse it rather than pick one
    names = [name for name, _ in request.query.items()]
    if len(names) != len(set(names)):
        raise Problem(Kind.INVALID_PARAMETER, "a query parameter is given more than once")
    try:
        return msgspec.convert(dict(request.query), shape, strict=False)
    except msgspec.ValidationError as exc:
        raise Problem(Kind.INVALID_PARAMETER, _query_message(exc)) from None


def _query_message(exc: msgspec.ValidationError) -> str:
    # msgspec says `$.limit`; a query string has no `$`
    return re.sub(r"`\$\.(\w+)`", r"`\1`", str(exc)).replace(" - at ", ": query parameter ")


async def body_json(request: web.Request, *, required: bool = True) -> Any:
    """The request body as JSON (None when empty and not required)."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise Problem(Kind.INVALID_BODY, "a JSON body is required")
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise Problem(Kind.INVALID_BODY, f"body is not JSON: {exc}") from None


def convert(value: Any, shape: type[S], what: str = "body") -> S:
    try:
        return msgspec.convert(value, shape)
    except msgspec.ValidationError as exc:
        raise Problem(Kind.INVALID_BODY, f"{what}: {exc}") from None


_encoder: Final = msgspec.json.Encoder()


def answer(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(value), status=status, content_type=JSON)


# -- auth ---------------------------------------------------------------------------------


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def guarded(spec: Route) -> Handler:
    """The handler behind the check its scope needs: 401 before 403 before anything."""
    if spec.scope is None:
        return spec.handler
    needed = spec.scope

    async def check(request: web.Request) -> web.StreamResponse:
        token = bearer_token(request)
        if token is None:
            raise Problem(Kind.UNAUTHORIZED, "send `Authorization: Bearer <token>`")
        async with context(request).engine.connect() as conn:
            key = await keys.lookup(conn, token)
            if key is None:
                raise Problem(Kind.UNAUTHORIZED, "unknown or revoked API key")
            request[API_KEY] = key
            if not key.scope.allows(needed):
                raise Problem(
                    Kind.FORBIDDEN, f"{spec.name} needs scope {needed}; this key has {key.scope}"
                )
            request[CONNECTION] = conn
            try:
                return await spec.handler(request)
            finally:
                del request[CONNECTION]

    return check
