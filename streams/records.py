"""The wire contract (docs/contract.md): one msgspec Struct per record, JSON on the wire.

Strict in what we write, liberal in what we read. Writers build these Structs, so what
we emit always has every field with its type. Readers (`Reader`, one per topic) take
what other teams' producers send as well: an optional field that is absent or `null`
takes its default, an unknown extra field is ignored, and the error kinds that older
probes wrote (`refused`, `nxdomain`, ...) read as their class plus `error_cause`.
Decoding validates types, enums, timestamps and the sizes the database columns hold in
one pass (`decode_*` also bound the whole value); anything still invalid after that, and
any exception a reader gets (a `RecursionError` from a deeply nested value, ...), makes
the record poison for the dead-letter topic.

What a field admits (sizes, lengths, timestamp formats) is in `limits`, the lenient
second pass of the readers in `lenient`, the message keys in `keys`; the names the rest
of the code uses are all read from here.

The JSON Schema files under `schemas/` are generated from these classes
(`python -m sitewatch.streams.schemas_gen`) and checked in tests, so the files
downstream consumers read never drift from the code.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec

from .enums import (
    LEGACY_ERROR_KINDS,
    SEVERITY_OF,
    CheckType,
    CommandKind,
    ErrorKind,
    EventState,
    Reason,
    RedirectPolicy,
    Role,
)

# `records` is where the rest of the code reads these from ("as": re-exported)
from .keys import headers_ref as headers_ref
from .keys import parse_site_key as parse_site_key
from .keys import site_key as site_key
from .lenient import Fixups
from .lenient import Reader as Reader
from .limits import (
    MAX_ACTOR,
    CertificateTime,
    EndpointId,
    ErrorCauseText,
    EventId,
    Headers,
    Id,
    Keyword,
    Millis,
    Name,
    NonNegativeInt,
    Offset,
    PositiveInt,
    SeverityNumber,
    SiteId,
    Text,
    Url,
)
from .limits import MAX_METADATA_DEPTH as MAX_METADATA_DEPTH
from .limits import MAX_NAME as MAX_NAME
from .limits import Timestamp as Timestamp

SCHEMA_VERSION: Final = 1
#: how the `Reader`s take what other producers write (see the module docstring)
LIBERAL: Final = (
    "Read liberally: an absent or null optional field takes its default, an unknown\n"
    "field is ignored."
)

#: largest value a reader decodes, per record type (checked before decoding)
MAX_SITE_BYTES: Final = 64 * 1024
MAX_INPUT_BYTES: Final = 16 * 1024
MAX_VERIFY_REQUEST_BYTES: Final = 16 * 1024
MAX_TRANSITION_BYTES: Final = 64 * 1024


class Record(msgspec.Struct, kw_only=True):
    schema_version: Literal[1] = 1


R = TypeVar("R", bound=Record)


def _read_liberally(cls: type[R]) -> type[R]:
    """A record that other teams' producers write too: its docstring (and so its JSON
    Schema description) says how it is read."""
    cls.__doc__ = f"{inspect.cleandoc(cls.__doc__ or '')}\n\n{LIBERAL}"
    return cls


class MaintenanceWindow(msgspec.Struct, kw_only=True):
    start: Timestamp
    end: Timestamp


@_read_liberally
class SiteRecord(Record, kw_only=True):
    """Value of the compacted `sites` topic (a null value deletes the site)."""

    site_id: SiteId
    url: Url
    active: bool = True
    check_interval_s: PositiveInt = 300
    timeout_s: PositiveInt = 10
    recheck_interval_s: PositiveInt = 30
    num_of_checks: PositiveInt = 3
    peer_offline_limit: PositiveInt = 3
    verify_timeout_s: PositiveInt | None = None
    keyword: Keyword | None = None
    redirect_policy: RedirectPolicy = RedirectPolicy.FOLLOW
    #: sent only to the origin of `url` (never to another host, never over https -> http)
    custom_headers: Headers | None = None
    alert_cooldown_minutes: NonNegativeInt = 30
    maintenance: Annotated[list[MaintenanceWindow], msgspec.Meta(max_length=100)] = msgspec.field(
        default_factory=list
    )
    checks: Annotated[list[CheckType], msgspec.Meta(max_length=16)] = msgspec.field(
        default_factory=lambda: [CheckType.HTTP]
    )

    @property
    def effective_verify_timeout_s(self) -> int:
        return self.verify_timeout_s if self.verify_timeout_s is not None else self.timeout_s + 5


class Timings(msgspec.Struct, kw_only=True, omit_defaults=True):
    dns: Millis | None = None
    tcp: Millis | None = None
    tls: Millis | None = None
    ttfb: Millis | None = None
    total: Millis | None = None


@_read_liberally
class CheckResult(Record, kw_only=True, tag="result", tag_field="kind"):
    """One observation by a probe (`primary`) or a verifier (answering `request_id`)."""

    result_id: Id
    site_id: SiteId
    endpoint_id: EndpointId | None = None
    check_type: CheckType
    role: Role = Role.PRIMARY
    probe: Name = ""
    request_id: Id | None = None
    ok: bool
    observed_at: Timestamp
    http_status: Annotated[int, msgspec.Meta(ge=0, le=999)] | None = None
    error: ErrorKind = ErrorKind.NONE
    timings_ms: Timings | None = None
    tls_not_after: CertificateTime | None = None
    detail: Text | None = None
    error_cause: ErrorCauseText | None = None


@_read_liberally
class Command(Record, kw_only=True, tag="command", tag_field="kind"):
    """An operator's instruction, ordered with the results of its site."""

    command_id: Id
    site_id: SiteId
    command: CommandKind
    event_id: EventId
    actor: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ACTOR)]
    issued_at: Timestamp
    note: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class Tick(Record, kw_only=True, tag="tick", tag_field="kind"):
    """Stream clock for one partition: lets time-based rules fire without a result.

    Published by workers to the partitions they own; `at` is the only time a tick
    carries, so a replay of the topic fires the same timeouts at the same moments.
    """

    tick_id: Id
    partition: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
    at: Timestamp


