"""The routes against a live API: pages, filters, wire times, the uptime report, writes
published to Kafka (never to the lifecycle tables) and audited, bad input a 4xx."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from sitewatch.streams import records
from tests.kafka_util import read_all

from .live import LiveApi, dt, event_row, seed, site_row

pytestmark = pytest.mark.integration

WIRE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


async def pages(api: LiveApi, path: str, who: str = "reader") -> list[list[dict[str, Any]]]:
    out = []
    cursor = None
    while True:
        sep = "&" if "?" in path else "?"
        status, body, _ = await api.request(
            "GET", path + (f"{sep}cursor={cursor}" if cursor else ""), who=who
        )
        assert status == 200, body
        assert set(body) == {"data", "next_cursor"}
        out.append(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return out


async def test_sites_page_through_with_limit_and_cursor_and_filter(api: LiveApi) -> None:
    await seed(
        api.db_url,
        sites=[
            site_row(100 + i, active=i % 3 != 0, current_state="down" if i % 2 else "up")
            for i in range(7)
        ],
    )
    got = await pages(api, "/api/v1/sites?limit=3")
    ids = [s["site_id"] for page in got for s in page]
    assert [len(p) for p in got][:2] == [3, 3]
    assert ids == sorted(ids) and set(range(100, 107)) <= set(ids)
    down = [s["site_id"] for p in await pages(api, "/api/v1/sites?state=down&limit=200") for s in p]
    assert {101, 103, 105} <= set(down) and not {100, 102} & set(down)
    paused = [s["site_id"] for p in await pages(api, "/api/v1/sites?active=false") for s in p]
    assert {100, 103, 106} <= set(paused) and 101 not in paused


async def test_site_shows_settings_projection_and_wire_times_but_never_header_values(
    api: LiveApi,
) -> None:
    await seed(
        api.db_url,
        sites=[
            site_row(
                200,
                custom_headers={"Authorization": "Bearer secret-value"},
                maintenance=[
                    {"start": "2026-11-26T10:00:00.000Z", "end": "2026-11-26T11:00:00.000Z"}
                ],
                last_status_change=dt("2026-11-26T10:00:00.123Z"),
            )
        ],
    )
    status, site, _ = await api.request("GET", "/api/v1/sites/200", who="reader")
    assert status == 200
    assert site["url"] == "https://s200.example" and site["current_state"] == "up"
    assert site["last_status_change"] == "2026-11-26T10:00:00.123Z"
    assert site["custom_headers"] == {"Authorization": "<hidden>"}
    assert "secret-value" not in json.dumps(site)
    assert site["created_at"].endswith("Z") and len(site["created_at"]) == 24
    status, _body, resp = await api.request("GET", "/api/v1/sites/999999", who="reader")
    assert status == 404 and resp.content_type == "application/problem+json"


async def test_events_newest_first_with_every_filter_and_transitions_in_seq_order(
    api: LiveApi,
) -> None:
    await seed(
        api.db_url,
        sites=[site_row(300), site_row(301)],
        events=[
            event_row("e300a", 300, "2026-11-01T00:00:00.000Z", "2026-11-01T01:00:00.000Z"),
            event_row("e300b", 300, "2026-11-02T00:00:00.000Z", severity=3),
            event_row(
                "e300c", 300, "2026-11-03T00:00:00.000Z", check_type="tls_expiry", severity=1
            ),
            event_row("e301a", 301, "2026-11-02T12:00:00.000Z"),
        ],
        transitions=[
            {
                "transition_id": f"e300a:{seq}",
                "event_id": "e300a",
                "site_id": 300,
                "seq": seq,
                "reason": reason,
                "state_before": before,
                "state_after": after,
                "severity_before": sb,
                "severity_after": sa,
                "source": "local",
                "at": dt(at),
                "check_type": "http",
                "started_at": dt("2026-11-01T00:00:00.000Z"),
                "kafka_topic": "t",
                "kafka_partition": 0,
                "kafka_offset": seq,
            }
            for seq, reason, before, after, sb, sa, at in [
                (2, "verifier_confirmed", "seems_down", "down", 3, 4, "2026-11-01T00:01:00.000Z"),
                (1, "opened", "up", "seems_down", 0, 3, "2026-11-01T00:00:00.000Z"),
                (3, "verifier_cleared", "down", "resolved", 4, None, "2026-11-01T01:00:00.000Z"),
            ]
        ],
    )
    events = [e for p in await pages(api, "/api/v1/sites/300/events?limit=2") for e in p]
    assert [e["event_id"] for e in events] == ["e300c", "e300b", "e300a"]
    assert events[2]["ended_at"] == "2026-11-01T01:00:00.000Z"

    async def ids(q: str) -> list[str]:
        return [e["event_id"] for p in await pages(api, "/api/v1/events?" + q) for e in p]

    assert await ids("site_id=300&state=open") == ["e300c", "e300b"]
    assert await ids("site_id=300&state=closed") == ["e300a"]
    assert await ids("site_id=300&state=seems_down") == ["e300b"]
    assert await ids("site_id=300&check_type=tls_expiry") == ["e300c"]
    assert await ids("site_id=300&severity_gte=3") == ["e300b", "e300a"]
    window = "from=2026-11-02T00:00:00.000Z&to=2026-11-03T00:00:00.000Z"
    assert set(await ids(window)) >= {"e300b", "e301a"}
    assert "e300c" not in await ids(window) and "e300a" not in await ids(window)
    status, detail, _ = await api.request("GET", "/api/v1/events/e300a", who="reader")
    assert status == 200
    assert [t["seq"] for t in detail["transitions"]] == [1, 2, 3]
    assert detail["transitions"][1]["reason"] == "verifier_confirmed"
    assert detail["transitions"][2]["severity_after"] is None


async def test_uptime_answers_what_the_pure_report_computes(api: LiveApi) -> None:
    await seed(
        api.db_url,
        sites=[
            site_row(
                400,
                created_at=dt("2026-10-01T00:00:00.000Z"),
                maintenance=[
                    {"start": "2026-11-10T00:00:00.000Z", "end": "2026-11-10T02:00:00.000Z"}
                ],
            )
        ],
        events=[
            # confirmed then recovered: 1 h down
            event_row("u1", 400, "2026-11-05T10:00:00.000Z", "2026-11-05T11:00:00.000Z"),
            # overlapping tcp outage: counts once
            event_row(
                "u2", 400, "2026-11-05T10:30:00.000Z", "2026-11-05T11:30:00.000Z", check_type="tcp"
            ),
            # a false alarm: seems-down time, not downtime
            event_row(
                "u3",
                400,
                "2026-11-06T00:00:00.000Z",
                "2026-11-06T00:02:00.000Z",
                severity=3,
                resolution_reason="false_alarm",
            ),
            # down inside maintenance (01:00-03:00, window 00:00-02:00): 1 h counts
            event_row("u4", 400, "2026-11-10T01:00:00.000Z", "2026-11-10T03:00:00.000Z"),
            # TLS never counts
            event_row("u5", 400, "2026-11-01T00:00:00.000Z", check_type="tls_expiry", severity=2),
            # still open at the window's end
            event_row("u6", 400, "2026-11-30T23:00:00.000Z"),
        ],
    )
    q = "from=2026-11-01T00:00:00.000Z&to=2026-12-01T00:00:00.000Z"
    status, rep, _ = await api.request("GET", f"/api/v1/sites/400/uptime?{q}", who="reader")
    assert status == 200, rep
    assert rep["policy"] == "sitewatch-1"
    assert rep["down_s"] == 3600 * 1.5 + 3600 + 3600
    assert rep["seems_down_s"] == 120
    assert rep["maintenance_s"] == 7200
    assert rep["unknown_s"] == 0
    assert rep["measured_s"] == 30 * 86400 - 7200
    assert rep["uptime_ratio"] == pytest.approx(1 - rep["down_s"] / rep["measured_s"])
    assert [i["event_id"] for i in rep["incidents"]] == ["u1", "u2", "u4", "u6"]
    assert rep["incidents"][3]["ended_at"] is None
    assert rep["mttr_s"] == pytest.approx((3600 + 3600 + 3600) / 3)


async def test_uptime_window_errors_are_400_and_unknown_site_404(api: LiveApi) -> None:
    await seed(api.db_url, sites=[site_row(401)])
    for q in (
        "from=2026-11-02T00:00:00.000Z&to=2026-11-01T00:00:00.000Z",
        "from=2026-13-45T00:00:00.000Z",
        "from=yesterday",
        "window=1d",
    ):
        status, body, resp = await api.request("GET", f"/api/v1/sites/401/uptime?{q}", who="reader")
        assert status == 400, (q, body)
        assert resp.content_type == "application/problem+json"
    assert (await api.request("GET", "/api/v1/sites/402/uptime", who="reader"))[0] == 404


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/sites?limit=0",
        "/api/v1/sites?limit=201",
        "/api/v1/sites?limit=abc",
        "/api/v1/sites?limit=1&limit=2",
        "/api/v1/sites?state=sideways",
        "/api/v1/sites?active=maybe",
        "/api/v1/sites?cursor=not-a-cursor",
        "/api/v1/sites?cursor=WyJlIiwxLCJ4Il0",  # a cursor of the events list
        "/api/v1/events?severity_gte=9",
        "/api/v1/events?from=0000-00-00T00:00:00Z",
        "/api/v1/events?site_id=-1",
        "/api/v1/events?site_id=99999999999999999999",
        "/api/v1/events?sate=open",
        "/api/v1/sites/abc",
        "/api/v1/sites/0",
        "/api/v1/sites/1%00",
    ],
)
async def test_bad_input_is_a_4xx_problem_never_a_500(api: LiveApi, path: str) -> None:
    status, body, resp = await api.request("GET", path, who="reader")
    assert status == 400, body
    assert resp.content_type == "application/problem+json"
    assert set(body) >= {"type", "title", "status", "detail"}


async def test_unknown_route_and_method_are_problems(api: LiveApi) -> None:
    status, _, resp = await api.request("GET", "/api/v1/nothing", who="reader")
    assert status == 404 and resp.content_type == "application/problem+json"
    status, _, resp = await api.request("PATCH", "/api/v1/sites/1", who="admin")
    assert status == 405 and resp.content_type == "application/problem+json"


async def test_put_publishes_a_validated_sites_record_and_touches_no_table(api: LiveApi) -> None:
    before = api.sql("SELECT COUNT(*) AS n FROM jetpack_monitor_sites")[0]["n"]
    body = {
        "site_id": 500,
        "url": "https://new.example",
        "check_interval_s": 60,
        "checks": ["http", "tls_expiry"],
    }
    status, published, _ = await api.request("PUT", "/api/v1/sites/500", who="writer", json=body)
    assert status == 202, published
    assert published["topic"] == api.names.sites and published["key"] == "500"
    rows = await read_all(api.bootstrap, api.names.sites, want=1)
    mine = [r for r in rows if r[0] == b"500"]
    assert len(mine) == 1
    record = records.site_decoder.decode(mine[0][1])
    assert record.site_id == 500 and record.check_interval_s == 60
    assert published["value"] == json.loads(mine[0][1])
    assert api.sql("SELECT COUNT(*) AS n FROM jetpack_monitor_sites")[0]["n"] == before
    audit = api.sql("SELECT * FROM sitewatch_api_audit WHERE path = '/api/v1/sites/500'")
    assert audit[-1]["key_name"] == "writer"
    assert audit[-1]["route"] == "PUT /api/v1/sites/{site_id}"
    assert audit[-1]["outcome"] == "accepted" and audit[-1]["status"] == 202
    raw = json.dumps(body).encode()
    assert audit[-1]["body_sha256"] == hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize(
    "body",
    [
        {"url": ""},
        {"url": "https://a.example"},  # no site_id
        {"site_id": 7, "url": "https://a.example"},  # not the path's
        {"url": "https://a.example", "redirect_policy": "sometimes"},
        {"url": "https://a.example", "check_interval_s": 0},
        {
            "url": "https://a.example",
            "maintenance": [{"start": "2026-11-02T00:00:00Z", "end": "2026-11-01T00:00:00Z"}],
        },
        {
            "url": "https://a.example",
            "maintenance": [{"start": "2026-02-30T00:00:00Z", "end": "2026-03-01T00:00:00Z"}],
        },
        [1, 2],
        "just a string",
    ],
)
async def test_invalid_sites_record_is_422_and_audited_as_refused(api: LiveApi, body: Any) -> None:
    status, problem, resp = await api.request("PUT", "/api/v1/sites/501", who="writer", json=body)
    assert status == 422, problem
    assert resp.content_type == "application/problem+json"
    audit = api.sql(
        "SELECT outcome, status FROM sitewatch_api_audit WHERE path = '/api/v1/sites/501'"
    )
    assert audit[-1] == {"outcome": "refused", "status": 422}


async def test_unparseable_body_is_422(api: LiveApi) -> None:
    status, _, _ = await api.request(
        "PUT",
        "/api/v1/sites/502",
        who="writer",
        data=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert status == 422


async def test_pause_resume_delete_publish_the_record_active_false_true_and_a_tombstone(
    api: LiveApi,
) -> None:
    await seed(api.db_url, sites=[site_row(600, check_interval_s=45, keyword="ok")])
    status, paused, _ = await api.request("POST", "/api/v1/sites/600/pause", who="writer")
    assert status == 202 and paused["value"]["active"] is False
    assert paused["value"]["check_interval_s"] == 45 and paused["value"]["keyword"] == "ok"
    status, resumed, _ = await api.request("POST", "/api/v1/sites/600/resume", who="writer")
    assert status == 202 and resumed["value"]["active"] is True
    status, deleted, _ = await api.request("DELETE", "/api/v1/sites/600", who="writer")
    assert status == 202 and deleted["value"] is None
    rows = [r for r in await read_all(api.bootstrap, api.names.sites, want=3) if r[0] == b"600"]
    assert [None if v is None else json.loads(v)["active"] for _, v, _, _ in rows] == [
        False,
        True,
        None,
    ]
    assert (await api.request("POST", "/api/v1/sites/601/pause", who="writer"))[0] == 404


async def test_close_publishes_close_event_with_the_key_name_as_actor(api: LiveApi) -> None:
    await seed(
        api.db_url,
        sites=[site_row(700)],
        events=[
            event_row("open700", 700, "2026-11-20T00:00:00.000Z"),
            event_row("done700", 700, "2026-11-19T00:00:00.000Z", "2026-11-19T01:00:00.000Z"),
        ],
    )
    status, out, _ = await api.request(
        "POST", "/api/v1/events/open700/close", who="writer", json={"note": "known issue"}
    )
    assert status == 202, out
    assert out["topic"] == api.names.check_results and out["key"] == "700"
    rows = [
        r for r in await read_all(api.bootstrap, api.names.check_results, want=1) if r[0] == b"700"
    ]
    command = records.input_decoder.decode(rows[-1][1])
    assert isinstance(command, records.Command)
    assert command.command == "close_event" and command.event_id == "open700"
    assert command.actor == "writer" and command.note == "known issue"
    assert command.command_id == out["command_id"]
    # without a body too; a closed event is a conflict, an unknown one 404
    assert (await api.request("POST", "/api/v1/events/open700/close", who="writer"))[0] == 202
    assert (await api.request("POST", "/api/v1/events/done700/close", who="writer"))[0] == 409
    assert (await api.request("POST", "/api/v1/events/nope/close", who="writer"))[0] == 404
    bad = await api.request("POST", "/api/v1/events/open700/close", who="writer", json={"x": 1})
    assert bad[0] == 422
    audit = api.sql(
        "SELECT key_name, outcome, detail FROM sitewatch_api_audit"
        " WHERE route = 'POST /api/v1/events/{event_id}/close' ORDER BY id"
    )
    assert [a["outcome"] for a in audit[-5:]] == [
        "accepted",
        "accepted",
        "refused",
        "refused",
        "refused",
    ]


async def test_every_write_is_audited_even_when_refused_for_auth(api: LiveApi) -> None:
    await api.request("DELETE", "/api/v1/sites/800")
    await api.request("DELETE", "/api/v1/sites/800", who="reader")
    rows = api.sql(
        "SELECT key_name, outcome, status FROM sitewatch_api_audit WHERE path = '/api/v1/sites/800'"
        " ORDER BY id"
    )
    assert rows == [
        {"key_name": None, "outcome": "unauthorized", "status": 401},
        {"key_name": "reader", "outcome": "forbidden", "status": 403},
    ]
    # reads are not audited
    await api.request("GET", "/api/v1/sites/800", who="reader")
    assert len(api.sql("SELECT id FROM sitewatch_api_audit WHERE path = '/api/v1/sites/800'")) == 2


async def test_webhooks_create_list_deliveries_delete(api: LiveApi) -> None:
    status, created, _ = await api.request(
        "POST",
        "/api/v1/webhooks",
        who="admin",
        json={"url": "https://hooks.example/x", "site_id": 5},
    )
    assert status == 201, created
    assert len(created["secret"]) >= 32 and created["secret_sealed"] is True
    stored = api.sql(
        "SELECT secret FROM sitewatch_webhook_subscriptions WHERE id = %s", created["id"]
    )
    assert (
        stored[0]["secret"].startswith("enc:v1:") and created["secret"] not in stored[0]["secret"]
    )
    hooks = [h for p in await pages(api, "/api/v1/webhooks", who="admin") for h in p]
    mine = [h for h in hooks if h["id"] == created["id"]]
    assert mine and "secret" not in mine[0] and mine[0]["site_id"] == 5
    deliveries = await pages(api, f"/api/v1/webhooks/{created['id']}/deliveries", who="admin")
    assert deliveries == [[]]
    assert (await api.request("POST", "/api/v1/webhooks", who="admin", json={"url": "ftp://x"}))[
        0
    ] == 422
    assert (await api.request("DELETE", f"/api/v1/webhooks/{created['id']}", who="admin"))[0] == 204
    assert (await api.request("DELETE", f"/api/v1/webhooks/{created['id']}", who="admin"))[0] == 404
    assert (await api.request("GET", f"/api/v1/webhooks/{created['id']}/deliveries", who="admin"))[
        0
    ] == 404


async def test_metrics_count_requests_by_route_template_and_status(api: LiveApi) -> None:
    await api.request("GET", "/api/v1/sites/123456", who="reader")
    status, text, _ = await api.request("GET", "/metrics")
    assert status == 200
    assert (
        'sitewatch_api_requests_total{method="GET",route="/api/v1/sites/{site_id}",status="404"}'
        in text
    )
    assert "sitewatch_api_request_duration_seconds_bucket" in text
    assert "/api/v1/sites/123456" not in text


async def test_health_says_ok_with_database_and_kafka(api: LiveApi) -> None:
    status, body, _ = await api.request("GET", "/api/v1/health")
    assert (status, body) == (200, {"status": "ok", "database": "ok", "kafka": "ok"})


async def test_webhook_to_a_loopback_or_metadata_address_is_refused(api: LiveApi) -> None:
    for url in (
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest",
        "http://u:p@a.example/",
    ):
        status, problem, _ = await api.request(
            "POST", "/api/v1/webhooks", who="admin", json={"url": url}
        )
        assert status == 422, (url, problem)


async def test_pause_opens_sealed_header_values_and_refuses_values_never_stored(
    api: LiveApi,
) -> None:
    from sitewatch.crypto import SecretBox, parse_keys

    box = SecretBox(parse_keys(api.env["SITEWATCH_SECRET_KEY"]))
    await seed(
        api.db_url,
        sites=[
            site_row(900, custom_headers={"X-Token": box.seal("s3cret")}),
            site_row(901, custom_headers={"X-Token": "<not stored>"}),
        ],
    )
    status, out, _ = await api.request("POST", "/api/v1/sites/900/pause", who="writer")
    assert status == 202, out
    assert out["value"]["custom_headers"] == {"X-Token": "s3cret"}
    status, problem, _ = await api.request("POST", "/api/v1/sites/901/pause", who="writer")
    assert status == 409 and "PUT the whole record" in problem["detail"]
