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

The JSON Schema files under `schemas/` are generated from these classes
(`python -m sitewatch.streams.schemas_gen`) and checked in tests, so the files
downstream consumers read never drift from the code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Final, Generic, Literal, TypeVar

import msgspec
import msgspec.inspect as mi

from .enums import (
    LEGACY_ERROR_KINDS,
    SEVERITY_OF,
    CheckType,
    CommandKind,
    ErrorCause,
    ErrorKind,
    EventState,
    Reason,
    RedirectPolicy,
    Role,
)

SCHEMA_VERSION: Final = 1

# -- limits ---------------------------------------------------------------------------
# Sizes and lengths match the database columns (sink/tables.py, migrations/) and keep one
# site's worker state well under the broker's 1 MiB message limit: a record over them is
# refused where it is read (a dead letter saying which field), never half-stored.

#: largest value a reader decodes, per record type (checked before decoding)
MAX_SITE_BYTES: Final = 64 * 1024
MAX_INPUT_BYTES: Final = 16 * 1024
MAX_VERIFY_REQUEST_BYTES: Final = 16 * 1024
MAX_TRANSITION_BYTES: Final = 64 * 1024
#: JSON nesting allowed in `metadata` (MariaDB refuses JSON nested 32 deep)
MAX_METADATA_DEPTH: Final = 16
#: signed 64-bit: BIGINT columns
MAX_BIGINT: Final = 2**63 - 1
#: signed 32-bit: INTEGER columns
MAX_INT: Final = 2**31 - 1
#: probe and verifier names; `verifier:<name>` must fit `source` (255)
MAX_NAME: Final = 64
#: operator names; `operator:<actor>` must fit `source` (255)
MAX_ACTOR: Final = 128


def _timestamp_pattern(years: str, leap_years: str) -> str:
    """ISO-8601 UTC that is a real calendar moment: month 1-12, the month's own days,
    29 February only in leap years. Anything this accepts parses, so no reader meets a
    `month must be in 1..12` after decoding."""
    month_day = (
        r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])"
        r"|(?:0[13-9]|1[0-2])-(?:29|30)"
        r"|(?:0[13578]|1[02])-31)"
    )
    clock = r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?(?:Z|[+-]00:00)"
    return f"^(?:{years}-{month_day}|{leap_years}-02-29){clock}$"


#: stream times (inputs, transitions): 1970 to 8999, so that deadlines computed from them
#: (plus any timeout) still format as a four-digit year
_STREAM_YEARS: Final = r"(?:19[7-9]\d|[2-8]\d{3})"
_STREAM_LEAP_YEARS: Final = (
    r"(?:19(?:7[26]|8[048]|9[26])|[2-8]\d(?:0[48]|[2468][048]|[13579][26])"
    r"|(?:[2468][048]|[357][26])00)"
)
#: certificate dates: X.509 uses 9999-12-31 for "no expiry"
_ANY_YEARS: Final = r"[1-9]\d{3}"
_ANY_LEAP_YEARS: Final = (
    r"(?:[1-9]\d(?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[13579][26])00)"
)

Timestamp = Annotated[
    str,
    msgspec.Meta(
        pattern=_timestamp_pattern(_STREAM_YEARS, _STREAM_LEAP_YEARS),
        description="ISO-8601 UTC (years 1970-8999); emitted with milliseconds: "
        "2026-11-26T10:00:00.000Z",
    ),
]
CertificateTime = Annotated[
    str,
    msgspec.Meta(
        pattern=_timestamp_pattern(_ANY_YEARS, _ANY_LEAP_YEARS),
        description="ISO-8601 UTC (years 1000-9999), a certificate's notAfter",
    ),
]
SiteId = Annotated[
    int, msgspec.Meta(gt=0, le=MAX_BIGINT, description="positive site id; also the key")
]
EndpointId = Annotated[int, msgspec.Meta(gt=0, le=MAX_BIGINT)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0, le=MAX_INT)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
Offset = Annotated[int, msgspec.Meta(ge=0, le=MAX_BIGINT)]
SeverityNumber = Annotated[int, msgspec.Meta(ge=0, le=4, description="0 up .. 4 down")]
Millis = Annotated[float, msgspec.Meta(ge=0)]
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Name = Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
Keyword = Annotated[str, msgspec.Meta(max_length=1024)]
Text = Annotated[str, msgspec.Meta(max_length=2048)]
#: an HTTP field name (RFC 9110 token) and a value without CR, LF or NUL
HeaderName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
]
HeaderValue = Annotated[str, msgspec.Meta(max_length=4096, pattern=r"^[^\r\n\x00]*$")]
Headers = Annotated[dict[HeaderName, HeaderValue], msgspec.Meta(max_length=32)]
#: free text, not an enum on the wire: a reader must not refuse a cause it does not know
ErrorCauseText = Annotated[
    str,
    msgspec.Meta(
        description="the finer cause behind `error` (which stays one of its classes); "
        "readers accept any value",
        examples=[c.value for c in ErrorCause],
    ),
]


class Record(msgspec.Struct, kw_only=True):
    schema_version: Literal[1] = 1


class MaintenanceWindow(msgspec.Struct, kw_only=True):
    start: Timestamp
    end: Timestamp


class SiteRecord(Record, kw_only=True):
    """Value of the compacted `sites` topic (a null value deletes the site).

    Read liberally: an absent or null optional field takes its default, an unknown
    field is ignored.
    """

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