CheckInput = CheckResult | Command | Tick


@_read_liberally
class VerifyRequest(Record, kw_only=True):
    """The worker asks every verifier location to check one failing site."""

    request_id: Id
    site_id: SiteId
    endpoint_id: EndpointId | None = None
    check_type: CheckType
    event_id: EventId
    url: Url
    timeout_s: PositiveInt = 10  # the site default, for requests from other producers
    keyword: Keyword | None = None
    redirect_policy: RedirectPolicy = RedirectPolicy.FOLLOW
    #: deprecated (values on the wire): still honoured, to the origin of `url` only
    custom_headers: Headers | None = None
    #: `sites:<site_id>`: use the custom headers of the site's own `sites` record, which
    #: the verifier reads itself, sent only to that record's origin
    headers_ref: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    requested_at: Timestamp


@_read_liberally
class Transition(Record, kw_only=True):
    """One change to one event: a record of `site-events`, the canonical history."""

    transition_id: Id
    event_id: EventId
    site_id: SiteId
    endpoint_id: EndpointId | None = None
    check_type: CheckType
    discriminator: Annotated[str, msgspec.Meta(max_length=128)] = ""
    seq: PositiveInt
    reason: Reason
    state_before: EventState
    state_after: EventState
    severity_before: SeverityNumber
    severity_after: SeverityNumber | None
    started_at: Timestamp
    ended_at: Timestamp | None = None
    resolution_reason: Reason | None = None
    cause_event_id: EventId | None = None
    at: Timestamp
    source: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    #: nested at most MAX_METADATA_DEPTH deep (checked by `decode_transition`)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


