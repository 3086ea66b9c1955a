"""OpenAPI 3.1 of every route, generated from the route table and the msgspec Structs.

msgspec writes JSON Schema 2020-12, which is OpenAPI 3.1's dialect, so the components
are the Structs' own schemas: what is documented is what the code decodes and encodes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from importlib import metadata
from typing import Any, Final

import msgspec

from . import keys
from .problems import CONTENT_TYPE as PROBLEM
from .problems import ProblemDocument
from .routing import PATH_PARAMS, Route, Tag

REF: Final = "#/components/schemas/{name}"

DESCRIPTIONS: Final[dict[int, str]] = {
    200: "OK",
    201: "Created",
    202: "Accepted: published to Kafka; the sink applies it to the database",
    204: "Deleted",
    400: "Bad request: an invalid parameter or cursor",
    401: "Missing, unknown or revoked API key",
    403: "The API key's scope is too small",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict with the current state",
    413: "Request body too large",
    422: "Invalid request body",
    503: "A service the API depends on (Kafka, the database) is unavailable",
}

TAGS: Final[dict[Tag, str]] = {
    Tag.META: "health, this document, metrics",
    Tag.SITES: "sites, their settings, state and uptime",
    Tag.EVENTS: "incidents and their transitions",
    Tag.WEBHOOKS: "the notifier's subscriptions (admin)",
}


def document(routes: Iterable[Route]) -> dict[str, Any]:
    routes = list(routes)
    types: list[Any] = [ProblemDocument, *PATH_PARAMS.values()]
    for r in routes:
        types += [t for t in (r.query, r.body, r.answer) if t is not None]
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    schema_of = dict(zip(map(_key, types), schemas, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r, schema_of, components)
    try:
        version = metadata.version("sitewatch")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a checkout
        version = "0"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sitewatch API",
            "version": version,
            "description": "Reads the database; writes only by publishing to Kafka "
            "(`sites`, or a command on `check-results`), answered 202. Errors are "
            "`application/problem+json` (RFC 9457). Lists take `limit` and an opaque "
            "`cursor`. Times are ISO-8601 UTC with milliseconds.",
        },
        "tags": [{"name": t.value, "description": d} for t, d in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a token from `sitewatch keys create`; scopes "
                    "read < write < admin",
                }
            },
        },
    }


def _key(t: Any) -> str:
    return repr(t)


def _operation(r: Route, schema_of: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": r.handler.__name__,
        "summary": r.summary,
        "tags": [r.tag.value],
        "security": [{"bearer": []}] if r.scope is not None else [],
    }
    if r.description:
        op["description"] = r.description
    if r.scope is not None:
        op["x-scope"] = r.scope.value
        op["description"] = f"{op.get('description', '')}\n\nScope: `{r.scope}`.".strip()
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": _not_null(schema_of[_key(PATH_PARAMS[name])]),
        }
        for name in r.path_params
    ]
    if r.query is not None:
        struct = components[r.query.__name__]
        required = set(struct.get("required", ()))
        for name, prop in struct.get("properties", {}).items():
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "schema": _not_null(prop),
                }
            )
    if params:
        op["parameters"] = params
    if r.body is not None:
        op["requestBody"] = {
            "required": r.body_required,
            "content": {"application/json": {"schema": schema_of[_key(r.body)]}},
        }
    responses: dict[str, Any] = {}
    ok: dict[str, Any] = {"description": DESCRIPTIONS.get(r.status, "OK")}
    if r.answer is not None:
        ok["content"] = {r.media_type: {"schema": schema_of[_key(r.answer)]}}
    elif r.status != 204:
        ok["content"] = {r.media_type: {"schema": {"type": "string"}}}
    responses[str(r.status)] = ok
    errors = set(r.errors)
    if r.scope is not None:
        errors.add(401)
        if r.scope is not keys.Scope.READ:
            errors.add(403)
    if params or r.body is not None:
        errors.add(400)
    if r.body is not None:
        errors |= {413, 422}
    for status in sorted(errors):
        responses[str(status)] = {
            "description": DESCRIPTIONS[status],
            "content": {PROBLEM: {"schema": schema_of[_key(ProblemDocument)]}},
        }
    op["responses"] = responses
    return op


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema without the `null` alternative (a query string has no null)."""
    schema = copy.deepcopy(schema)
    if "default" in schema and schema["default"] is None:
        del schema["default"]
    options = schema.get("anyOf")
    if isinstance(options, list):
        rest = [o for o in options if o != {"type": "null"}]
        if len(rest) == 1:
            merged = {k: v for k, v in schema.items() if k != "anyOf"}
            merged.update(rest[0])
            return merged
        schema["anyOf"] = rest
    return schema