class CheckResult(Record, kw_only=True, tag="result", tag_field="kind"):
    """One observation by a probe (`primary`) or a verifier (answering `request_id`).

    Read liberally: an absent or null optional field takes its default, an unknown
    field is ignored.
    """

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


class Command(Record, kw_only=True, tag="command", tag_field="kind"):
    """An operator's instruction, ordered with the results of its site.

    Read liberally: an absent or null optional field takes its default, an unknown
    field is ignored.
    """

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


class VerifyRequest(Record, kw_only=True):
    """The worker asks every verifier location to check one failing site.

    Read liberally: an absent or null optional field takes its default, an unknown
    field is ignored.
    """

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


class Transition(Record, kw_only=True):
    """One change to one event: a record of `site-events`, the canonical history.

    Read liberally: an absent or null optional field takes its default, an unknown
    field is ignored.
    """

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

T = TypeVar("T")


class Reader(Generic[T]):
    """Decodes one topic's records, liberally (module docstring).

    Our own records, and most others, take the strict decoder in one pass. Only a
    record it refuses is decoded again to plain JSON, cleaned up (`_lenient`) and
    validated by `msgspec.convert`, so leniency costs nothing on the common path and
    the error of a record that is invalid either way names the field at fault.
    """

    __slots__ = ("_finish", "_info", "_strict", "_type")

    def __init__(self, type_: Any, finish: Callable[[T], T] | None = None) -> None:
        self._type = type_
        self._strict: msgspec.json.Decoder[T] = msgspec.json.Decoder(type_)
        self._info = mi.type_info(type_)
        #: completes a decoded record from its other fields (both paths)
        self._finish = finish

    def decode(self, data: bytes | str) -> T:
        try:
            rec = self._strict.decode(data)
        except msgspec.ValidationError:
            return self.convert(msgspec.json.decode(data))
        return rec if self._finish is None else self._finish(rec)

    def convert(self, raw: Any) -> T:
        """Validate an already decoded JSON value (e.g. a `sites` record edited in place)."""
        rec: T = msgspec.convert(_lenient(raw, self._info), self._type)
        return rec if self._finish is None else self._finish(rec)


def _accepts_null(node: mi.Type) -> bool:
    if isinstance(node, mi.Metadata):
        node = node.type
    if isinstance(node, mi.NoneType):
        return True
    return isinstance(node, mi.UnionType) and any(_accepts_null(t) for t in node.types)


def _lenient(value: Any, node: mi.Type) -> Any:
    """`value` with what a liberal reader forgives made explicit (see `Reader`)."""
    if isinstance(node, mi.Metadata):
        node = node.type
    if isinstance(node, mi.StructType):
        return _lenient_struct(value, node) if isinstance(value, dict) else value
    if isinstance(node, mi.UnionType):
        structs = [t for t in node.types if isinstance(t, mi.StructType)]
        if isinstance(value, dict) and structs:
            for st in structs:  # a tagged union: the member its tag names
                if st.tag_field is None or value.get(st.tag_field) == st.tag:
                    return _lenient_struct(value, st)
            return value
        lists = [t for t in node.types if isinstance(t, mi.ListType)]
        if isinstance(value, list) and lists:
            return _lenient(value, lists[0])
        return value
    if isinstance(node, mi.ListType) and isinstance(value, list):
        return [_lenient(v, node.item_type) for v in value]
    return value


def _lenient_struct(value: dict[str, Any], node: mi.StructType) -> dict[str, Any]:
    out = dict(value)
    for f in node.fields:
        name = f.encode_name
        if name not in out:
            continue
        if out[name] is None:
            if not f.required and not _accepts_null(f.type):
                del out[name]  # null means "not given": the default applies
        else:
            out[name] = _lenient(out[name], f.type)
    fixup = _FIXUPS.get(node.cls)
    if fixup is not None:
        fixup(out)
    return out


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


_FIXUPS: Final[dict[type, Callable[[dict[str, Any]], None]]] = {
    CheckResult: _fix_result,
    VerifyRequest: _endpoint_zero_is_null,
    Transition: _fix_transition,
}

site_decoder: Final[Reader[SiteRecord]] = Reader(SiteRecord)
input_decoder: Final[Reader[CheckInput]] = Reader(CheckInput)
verify_request_decoder: Final[Reader[VerifyRequest]] = Reader(VerifyRequest)
transition_decoder: Final[Reader[Transition]] = Reader(Transition, _finish_transition)
dead_letter_decoder: Final[Reader[DeadLetter]] = Reader(DeadLetter)


def encode(record: msgspec.Struct) -> bytes:
    return _encoder.encode(record)


def site_key(site_id: int) -> bytes:
    """Message key of every per-site record: the decimal site id."""
    return str(site_id).encode()


def headers_ref(site_id: int) -> str:
    """A verify request's reference to the custom headers of its site's `sites` record."""
    return f"sites:{site_id}"


def parse_site_key(key: bytes | None) -> int:
    """The site id of a message key: canonical decimal only (`42`, not `042` or `٤٢`),
    so that a key the readers accept is the key the producers partition by."""
    if key is None or not 0 < len(key) <= 19 or not key.isdigit() or key[:1] == b"0":
        shown = key if key is None or len(key) <= 40 else key[:40] + b"..."
        raise ValueError(f"message key must be the decimal site id, got {shown!r}")
    site_id = int(key)
    if site_id > MAX_BIGINT:
        raise ValueError(f"site id {site_id} is out of range")
    return site_id


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
