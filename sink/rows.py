"""The sink's rows: `EventRow`, the event the fold works on, and the driver-ready tuples.

A tuple is in its table's column order below (EVENT_COLUMNS, TRANSITION_COLUMNS), JSON
already text and datetimes naive UTC, which is what `Tx.write_rows` sends (P4).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

import msgspec
import sqlalchemy as sa

from sitewatch.crypto import SecretBox
from sitewatch.streams import records, timefmt
from sitewatch.streams.message import ConsumedRecord

from . import tables as t

EVENT_COLUMNS = (
    "id",
    "site_id",
    "endpoint_id",
    "check_type",
    "discriminator",
    "state",
    "severity",
    "started_at",
    "ended_at",
    "resolution_reason",
    "cause_event_id",
    "metadata",
)
#: what a change of a stored event may touch (its tuple and start never change)
EVENT_UPDATE = ("state", "severity", "ended_at", "resolution_reason", "cause_event_id", "metadata")
TRANSITION_COLUMNS = (
    "transition_id",
    "event_id",
    "site_id",
    "seq",
    "reason",
    "state_before",
    "state_after",
    "severity_before",
    "severity_after",
    "source",
    "at",
    "metadata",
    "endpoint_id",
    "check_type",
    "discriminator",
    "started_at",
    "ended_at",
    "resolution_reason",
    "cause_event_id",
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
)

_Stored = tuple[
    str, int, int | None, str, str, str, int, datetime, datetime | None, str | None, str | None
]


@dataclass(slots=True)
class EventRow:
    id: str
    site_id: int
    endpoint_id: int | None
    check_type: str
    discriminator: str
    state: str
    severity: int
    started_at: datetime
    ended_at: datetime | None
    resolution_reason: str | None
    cause_event_id: str | None
    metadata: dict[str, Any] | None
    in_db: bool
    dirty: bool = False

    @property
    def tuple_key(self) -> tuple[int, int, str, str]:
        return (self.site_id, self.endpoint_id or 0, self.check_type, self.discriminator)

    def copy(self) -> EventRow:
        """A copy to fold on (`dataclasses.replace` costs several times more); metadata is
        never changed in place: a fold merges into a new dict."""
        return EventRow(*_STORED(self), self.metadata, self.in_db, self.dirty)

    def as_tuple(self) -> tuple[Any, ...]:
        """Values in EVENT_COLUMNS order, driver-ready."""
        return (*_STORED(self), json_text(self.metadata))


#: an EventRow's values of EVENT_COLUMNS but metadata (stored as JSON), read in C
_STORED: Callable[[EventRow], _Stored] = attrgetter(*EVENT_COLUMNS[:-1])


def event_columns() -> list[sa.Column[Any]]:
    """The columns of `jetmon_events` the sink reads, in EVENT_COLUMNS order."""
    return [c for c in t.events.c if c.name not in ("created_at", "open_key")]


# rows are read in EVENT_COLUMNS order, which is EventRow's: positional, no mapping
assert tuple(c.name for c in event_columns()) == EVENT_COLUMNS


def event_from_row(row: Sequence[Any]) -> EventRow:
    """A stored event, read with `event_columns()`."""
    (eid, site, endpoint, check, disc, state, severity, started, ended, why, cause, meta) = row
    return EventRow(
        eid, site, endpoint, check, disc, state, severity, started, ended, why, cause, meta, True
    )


def wire_time(stamp: str) -> datetime:
    """Wire timestamp -> naive UTC datetime at millisecond precision (DATETIME(3))."""
    if len(stamp) == 24 and stamp[-1] == "Z":  # the canonical form: parse it directly
        return datetime.fromisoformat(stamp[:-1])
    return timefmt.to_datetime(timefmt.to_ms(stamp))


_json_encoder = msgspec.json.Encoder(order="deterministic")


def json_text(value: Any) -> str | None:
    """JSON text for a JSON column written on the raw path (NULL for empty)."""
    return _json_encoder.encode(value).decode() if value else None


def transition_row(
    msg: ConsumedRecord, tr: records.Transition, at: datetime, started: datetime
) -> tuple[Any, ...]:
    """Values in TRANSITION_COLUMNS order, driver-ready."""
    return (
        tr.transition_id,
        tr.event_id,
        tr.site_id,
        tr.seq,
        str(tr.reason),
        str(tr.state_before),
        str(tr.state_after),
        tr.severity_before,
        tr.severity_after,
        tr.source,
        at,
        json_text(tr.metadata),
        tr.endpoint_id,
        str(tr.check_type),
        tr.discriminator,
        started,
        wire_time(tr.ended_at) if tr.ended_at else None,
        str(tr.resolution_reason) if tr.resolution_reason else None,
        tr.cause_event_id,
        msg.topic,
        msg.partition,
        msg.offset,
    )


#: a header value the sink did not store (no SITEWATCH_SECRET_KEY)
REDACTED_VALUE = "<not stored>"


def stored_headers(headers: dict[str, str] | None, secrets: SecretBox | None) -> Any:
    """What `custom_headers` holds in the database: names with sealed values, or with
    the values left out when no key is configured. Never the values in the clear."""
    if not headers:
        return None
    if secrets is None:
        return {name: REDACTED_VALUE for name in headers}
    return {name: secrets.seal(value) for name, value in headers.items()}


def site_row(site: records.SiteRecord, secrets: SecretBox | None = None) -> dict[str, Any]:
    """The settings columns of `jetpack_monitor_sites` for a `sites` record."""
    return {
        "site_id": site.site_id,
        "url": site.url,
        "active": site.active,
        "check_interval_s": site.check_interval_s,
        "timeout_s": site.timeout_s,
        "recheck_interval_s": site.recheck_interval_s,
        "num_of_checks": site.num_of_checks,
        "peer_offline_limit": site.peer_offline_limit,
        "verify_timeout_s": site.verify_timeout_s,
        "keyword": site.keyword,
        "redirect_policy": site.redirect_policy.value,
        "custom_headers": stored_headers(site.custom_headers, secrets),
        "alert_cooldown_minutes": site.alert_cooldown_minutes,
        "maintenance": msgspec.to_builtins(site.maintenance),
        "checks": [c.value for c in site.checks],
    }
