"""Errors as `application/problem+json` (RFC 9457): `type`, `title`, `status`, `detail`.

Handlers raise `Problem`; the error middleware turns it (and aiohttp's own HTTP errors)
into a response. Bad input is always a 4xx: a 500 means a bug, and is logged as one.
"""

from __future__ import annotations

import enum
from typing import Final

import msgspec
from aiohttp import web

CONTENT_TYPE: Final = "application/problem+json"


class Kind(enum.StrEnum):
    """Problem types; the `type` URI is `urn:sitewatch:problem:<value>`."""

    BAD_REQUEST = "bad-request"
    INVALID_PARAMETER = "invalid-parameter"
    INVALID_BODY = "invalid-body"
    INVALID_CURSOR = "invalid-cursor"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not-found"
    METHOD_NOT_ALLOWED = "method-not-allowed"
    CONFLICT = "conflict"
    TOO_LARGE = "payload-too-large"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"

    @property
    def uri(self) -> str:
        return f"urn:sitewatch:problem:{self.value}"


TITLES: Final[dict[Kind, str]] = {
    Kind.BAD_REQUEST: "Bad request",
    Kind.INVALID_PARAMETER: "Invalid parameter",
    Kind.INVALID_BODY: "Invalid request body",
    Kind.INVALID_CURSOR: "Invalid cursor",
    Kind.UNAUTHORIZED: "Missing, unknown or revoked API key",
    Kind.FORBIDDEN: "The API key's scope is too small",
    Kind.NOT_FOUND: "Not found",
    Kind.METHOD_NOT_ALLOWED: "Method not allowed",
    Kind.CONFLICT: "Conflict",
    Kind.TOO_LARGE: "Request body too large",
    Kind.UNAVAILABLE: "A service the API depends on is unavailable",
    Kind.INTERNAL: "Internal error",
}

STATUS: Final[dict[Kind, int]] = {
    Kind.BAD_REQUEST: 400,
    Kind.INVALID_PARAMETER: 400,
    Kind.INVALID_BODY: 422,
    Kind.INVALID_CURSOR: 400,
    Kind.UNAUTHORIZED: 401,
    Kind.FORBIDDEN: 403,
    Kind.NOT_FOUND: 404,
    Kind.METHOD_NOT_ALLOWED: 405,
    Kind.CONFLICT: 409,
    Kind.TOO_LARGE: 413,
    Kind.UNAVAILABLE: 503,
    Kind.INTERNAL: 500,
}


class ProblemDocument(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An RFC 9457 problem details object."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


class Problem(Exception):
    def __init__(self, kind: Kind, detail: str | None = None) -> None:
        super().__init__(detail or TITLES[kind])
        self.kind = kind
        self.detail = detail

    @property
    def status(self) -> int:
        return STATUS[self.kind]

    def document(self, instance: str | None = None) -> ProblemDocument:
        return ProblemDocument(
            type=self.kind.uri,
            title=TITLES[self.kind],
            status=self.status,
            detail=self.detail,
            instance=instance,
        )

    def response(self, instance: str | None = None) -> web.Response:
        headers = {"WWW-Authenticate": "Bearer"} if self.kind is Kind.UNAUTHORIZED else None
        return web.Response(
            status=self.status,
            body=msgspec.json.encode(self.document(instance)),
            content_type=CONTENT_TYPE,
            headers=headers,
        )


_FROM_STATUS: Final = {
    400: Kind.BAD_REQUEST,
    404: Kind.NOT_FOUND,
    405: Kind.METHOD_NOT_ALLOWED,
    413: Kind.TOO_LARGE,
}


def from_http_error(exc: web.HTTPException) -> Problem:
    """aiohttp's own errors (no route, wrong method, body too large) as problems."""
    kind = _FROM_STATUS.get(exc.status)
    if kind is None:
        kind = Kind.BAD_REQUEST if exc.status < 500 else Kind.INTERNAL
    return Problem(kind, exc.reason if kind is not Kind.INTERNAL else None)
