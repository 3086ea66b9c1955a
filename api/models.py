"""What the API reads and answers: msgspec Structs, the source of its OpenAPI document.

Query Structs forbid unknown fields (a misspelt filter is a 400, not silently ignored).
Response fields typed with an enum may carry a value newer than this code (enums are
stored as short strings, docs/contract.md): they are encoded as stored, never a 500.
"""

from __future__ import annotations

import enum
from typing import Annotated, Any, Final, Generic, Literal, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from sitewatch.streams import records
from sitewatch.streams.enums import CheckType, EventState, Reason, RedirectPolicy, SiteState

#: largest BIGINT: ids above it cannot exist in the database
MAX_ID: Final = 2**63 - 1
DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 200

Id = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]
SiteIdParam = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID, description="site id")]
EventIdParam = Annotated[str, msgspec.Meta(min_length=1, max_length=64, description="event id")]
Limit = Annotated[
    int, msgspec.Meta(ge=1, le=MAX_LIMIT, description=f"page size, at most {MAX_LIMIT}")
]
Cursor = Annotated[
    str, msgspec.Meta(max_length=512, description="`next_cursor` of the previous page")
]
Timestamp = records.Timestamp
SeverityLevel = Annotated[int, msgspec.Meta(ge=0, le=4)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
Item = TypeVar("Item")


class EventStateFilter(enum.StrEnum):
    """`open`, `closed`, or an event's stored state."""

    OPEN = "open"
    CLOSED = "closed"
    WARNING = "warning"
    DEGRADED = "degraded"
    SEEMS_DOWN = "seems_down"
    DOWN = "down"
    RESOLVED = "resolved"


class HealthStatus(enum.StrEnum):
    OK = "ok"
    DEGRADED = "degraded"


class ComponentStatus(enum.StrEnum):
    OK = "ok"
    UNAVAILABLE = "unavailable"


# -- queries ------------------------------------------------------------------------------


class PageQuery(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Absent parameters are UNSET (not None: lax conversion would read `?x=null` as None)."""

    limit: Limit = DEFAULT_LIMIT
    cursor: Cursor | UnsetType = UNSET


class SitesQuery(PageQuery, kw_only=True, forbid_unknown_fields=True):
    state: SiteState | UnsetType = UNSET
    active: bool | UnsetType = UNSET


class SiteEventsQuery(
    PageQuery, kw_only=True, forbid_unknown_fields=True, rename={"from_": "from"}
):
    state: EventStateFilter | UnsetType = UNSET
    check_type: CheckType | UnsetType = UNSET
    severity_gte: SeverityLevel | UnsetType = UNSET
    #: on `started_at`: from <= started_at < to
    from_: Timestamp | UnsetType = UNSET
    to: Timestamp | UnsetType = UNSET


class EventsQuery(
    SiteEventsQuery, kw_only=True, forbid_unknown_fields=True, rename={"from_": "from"}
):
    site_id: SiteIdParam | UnsetType = UNSET


class UptimeQuery(
    msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename={"from_": "from"}
):
    #: default: 30 days before `to`
    from_: Timestamp | UnsetType = UNSET
    #: default: now
    to: Timestamp | UnsetType = UNSET


# -- bodies -------------------------------------------------------------------------------


class CloseEventBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    note: Annotated[str, msgspec.Meta(max_length=1000)] | None = None


class WebhookBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=8, max_length=2048, pattern=r"^https?://[^/?#\s]+")]
    #: HMAC secret; default: a new random one, answered once
    secret: Annotated[str, msgspec.Meta(min_length=16, max_length=255)] | None = None
    #: only this site's events; default: every site
    site_id: SiteIdParam | None = None


# -- answers ------------------------------------------------------------------------------


class Page(msgspec.Struct, Generic[Item], kw_only=True):
    """A list's page (`next_cursor` null: the last page). Each list names its own
    subclass, which is what OpenAPI shows."""

    data: list[Item]
    next_cursor: str | None


class Site(msgspec.Struct, kw_only=True):
    """Settings (materialized from `sites`) and the projection the sink keeps."""

    site_id: int
    url: str
    active: bool
    check_interval_s: int
    timeout_s: int
    recheck_interval_s: int
    num_of_checks: int
    peer_offline_limit: int
    verify_timeout_s: int | None
    keyword: str | None
    redirect_policy: RedirectPolicy
    #: header names; values are never shown (they may be credentials)
    custom_headers: dict[str, str] | None
    alert_cooldown_minutes: int
    maintenance: list[records.MaintenanceWindow]
    checks: list[CheckType]
    current_state: SiteState
    current_severity: int
    active_event_id: str | None
    site_status: int
    last_status_change: Timestamp | None
    created_at: Timestamp | None


class Event(msgspec.Struct, kw_only=True):
    event_id: str
    site_id: int
    endpoint_id: int | None
    check_type: CheckType
    discriminator: str
    state: EventState
    severity: int
    started_at: Timestamp
    ended_at: Timestamp | None
    resolution_reason: Reason | None
    cause_event_id: str | None
    metadata: dict[str, Any] | None
    created_at: Timestamp


class Transition(msgspec.Struct, kw_only=True):
    transition_id: str
    seq: int
    reason: Reason
    state_before: EventState
    state_after: EventState
    severity_before: int
    severity_after: int | None
    source: str
    at: Timestamp
    metadata: dict[str, Any] | None
    kafka_topic: str
    kafka_partition: int
    kafka_offset: int


class EventDetail(Event, kw_only=True):
    #: every transition of the event, in `seq` order
    transitions: list[Transition]


class SitePage(Page[Site], kw_only=True):
    pass


class EventPage(Page[Event], kw_only=True):
    pass


class Incident(msgspec.Struct, kw_only=True):
    event_id: str
    started_at: Timestamp
    ended_at: Timestamp | None
    #: this event's downtime inside the window
    down_s: Seconds


class UptimeReport(msgspec.Struct, kw_only=True, rename={"from_": "from"}):
    """Availability over `[from, to)`, policy `sitewatch-1` (docs/api.md)."""

    policy: Literal["sitewatch-1"]
    site_id: int
    from_: Timestamp
    to: Timestamp
    down_s: Seconds
    seems_down_s: Seconds
    maintenance_s: Seconds
    unknown_s: Seconds
    #: the denominator: to - from - maintenance_s - unknown_s
    measured_s: Seconds
    uptime_ratio: Annotated[float, msgspec.Meta(ge=0, le=1)] | None
    incidents: list[Incident]
    mttr_s: Seconds | None


class SitePublished(msgspec.Struct, kw_only=True):
    """What was published to `sites` (`value` null: a tombstone, the site is deleted)."""

    topic: str
    partition: int
    offset: int
    key: str
    value: records.SiteRecord | None


class CommandPublished(msgspec.Struct, kw_only=True):
    """The `close_event` command published to `check-results`."""

    topic: str
    partition: int
    offset: int
    key: str
    command_id: str
    value: records.Command


class Webhook(msgspec.Struct, kw_only=True):
    id: int
    url: str
    site_id: int | None
    created_at: Timestamp
    #: whether the stored secret is sealed with SITEWATCH_SECRET_KEY (the secret itself is
    #: never answered again)
    secret_sealed: bool


class WebhookCreated(Webhook, kw_only=True):
    #: shown only in this answer
    secret: str


class WebhookPage(Page[Webhook], kw_only=True):
    pass


class Delivery(msgspec.Struct, kw_only=True):
    id: str
    subscription_id: int
    transition_id: str
    site_id: int
    kind: str
    state: str
    attempts: int
    next_attempt_at: Timestamp | None
    last_attempt_at: Timestamp | None
    last_status: int | None
    last_error: str | None
    created_at: Timestamp
    sent_at: Timestamp | None


class DeliveryPage(Page[Delivery], kw_only=True):
    pass


class Health(msgspec.Struct, kw_only=True):
    status: HealthStatus
    database: ComponentStatus
    kafka: ComponentStatus
