"""The wire contract (DESIGN.md): one msgspec Struct per record, JSON on the wire.

Strict in what we write, liberal in what we read. Writers build these Structs, so what
we emit always has every field with its type. Readers (`Reader`, one per topic) take
what other teams' producers send as well: an optional field that is absent or `null`
takes its default, an unknown extra field is ignored, and the error kinds that older
probes wrote (`refused`, `nxdomain`, ...) read as their class plus `error_cause`.
Anything still invalid after that is a poison record for the dead-letter topic.

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
    """One observation by a probe (`primary`) or a verifier (answering `request_id`).

    Read liberally: an absent or null optional field takes its default, an unknown
    field is ignored.
    """

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
    error_cause: ErrorCauseText | None = None


class Command(Record, kw_only=True, tag="command", tag_field="kind"):
    """An operator's instruction, ordered with the results of its site.

    Read liberally: an absent or null optional field takes its default, an unknown
    field is ignored.
    """

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
    """The worker asks every verifier location to check one failing site.

    Read liberally: an absent or null optional field takes its default, an unknown
    field is ignored.
    """

    request_id: str
    site_id: SiteId
    endpoint_id: PositiveInt | None = None
    check_type: CheckType
    event_id: str
    url: str
    timeout_s: PositiveInt = 10  # SPEC.md's default, for requests from other producers
    keyword: str | None = None
    redirect_policy: RedirectPolicy = RedirectPolicy.FOLLOW
    custom_headers: dict[str, str] | None = None
    requested_at: Timestamp


class Transition(Record, kw_only=True):
    """One change to one event: a record of `site-events`, the canonical history.

    Read liberally: an absent or null optional field takes its default, an unknown
    field is ignored.
    """

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
    # a severity a producer left out follows from its state (SPEC.md's table)
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


DecodeError = msgspec.DecodeError
ValidationError = msgspec.ValidationError
