"""The wire contract: round trips, shipped JSON Schemas, rejection of bad records."""

from __future__ import annotations

import json

import jsonschema
import msgspec
import pytest

from sitewatch.streams import records, schemas_gen
from sitewatch.streams.enums import CheckType, EventState, Reason, RedirectPolicy

SAMPLES: dict[str, list[msgspec.Struct]] = {
    "sites.schema.json": [
        records.SiteRecord(site_id=1, url="https://a.test/"),
        records.SiteRecord(
            site_id=2,
            url="https://b.test/",
            active=False,
            keyword="ok",
            redirect_policy=RedirectPolicy.FAIL,
            custom_headers={"X-A": "1"},
            maintenance=[
                records.MaintenanceWindow(
                    start="2026-11-26T10:00:00.000Z", end="2026-11-26T11:00:00.000Z"
                )
            ],
            checks=[CheckType.HTTP, CheckType.TLS_EXPIRY],
        ),
    ],
    "check-results.schema.json": [
        records.CheckResult(
            result_id="r1",
            site_id=1,
            check_type=CheckType.HTTP,
            ok=True,
            observed_at="2026-11-26T10:00:00.000Z",
            http_status=200,
            timings_ms=records.Timings(dns=1.0, tcp=2.0, total=5.5),
        ),
        records.Command(
            command_id="c1",
            site_id=1,
            command="close_event",  # type: ignore[arg-type]
            event_id="e",
            actor="bob",
            issued_at="2026-11-26T10:00:00.000Z",
        ),
        records.Tick(tick_id="k", partition=3, at="2026-11-26T10:00:00.000Z"),
    ],
    "verify-requests.schema.json": [
        records.VerifyRequest(
            request_id="q",
            site_id=1,
            check_type=CheckType.HTTP,
            event_id="e",
            url="https://a.test/",
            timeout_s=10,
            requested_at="2026-11-26T10:00:00.000Z",
        ),
    ],
    "site-events.schema.json": [
        records.Transition(
            transition_id="t",
            event_id="e",
            site_id=1,
            check_type=CheckType.HTTP,
            seq=1,
            reason=Reason.OPENED,
            state_before=EventState.UP,
            state_after=EventState.SEEMS_DOWN,
            severity_before=0,
            severity_after=3,
            started_at="2026-11-26T10:00:00.000Z",
            at="2026-11-26T10:00:00.000Z",
            source="local",
            metadata={"probe": "p"},
        ),
    ],
    "dead-letter.schema.json": [
        records.DeadLetter(
            topic="x",
            partition=0,
            offset=1,
            key="1",
            value="{",
            error="bad",
            consumer="worker",
            at="2026-11-26T10:00:00.000Z",
        ),
    ],
}
DECODERS = {
    "sites.schema.json": records.site_decoder,
    "check-results.schema.json": records.input_decoder,
    "verify-requests.schema.json": records.verify_request_decoder,
    "site-events.schema.json": records.transition_decoder,
    "dead-letter.schema.json": records.dead_letter_decoder,
}


@pytest.mark.parametrize("name", sorted(schemas_gen.SCHEMAS))
def test_shipped_schema_matches_the_code(name: str) -> None:
    assert schemas_gen.load(name) == json.loads(schemas_gen.render(name)), (
        "schema files are stale: run `make schemas`"
    )


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_records_round_trip_and_validate(name: str) -> None:
    schema = schemas_gen.load(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    for rec in SAMPLES[name]:
        wire = records.encode(rec)
        assert json.loads(wire)["schema_version"] == 1
        jsonschema.validate(json.loads(wire), schema)
        assert DECODERS[name].decode(wire) == rec


@pytest.mark.parametrize(
    "wire",
    [
        b"{",
        b"[]",
        b'{"kind":"result"}',
        b'{"kind":"mystery","site_id":1}',
        b'{"kind":"result","result_id":"r","site_id":0,"check_type":"http","ok":true,'
        b'"observed_at":"2026-11-26T10:00:00.000Z"}',
        b'{"kind":"result","result_id":"r","site_id":1,"check_type":"gopher","ok":true,'
        b'"observed_at":"2026-11-26T10:00:00.000Z"}',
        b'{"kind":"result","result_id":"r","site_id":1,"check_type":"http","ok":true,'
        b'"observed_at":"yesterday"}',
        b'{"kind":"result","schema_version":2,"result_id":"r","site_id":1,'
        b'"check_type":"http","ok":true,"observed_at":"2026-11-26T10:00:00.000Z"}',
    ],
)
def test_malformed_or_unknown_input_is_rejected(wire: bytes) -> None:
    with pytest.raises((records.DecodeError, records.ValidationError)):
        records.input_decoder.decode(wire)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            json.loads(wire) if wire != b"{" else None,
            schemas_gen.load("check-results.schema.json"),
        )
