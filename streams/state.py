"""Lifecycle state and the per-site settings the core reads; the results the driver
parks until a site's settings arrive, stored apart from the state (`stores.ParkedStore`).

Everything here is plain data (msgspec Structs, msgpack on the changelog), kept lean:
the state of a healthy site is one small entry per check tuple.
"""

from __future__ import annotations

from typing import Final

import msgspec

from . import records, timefmt
from .enums import CheckType, EventState, RedirectPolicy, Severity

#: how many effect-producing inputs a site remembers for re-emission after a crash
OUTBOX_SIZE: Final = 32
#: and for how long (stream time): redeliveries come within one commit interval, or,
#: where a changelog may be ahead of the outputs (Tansu, ADR 6), within the worker's
#: batches in flight, which a backlog can stretch over many minutes of stream time
OUTBOX_HORIZON_MS: Final = 30 * 60 * 1000
#: encoded bytes the outbox keeps at most (the newest entry is always kept)
OUTBOX_MAX_BYTES: Final = 128 * 1024
#: rule 8 marks a site keeps (one per check tuple); the oldest idle one makes room
MAX_MARKS: Final = 128
#: result ids remembered per mark (results sharing one `observed_at`)
MAX_MARK_IDS: Final = 8
#: open events per site; a failure of yet another tuple then opens nothing
MAX_OPEN_EVENTS: Final = 64


#: a `sites` record with only what it requires: its defaults are SiteConfig's
_DEFAULT: Final = records.SiteRecord(site_id=1, url="https://example.invalid/")
#: what a SiteConfig takes from its `sites` record as it is
_AS_RECORDED: Final = (
    "site_id",
    "url",
    "active",
    "timeout_s",
    "num_of_checks",
    "peer_offline_limit",
    "keyword",
    "redirect_policy",
)


class SiteConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What the core needs from a `sites` record, with times pre-parsed."""

    site_id: int
    url: str
    active: bool = _DEFAULT.active
    timeout_s: int = _DEFAULT.timeout_s
    num_of_checks: int = _DEFAULT.num_of_checks
    peer_offline_limit: int = _DEFAULT.peer_offline_limit
    verify_timeout_ms: int = _DEFAULT.effective_verify_timeout_s * 1000
    keyword: str | None = _DEFAULT.keyword
    redirect_policy: RedirectPolicy = _DEFAULT.redirect_policy
    #: whether verifiers should use the site's custom headers; the values themselves
    #: never reach the worker's state (verifiers read them from `sites`)
    has_custom_headers: bool = False
    #: (start_ms, end_ms) half-open windows
    maintenance: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_record(cls, rec: records.SiteRecord) -> SiteConfig:
        return cls(
            **{name: getattr(rec, name) for name in _AS_RECORDED},
            verify_timeout_ms=rec.effective_verify_timeout_s * 1000,
            has_custom_headers=bool(rec.custom_headers),
            maintenance=tuple(
                (timefmt.to_ms(w.start), timefmt.to_ms(w.end)) for w in rec.maintenance
            ),
        )

    def in_maintenance(self, at_ms: int) -> bool:
        """The one maintenance check, shared by the event path and notifications."""
        return any(start <= at_ms < end for start, end in self.maintenance)


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """Deployment-wide lifecycle settings (SITEWATCH_VERIFIERS and friends)."""

    verifiers: tuple[str, ...] = ()
    auto_timeout_ms: int = 24 * 3600 * 1000


class Verification(msgspec.Struct, kw_only=True, array_like=True):
    request_id: str
    requested_at: int
    deadline: int
    asked: int
    #: verifier name -> its first answer's `ok`
    answers: dict[str, bool] = msgspec.field(default_factory=dict)


class TrackedEvent(msgspec.Struct, kw_only=True, array_like=True):
    event_id: str
    endpoint_id: int | None
    check_type: CheckType
    discriminator: str
    state: EventState
    severity: Severity
    started_at: int
    seq: int
    last_input_at: int
    fail_count: int = 0
    cause_event_id: str | None = None
    verification: Verification | None = None
    verified: bool = False

    @property
    def started_at_wire(self) -> str:
        return timefmt.from_ms(self.started_at)


class TupleMark(msgspec.Struct, kw_only=True, array_like=True):
    """Rule 8: the newest input time applied for a tuple, and the ids seen at it.

    An exact duplicate carries the same `observed_at` as its original, and anything
    older is ignored by time alone, so the ids at the newest time are enough. The time
    is kept as the wire stamp: canonical stamps compare as strings, unparsed.
    """

    stamp: str
    ids: list[str]


class Emitted(msgspec.Struct, kw_only=True, array_like=True):
    """What one input produced, kept to re-emit it if that input is redelivered."""

    position: int
    at: int
    #: encoded records: cheap to keep in the changelog, decoded only on redelivery
    transitions: list[bytes]
    verify_requests: list[bytes]


class Parked(msgspec.Struct, kw_only=True, array_like=True):
    """A result held until its site's settings arrive: the driver's, never in the
    core's state (see `processor`)."""

    position: int
    value: bytes
    #: the result's own time: parked results expire on stream time
    at: int = 0


