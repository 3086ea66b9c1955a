"""The wire contract (DESIGN.md): one msgspec Struct per record, JSON on the wire.

Decoding validates types, enums and timestamp shapes in one pass; anything that fails
is a poison record for the dead-letter topic. The JSON Schema files under `schemas/`
are generated from these classes (`python -m sitewatch.streams.schemas`) and checked
in tests, so the files downstream consumers read never drift from the code.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec

from .enums import (
    CheckType,
    CommandKind,
    ErrorKind,
    EventState,
    Reason,
    RedirectPolicy,
    Role,
)

SCHEMA_VERSION: Final = 1

Timestamp = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]00:00)$",
        description="ISO-8601 UTC; emitted with milliseconds: 2026-11-26T10:00:00.000Z",
    ),
]
SiteId = Annotated[int, msgspec.Meta(gt=0, description="positive site id; also the key")]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
Millis = Annotated[float, msgspec.Meta(ge=0)]


class Record(msgspec.Struct, kw_only=True):
    schema_version: Literal[1] = 1


class MaintenanceWindow(msgspec.Struct, kw_only=True):
    start: Timestamp
    end: Timestamp


class SiteRecord(Record, kw_only=True):
    """Value of the compacted `sites` topic (a null value deletes the site)."""

    site_id: SiteId
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    active: bool = True
    check_interval_s: PositiveInt = 300
    timeout_s: PositiveInt = 10
    recheck_interval_s: PositiveInt = 30
    num_of_checks: PositiveInt = 3
    peer_offline_limit: PositiveInt = 3
    verify_timeout_s: PositiveInt | None = None
    keyword: str | None = None
    redirect_policy: RedirectPolicy = RedirectPolicy.FOLLOW
    custom_headers: dict[str, str] | None = None
    alert_cooldown_minutes: NonNegativeInt = 30
    maintenance: list[MaintenanceWindow] = msgspec.field(default_factory=list)
    checks: list[CheckType] = msgspec.field(default_factory=lambda: [CheckType.HTTP])

    @property
    def effective_verify_timeout_s(self) -> int:
        return self.verify_timeout_s if self.verify_timeout_s is not None else self.timeout_s + 5


class Timings(msgspec.Struct, kw_only=True, omit_defaults=True):
    dns: Millis | None = None
    tcp: Millis | None = None
    tls: Millis | None = None
    ttfb: Millis | None = None
    total: Millis | None = None


class CheckResult(Record, kw_only=True, tag="result", tag_field="kind"):
    """One observation by a probe (`primary`) or a verifier (answering `request_id`)."""

    result_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    site_id: SiteId
    endpoint_id: PositiveInt | None = None
    check_type: CheckType
    role: Role = Role.PRIMARY
    probe: str = ""
    request_id: str | None = None
    ok: bool
    observed_at: Timestamp
    http_status: int | None = None
    error: ErrorKind = ErrorKind.NONE
    timings_ms: Timings | None = None
    tls_not_after: Timestamp | None = None
    detail: str | None = None


class Command(Record, kw_only=True, tag="command", tag_field="kind"):
    """An operator's instruction, ordered with the results of its site."""

    command_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    site_id: SiteId
    command: CommandKind
    event_id: str
    actor: Annotated[str, msgspec.Meta(min_length=1)]
    issued_at: Timestamp
    note: str | None = None


class Tick(Record, kw_only=True, tag="tick", tag_field="kind"):
    """Stream clock for one partition: lets time-based rules fire without a result.

    Published by workers to the partitions they own; `at` is the only time a tick
    carries, so a replay of the topic fires the same timeouts at the same moments.
    """

    tick_id: str
    partition: NonNegativeInt
    at: Timestamp


CheckInput = CheckResult | Command | Tick


class VerifyRequest(Record, kw_only=True):
    request_id: str
    site_id: SiteId
    endpoint_id: PositiveInt | None = None
    check_type: CheckType
    event_id: str
    url: str
    timeout_s: PositiveInt
    keyword: str | None = None
    redirect_policy: RedirectPolicy = RedirectPolicy.FOLLOW
    custom_headers: dict[str, str] | None = None
    requested_at: Timestamp


class Transition(Record, kw_only=True):
    """One change to one event: a record of `site-events`, the canonical history."""

    transition_id: str
    event_id: str
    site_id: SiteId
    endpoint_id: PositiveInt | None = None
    check_type: CheckType
    discriminator: str = ""
    seq: PositiveInt
    reason: Reason
    state_before: EventState
    state_after: EventState
    severity_before: NonNegativeInt
    severity_after: NonNegativeInt | None
    started_at: Timestamp
    ended_at: Timestamp | None = None
    resolution_reason: Reason | None = None
    cause_event_id: str | None = None
    at: Timestamp
    source: str
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class DeadLetter(Record, kw_only=True):
    """What a consumer could not use, with why; value kept verbatim (or base64)."""

    topic: str
    partition: NonNegativeInt
    offset: NonNegativeInt
    key: str | None
    value: str | None
    value_encoding: Literal["utf-8", "base64"] = "utf-8"
    error: str
    consumer: str
    at: Timestamp


# One encoder for every record: dict keys sorted, so equal records are equal bytes.
_encoder = msgspec.json.Encoder(order="deterministic")

site_decoder: Final = msgspec.json.Decoder(SiteRecord)
input_decoder: Final = msgspec.json.Decoder(CheckInput)  # type: ignore[arg-type]
verify_request_decoder: Final = msgspec.json.Decoder(VerifyRequest)
transition_decoder: Final = msgspec.json.Decoder(Transition)
dead_letter_decoder: Final = msgspec.json.Decoder(DeadLetter)


def encode(record: msgspec.Struct) -> bytes:
    return _encoder.encode(record)


def site_key(site_id: int) -> bytes:
    """Message key of every per-site record: the decimal site id."""
    return str(site_id).encode()


DecodeError = msgspec.DecodeError
ValidationError = msgspec.ValidationError
