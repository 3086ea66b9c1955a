"""The aiohttp application: the route table behind auth, problems, the audit log, metrics."""

from __future__ import annotations

import enum
import hashlib
import time
from typing import Final

import sqlalchemy as sa
import structlog
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

# the route modules register their routes on import
from . import pages, routes_events, routes_meta, routes_sites, routes_webhooks  # noqa: F401
from .metrics import UNMATCHED
from .problems import Kind, Problem, from_http_error
from .routing import API_KEY, CONTEXT, ROUTES, Context, Handler, guarded
from .tables import audit
from .timefmt import db_now

__all__ = ["ROUTES", "build"]

log = structlog.get_logger(__name__)

#: request bodies larger than this are refused with 413 (a `sites` record is a few KiB)
MAX_BODY: Final = 256 * 1024
WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuditOutcome(enum.StrEnum):
    ACCEPTED = "accepted"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    REFUSED = "refused"
    FAILED = "failed"

    @classmethod
    def of(cls, status: int) -> AuditOutcome:
        if status < 400:
            return cls.ACCEPTED
        if status == 401:
            return cls.UNAUTHORIZED
        if status == 403:
            return cls.FORBIDDEN
        return cls.REFUSED if status < 500 else cls.FAILED


def route_name(request: web.Request) -> str:
    """The route template of a request (bounded cardinality), or `unmatched`."""
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Metrics and one structured log line per request (outermost: sees the final status)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = route_name(request)
        request.app[CONTEXT].metrics.observe(request.method, route, status, elapsed)
        key = request.get(API_KEY)
        log.info(
            "request",
            method=request.method,
            route=route,
            path=request.path,
            status=status,
            ms=round(elapsed * 1000, 2),
            key=key.name if key is not None else None,
        )


@web.middleware
async def audited(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One `sitewatch_api_audit` row per write request, whatever its outcome."""
    if request.method not in WRITE_METHODS:
        return await handler(request)
    body = b""
    if request.can_read_body and (request.content_length or 0) <= MAX_BODY:
        try:
            body = await request.read()  # cached: the handler reads it again for free
        except web.HTTPException:
            body = b""
    response = await handler(request)
    key = request.get(API_KEY)
    detail = getattr(response, "problem_detail", None)
    try:
        async with request.app[CONTEXT].engine.begin() as conn:
            await conn.execute(
                sa.insert(audit).values(
                    at=db_now(),
                    key_name=key.name if key is not None else None,
                    method=request.method,
                    route=f"{request.method} {route_name(request)}",
                    path=request.path[:2048],
                    body_sha256=hashlib.sha256(body).hexdigest(),
                    body_bytes=len(body) if body else request.content_length or 0,
                    status=response.status,
                    outcome=AuditOutcome.of(response.status).value,
                    detail=detail[:1024] if isinstance(detail, str) else None,
                )
            )
    except SQLAlchemyError as exc:
        # the write itself happened (or was refused) already; say so loudly
        log.error("audit record failed", error=str(exc), path=request.path)
    return response


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as application/problem+json (an HTML page on the pages' paths); a
    database outage is a 503, not a 500."""
    try:
        return await handler(request)
    except Problem as problem:
        return _problem_response(problem, request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _problem_response(from_http_error(exc), request)
        if isinstance(exc, web.HTTPMethodNotAllowed):  # RFC 9110: a 405 says what is allowed
            response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return response
    except SQLAlchemyError as exc:
        log.warning("database error", error=str(exc), path=request.path)
        return _problem_response(Problem(Kind.UNAVAILABLE, "the database is unavailable"), request)
    except Exception:
        log.exception("unhandled error", path=request.path)
        return _problem_response(Problem(Kind.INTERNAL), request)


def _problem_response(problem: Problem, request: web.Request) -> web.Response:
    if pages.is_page(request):
        response = pages.error_page(problem, request)
    else:
        response = problem.response(instance=request.path)
    response.problem_detail = problem.detail or problem.kind.value  # type: ignore[attr-defined]
    return response


def build(ctx: Context) -> web.Application:
    app = web.Application(middlewares=[observe, audited, problems], client_max_size=MAX_BODY)
    app[CONTEXT] = ctx
    app[routes_meta.OPENAPI] = routes_meta.openapi_bytes()
    for spec in ROUTES:
        app.router.add_route(spec.method, spec.path, guarded(spec))
    pages.add_routes(app)
    return app
