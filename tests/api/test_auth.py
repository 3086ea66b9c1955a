"""Every route of the table: 401 without a valid key, 403 for too small a scope (docs/api.md)."""

from __future__ import annotations

import pytest

from sitewatch.api.app import ROUTES  # importing the app registers every route
from sitewatch.api.keys import Scope
from sitewatch.api.routing import Route

from .live import LiveApi

pytestmark = pytest.mark.integration

SAMPLE = {"site_id": "1", "event_id": "no-such-event", "webhook_id": "1"}
SCOPED = [r for r in ROUTES if r.scope is not None]
PUBLIC = [r for r in ROUTES if r.scope is None]


def concrete(r: Route) -> str:
    path = r.path
    for name, value in SAMPLE.items():
        path = path.replace("{" + name + "}", value)
    return path


def test_every_route_of_the_design_table_is_declared() -> None:
    declared = {r.name for r in ROUTES}
    assert declared == {
        "GET /api/v1/health",
        "GET /api/v1/openapi.json",
        "GET /api/v1/sites",
        "GET /api/v1/sites/{site_id}",
        "PUT /api/v1/sites/{site_id}",
        "POST /api/v1/sites/{site_id}/pause",
        "POST /api/v1/sites/{site_id}/resume",
        "DELETE /api/v1/sites/{site_id}",
        "GET /api/v1/events",
        "GET /api/v1/sites/{site_id}/events",
        "GET /api/v1/events/{event_id}",
        "POST /api/v1/events/{event_id}/close",
        "GET /api/v1/sites/{site_id}/uptime",
        "GET /api/v1/webhooks",
        "POST /api/v1/webhooks",
        "DELETE /api/v1/webhooks/{webhook_id}",
        "GET /api/v1/webhooks/{webhook_id}/deliveries",
        "GET /metrics",
    }
    scopes = {r.name: r.scope for r in ROUTES}
    assert scopes["PUT /api/v1/sites/{site_id}"] is Scope.WRITE
    assert scopes["POST /api/v1/events/{event_id}/close"] is Scope.WRITE
    assert scopes["GET /api/v1/events"] is Scope.READ
    assert all(scopes[n] is Scope.ADMIN for n in scopes if "/webhooks" in n)


@pytest.mark.parametrize("spec", SCOPED, ids=lambda r: r.name)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer ", "Bearer sw_not-a-key", "Basic dXNlcjpwYXNz", "revoked"],
    ids=["missing", "empty", "unknown", "not-bearer", "revoked"],
)
async def test_missing_unknown_or_revoked_key_is_401_problem(
    api: LiveApi, spec: Route, authorization: str | None
) -> None:
    headers = {}
    if authorization == "revoked":
        headers = api.headers("revoked")
    elif authorization is not None:
        headers = {"Authorization": authorization}
    status, body, resp = await api.request(
        spec.method, concrete(spec), headers=headers, json={"url": "https://x.example"}
    )
    assert status == 401
    assert resp.content_type == "application/problem+json"
    assert body["status"] == 401 and body["type"].startswith("urn:sitewatch:problem:")
    assert resp.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("spec", [r for r in SCOPED if r.scope is not Scope.READ], ids=str)
async def test_too_small_a_scope_is_403_problem(api: LiveApi, spec: Route) -> None:
    assert spec.scope is not None
    smaller = [s for s in Scope if s.rank < spec.scope.rank]
    for scope in smaller:
        who = {"read": "reader", "write": "writer"}[scope.value]
        status, body, resp = await api.request(spec.method, concrete(spec), who=who)
        assert status == 403, (who, body)
        assert resp.content_type == "application/problem+json"
        assert body["title"] == "The API key's scope is too small"


@pytest.mark.parametrize("spec", SCOPED, ids=lambda r: r.name)
async def test_a_large_enough_scope_passes_the_check(api: LiveApi, spec: Route) -> None:
    assert spec.scope is not None
    for who, scope in (("reader", Scope.READ), ("writer", Scope.WRITE), ("admin", Scope.ADMIN)):
        if not scope.allows(spec.scope):
            continue
        status, _, _ = await api.request(spec.method, concrete(spec), who=who)
        assert status not in (401, 403, 500), (who, status)


@pytest.mark.parametrize("spec", PUBLIC, ids=lambda r: r.name)
async def test_public_routes_need_no_token(api: LiveApi, spec: Route) -> None:
    status, _, _ = await api.request(spec.method, concrete(spec))
    assert status == 200