class LifecycleState(msgspec.Struct, kw_only=True, array_like=True):
    #: tuple key -> the open event of that tuple
    open: dict[str, TrackedEvent] = msgspec.field(default_factory=dict)
    marks: dict[str, TupleMark] = msgspec.field(default_factory=dict)
    #: position (partition offset) of the last input applied; -1 before any
    position: int = -1
    outbox: list[Emitted] = msgspec.field(default_factory=list)
    #: shell bookkeeping: stream time the site was deleted at (None: not deleted; the
    #: state is purged once its events are closed and its outbox has aged out)
    deleted_at: int | None = None


#: check type -> endpoint id -> the key of its tuple without a discriminator (the
#: common case), built once: two plain dict lookups instead of formatting a string
PLAIN_KEYS: dict[CheckType, dict[int | None, str]] = {t: {} for t in CheckType}


def tuple_key(endpoint_id: int | None, check_type: CheckType, discriminator: str = "") -> str:
    """`endpoint|check_type|discriminator` (the event tuple, `endpoint_id or 0`)."""
    if discriminator:
        return f"{endpoint_id or 0}|{check_type.value}|{discriminator}"
    by_endpoint = PLAIN_KEYS[check_type]
    key = by_endpoint.get(endpoint_id)
    if key is None:
        if len(by_endpoint) > 100_000:
            by_endpoint.clear()  # endless endpoint ids: bounded all the same
        key = by_endpoint[endpoint_id] = f"{endpoint_id or 0}|{check_type.value}|"
    return key


class _WithParked(msgspec.Struct, kw_only=True, array_like=True):
    """A state as versions before the parked store wrote it: `parked` in fifth place."""

    open: dict[str, TrackedEvent]
    marks: dict[str, TupleMark]
    position: int
    outbox: list[Emitted]
    parked: list[Parked]
    deleted_at: int | None


_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(LifecycleState)
_with_parked_decoder = msgspec.msgpack.Decoder(_WithParked)
_parked_decoder = msgspec.msgpack.Decoder(list[Parked])


def dump_state(state: LifecycleState) -> bytes:
    return _encoder.encode(state)


def load_state(data: bytes) -> LifecycleState:
    return _state_decoder.decode(data)


def load_stored_state(data: bytes) -> tuple[LifecycleState, list[Parked]]:
    """A stored state, and the results parked in it if an older version wrote it.

    Array-like: the old layout's fifth field is the parked list where the new one has
    `deleted_at`, so the current decoder refuses every old state (never misreads one)
    and only those pay for the second decode."""
    try:
        return _state_decoder.decode(data), []
    except msgspec.ValidationError:
        old = _with_parked_decoder.decode(data)
    state = LifecycleState(
        open=old.open,
        marks=old.marks,
        position=old.position,
        outbox=old.outbox,
        deleted_at=old.deleted_at,
    )
    return state, old.parked


def dump_parked(parked: list[Parked]) -> bytes:
    return _encoder.encode(parked)


def load_parked(data: bytes) -> list[Parked]:
    return _parked_decoder.decode(data)
