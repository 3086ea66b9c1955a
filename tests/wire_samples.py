"""Records as other teams' producers may write them: the compatibility variants.

For each record type: `minimal` (required fields only), `nulls` (the minimal record with
every optional field `null`) and `extra` (every field set, plus fields we do not know).
The variants are built from the record classes themselves, so a new optional field is
covered without touching the tests.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import msgspec
import msgspec.inspect as mi

from sitewatch.streams import records


class Variant(enum.StrEnum):
    MINIMAL = "minimal"
    NULLS = "nulls"
    EXTRA = "extra"


T0 = "2026-11-26T10:00:00.000Z"

#: every field of each record type set (the `extra` variant starts from these)
FULL: dict[type[msgspec.Struct], dict[str, Any]] = {
    records.SiteRecord: {
        "schema_version": 1,
        "site_id": 7,
        "url": "http://127.0.0.1:9/",
        "active": True,
        "check_interval_s": 60,
        "timeout_s": 5,
        "recheck_interval_s": 10,
        "num_of_checks": 2,
        "peer_offline_limit": 2,
        "verify_timeout_s": 9,
        "keyword": "ok",
        "redirect_policy": "follow",
        "custom_headers": {"X-Team": "a"},
        "alert_cooldown_minutes": 5,
        "maintenance": [{"start": "2026-01-01T00:00:00.000Z", "end": "2026-01-01T01:00:00.000Z"}],
        "checks": ["http"],
    },
    records.CheckResult: {
        "kind": "result",
        "schema_version": 1,
        "result_id": "r-1",
        "site_id": 7,
        "endpoint_id": 3,
        "check_type": "http",
        "role": "primary",
        "probe": "outside",
        "request_id": None,
        "ok": False,
        "observed_at": T0,
        "http_status": 503,
        "error": "http_status",
        "error_cause": None,
        "timings_ms": {"dns": 1.0, "tcp": 2.0, "tls": None, "ttfb": 4.0, "total": 5.0},
        "tls_not_after": None,
        "detail": "HTTP 503",
    },
    records.Command: {
        "kind": "command",
        "schema_version": 1,
        "command_id": "c-1",
        "site_id": 7,
        "command": "close_event",
        "event_id": "e-1",
        "actor": "ops",
        "issued_at": T0,
        "note": "done",
    },
    records.VerifyRequest: {
        "schema_version": 1,
        "request_id": "q-1",
        "site_id": 7,
        "endpoint_id": None,
        "check_type": "http",
        "event_id": "e-1",
        "url": "http://127.0.0.1:9/",
        "timeout_s": 2,
        "keyword": None,
        "redirect_policy": "follow",
        "custom_headers": None,
        "requested_at": T0,
    },
    records.Transition: {
        "schema_version": 1,
        "transition_id": "t-1",
        "event_id": "e-1",
        "site_id": 7,
        "endpoint_id": None,
        "check_type": "http",
        "discriminator": "",
        "seq": 1,
        "reason": "opened",
        "state_before": "up",
        "state_after": "seems_down",
        "severity_before": 0,
        "severity_after": 3,
        "started_at": T0,
        "ended_at": None,
        "resolution_reason": None,
        "cause_event_id": None,
        "at": T0,
        "source": "local",
        "metadata": {"probe": "outside"},
    },
}

UNKNOWN: dict[str, Any] = {
    "added_by_a_newer_producer": {"nested": [1, 2, 3]},
    "trace_id": "abc",
    "schema_minor": 7,
}


def _fields(cls: type[msgspec.Struct]) -> tuple[mi.Field, ...]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return info.fields


def required(cls: type[msgspec.Struct]) -> set[str]:
    return {f.encode_name for f in _fields(cls) if f.required}


def optional(cls: type[msgspec.Struct]) -> set[str]:
    return {f.encode_name for f in _fields(cls) if not f.required}


def variant(cls: type[msgspec.Struct], which: Variant, **overrides: Any) -> dict[str, Any]:
    """The record of `cls` as `which` (a JSON object); `overrides` are always set."""
    full = {**FULL[cls], **overrides}
    keep = required(cls) | {"kind"} | set(overrides)  # kind: a check-results union tag
    minimal = {k: v for k, v in full.items() if k in keep}
    if which is Variant.MINIMAL:
        return minimal
    if which is Variant.NULLS:
        return {**minimal, **dict.fromkeys(optional(cls) - set(overrides))}
    return {**full, **UNKNOWN}


def wire(obj: dict[str, Any]) -> bytes:
    """As an outside producer would send it: plain json, keys in its own order."""
    return json.dumps(obj).encode()
