"""Hostile records for every topic: random bytes and JSON, and mutations of valid records.

Shared by the in-process fuzz tests and the end-to-end one (real processes, real broker).
`poison(topic, key, value)` is the oracle: whether the topic's readers must refuse a
record, by the wire contract alone (schemas, limits, keys).
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from hypothesis import strategies as st

from sitewatch.streams import records
from sitewatch.streams.enums import CheckType

T = "2026-11-26T10:00:00.000Z"

VALID: dict[str, list[msgspec.Struct]] = {
    "sites": [
        records.SiteRecord(site_id=5, url="http://127.0.0.1:9/"),
        records.SiteRecord(
            site_id=6,
            url="https://127.0.0.1:9/",
            keyword="ok",
            custom_headers={"Authorization": "Bearer s3cr3t"},
            maintenance=[records.MaintenanceWindow(start=T, end=T)],
        ),
    ],
    "check-results": [
        records.CheckResult(
            result_id="r",
            site_id=5,
            check_type=CheckType.HTTP,
            ok=False,
            observed_at=T,
        ),
        records.CheckResult(
            result_id="v",
            site_id=5,
            check_type="tls_expiry",  # type: ignore[arg-type]
            role="verifier",  # type: ignore[arg-type]
            probe="eu",
            request_id="q",
            ok=True,
            observed_at=T,
            tls_not_after=T,
            timings_ms=records.Timings(total=1.0),
        ),
        records.Command(
            command_id="c",
            site_id=5,
            command="close_event",  # type: ignore[arg-type]
            event_id="e",
            actor="alice",
            issued_at=T,
        ),
        records.Tick(tick_id="k", partition=0, at=T),
    ],
    "verify-requests": [
        records.VerifyRequest(
            request_id="q",
            site_id=5,
            check_type=CheckType.HTTP,
            event_id="e",
            url="http://127.0.0.1:9/",
            timeout_s=1,
            headers_ref="sites:5",
            requested_at=T,
        )
    ],
    "site-events": [
        records.Transition(
            transition_id="fuzz-t",
            event_id="fuzz-e",
            site_id=5,
            check_type=CheckType.HTTP,
            seq=2,
            reason="verifier_confirmed",  # type: ignore[arg-type]
            state_before="seems_down",  # type: ignore[arg-type]
            state_after="down",  # type: ignore[arg-type]
            severity_before=3,
            severity_after=4,
            started_at=T,
            at=T,
            source="verifier:eu",
            metadata={"answers": {"eu": False}},
        )
    ],
}

#: the decoder each topic's readers use, and whether a null value is a legal record
DECODE = {
    "sites": records.decode_site,
    "check-results": records.decode_input,
    "verify-requests": records.decode_verify_request,
    "site-events": records.decode_transition,
}
NULL_OK = {"sites"}


def poison(topic: str, key: bytes | None, value: bytes | None) -> bool:
    """Must every reader of `topic` dead-letter this record?"""
    if value is None:
        if topic not in NULL_OK:
            return True
        try:
            records.parse_site_key(key)
        except ValueError:
            return True
        return False
    try:
        rec = DECODE[topic](value)
    except Exception:
        return True
    site_id = getattr(rec, "site_id", None)
    if site_id is None:  # a tick: keyless
        return False
    if topic in ("sites", "check-results"):
        return key != records.site_key(site_id)
    if isinstance(rec, records.VerifyRequest) and rec.headers_ref not in (
        None,
        records.headers_ref(site_id),
    ):
        return True
    return key is not None and key != records.site_key(site_id)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int, base: bytes = b'{"x":') -> bytes:
    return base + b"[" * depth + b"]" * depth + b"}"


@st.composite
def mutated(draw: st.DrawFn, topic: str) -> bytes:
    """A valid record of `topic`, changed in one hostile way (it may stay valid)."""
    doc: dict[str, Any] = json.loads(records.encode(draw(st.sampled_from(VALID[topic]))))
    field = draw(st.sampled_from(sorted(doc)))
    how = draw(
        st.sampled_from(
            ["value", "drop", "long", "deep", "date", "number", "truncate", "unknown-deep"]
        )
    )
    if how == "value":
        doc[field] = draw(json_values)
    elif how == "drop":
        del doc[field]
    elif how == "long":
        doc[field] = "x" * draw(st.sampled_from([65, 129, 256, 1025, 2049, 5000]))
    elif how == "deep":
        doc[field] = json.loads("[" * 40 + "]" * 40)
    elif how == "date":
        doc[field] = draw(
            st.sampled_from(
                [
                    "2026-13-01T00:00:00Z",
                    "2026-02-30T00:00:00Z",
                    "0001-01-01T00:00:00Z",
                    "9999-12-31T23:59:59Z",
                ]
            )
        )
    elif how == "number":
        doc[field] = draw(st.sampled_from([-1, 0, 2**31, 2**63, 99, 1e300]))
    encoded = json.dumps(doc).encode()
    if how == "truncate":
        return encoded[: draw(st.integers(0, max(0, len(encoded) - 1)))]
    if how == "unknown-deep":
        return encoded[:-1] + b',"zz":' + b"[" * 3000 + b"]" * 3000 + b"}"
    return encoded


@st.composite
def extended(draw: st.DrawFn, topic: str) -> bytes:
    """A valid record with an unknown field: still valid, and must be processed."""
    doc: dict[str, Any] = json.loads(records.encode(draw(st.sampled_from(VALID[topic]))))
    doc[draw(st.sampled_from(["zz", "extra", "x_note"]))] = draw(json_values)
    return json.dumps(doc).encode()


def values(topic: str) -> st.SearchStrategy[bytes | None]:
    return st.one_of(
        extended(topic),
        st.binary(max_size=200),
        st.text(max_size=100).map(str.encode),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.integers(100, 5000).map(nested),
        mutated(topic),
        mutated(topic),
        mutated(topic),
        st.just(None),
    )


keys = st.one_of(
    st.just(b"5"),
    st.just(b"5"),
    st.just(b"6"),
    st.none(),
    st.sampled_from([b"05", b"-5", b"0", b"\xd9\xa5", b"9" * 30, b"5 "]),
    st.binary(max_size=8),
)


def hostile(topic: str) -> st.SearchStrategy[tuple[bytes | None, bytes | None]]:
    return st.tuples(keys, values(topic))