def _depth(value: Any) -> int:
    """Nesting depth of a decoded JSON value, without recursion (it may be deep)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_METADATA_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in node)
    return deepest


class DeadLetter(Record, kw_only=True):
    """What a consumer could not use, with why.

    `value` holds at most a prefix of the original (UTF-8, or base64 when the prefix is
    not UTF-8), with secret-bearing fields (`custom_headers`) taken out; `value_size` and
    `value_sha256` identify the original bytes, which stay at `topic/partition/offset`.
    """

    topic: str
    partition: NonNegativeInt
    offset: Offset
    key: str | None
    value: str | None
    value_encoding: Literal["utf-8", "base64"] = "utf-8"
    error: str
    consumer: str
    at: Timestamp
    #: bytes of the original value (None for a null value)
    value_size: NonNegativeInt | None = None
    value_sha256: str | None = None
    #: `value` is a prefix (the original was longer)
    value_truncated: bool = False
    #: `value` had secret-bearing fields taken out
    value_redacted: bool = False


# One encoder for every record: dict keys sorted, so equal records are equal bytes.
_encoder = msgspec.json.Encoder(order="deterministic")


def _endpoint_zero_is_null(raw: dict[str, Any]) -> None:
    # the event tuple reads `endpoint_id or 0`: 0 is the site itself, like null
    if raw.get("endpoint_id") == 0:
        raw["endpoint_id"] = None


def _fix_result(raw: dict[str, Any]) -> None:
    _endpoint_zero_is_null(raw)
    error = raw.get("error")
    legacy = LEGACY_ERROR_KINDS.get(error) if isinstance(error, str) else None
    if legacy is not None:
        kind, cause = legacy
        raw["error"] = kind.value
        if raw.get("error_cause") is None:
            raw["error_cause"] = cause.value


def _severity_of(state: Any) -> int | None:
    try:
        return int(SEVERITY_OF[EventState(state)])
    except (ValueError, KeyError):
        return None  # resolved, or not a state: validation says so if it matters


def _fix_transition(raw: dict[str, Any]) -> None:
    _endpoint_zero_is_null(raw)
    # a severity a producer left out follows from its state (docs/lifecycle.md)
    if raw.get("severity_before") is None:
        derived = _severity_of(raw.get("state_before"))
        if derived is not None:
            raw["severity_before"] = derived
    raw.setdefault("severity_after", None)


def _finish_transition(tr: Transition) -> Transition:
    # null severity_after is right only on a close; on a live event it means "its state's"
    if tr.severity_after is None and tr.state_after is not EventState.RESOLVED:
        severity = SEVERITY_OF.get(tr.state_after)
        if severity is not None:
            tr.severity_after = int(severity)
    return tr


_FIXUPS: Final[Fixups] = {
    CheckResult: _fix_result,
    VerifyRequest: _endpoint_zero_is_null,
    Transition: _fix_transition,
}

site_decoder: Final[Reader[SiteRecord]] = Reader(SiteRecord, _FIXUPS)
input_decoder: Final[Reader[CheckInput]] = Reader(CheckInput, _FIXUPS)
verify_request_decoder: Final[Reader[VerifyRequest]] = Reader(VerifyRequest, _FIXUPS)
transition_decoder: Final[Reader[Transition]] = Reader(Transition, _FIXUPS, _finish_transition)
dead_letter_decoder: Final[Reader[DeadLetter]] = Reader(DeadLetter, _FIXUPS)


def encode(record: msgspec.Struct) -> bytes:
    return _encoder.encode(record)


def check_size(value: bytes, limit: int) -> None:
    """Refuse an oversized value before decoding it (a ValidationError, like any poison)."""
    if len(value) > limit:
        raise msgspec.ValidationError(f"value of {len(value)} bytes is over the {limit}-byte limit")


def decode_site(value: bytes) -> SiteRecord:
    check_size(value, MAX_SITE_BYTES)
    return site_decoder.decode(value)


def decode_input(value: bytes) -> CheckResult | Command | Tick:
    check_size(value, MAX_INPUT_BYTES)
    decoded: CheckResult | Command | Tick = input_decoder.decode(value)
    return decoded


def decode_verify_request(value: bytes) -> VerifyRequest:
    check_size(value, MAX_VERIFY_REQUEST_BYTES)
    return verify_request_decoder.decode(value)


def decode_transition(value: bytes) -> Transition:
    """A transition from a topic; metadata deeper than the database takes is refused here
    (the core's own transitions, decoded from its outbox, need no such check)."""
    check_size(value, MAX_TRANSITION_BYTES)
    tr = transition_decoder.decode(value)
    if tr.metadata and _depth(tr.metadata) > MAX_METADATA_DEPTH:
        raise msgspec.ValidationError(
            f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels - at `$.metadata`"
        )
    return tr


def keyed_site(key: bytes | None, value: bytes | None) -> tuple[int, SiteRecord | None]:
    """A `sites` message: the site id of its key and the site (None: a tombstone).
    Raises on poison: a key that is not a site id, a bad value, or one of another site."""
    site_id = parse_site_key(key)
    if value is None:
        return site_id, None
    site = decode_site(value)
    if site.site_id != site_id:
        raise ValueError(f"key {site_id} != site_id {site.site_id}")
    return site_id, site


def keyed_transition(key: bytes | None, value: bytes | None) -> Transition:
    """A `site-events` message's transition. Raises on poison: a null or bad value, or a
    key (when there is one) of another site."""
    if value is None:
        raise ValueError("null value on site-events")
    tr = decode_transition(value)
    if key is not None and key != site_key(tr.site_id):
        raise ValueError(f"key does not match site_id {tr.site_id}")
    return tr


DecodeError = msgspec.DecodeError
ValidationError = msgspec.ValidationError
