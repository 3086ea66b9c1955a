"""The site projection (docs/lifecycle.md) as a pure function of a site's transitions.

One `SiteTracker` per site folds transitions in log order. The live sink seeds it from
the database (open events, current state, last change) and folds a batch; the rebuild
(`sitewatch projection check`) seeds it empty and folds the whole history. Both use this
one code path, which is why a rebuild equals the live projection (invariant 9).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from sitewatch.streams.enums import (
    EventState,
    LegacySiteStatus,
    Reason,
    Severity,
    SiteState,
)


@dataclass(frozen=True, slots=True)
class OpenEventRank:
    """An open event as the projection ranks it (`worst`): severity, started_at, id."""

    event_id: str
    state: EventState
    severity: Severity
    started_at: datetime


@dataclass(frozen=True, slots=True)
class Projection:
    """The projection columns of `jetpack_monitor_sites`."""

    current_state: SiteState
    current_severity: Severity
    active_event_id: str | None
    site_status: LegacySiteStatus
    last_status_change: datetime | None

    def as_tuple(self) -> tuple[str, int, str | None, int, datetime | None]:
        """Values in PROJECTION_COLUMNS order."""
        return (
            str(self.current_state),
            int(self.current_severity),
            self.active_event_id,
            int(self.site_status),
            self.last_status_change,
        )

    def as_row(self) -> dict[str, object]:
        return {
            "current_state": self.current_state.value,
            "current_severity": int(self.current_severity),
            "active_event_id": self.active_event_id,
            "site_status": int(self.site_status),
            "last_status_change": self.last_status_change,
        }


UP = Projection(SiteState.UP, Severity.UP, None, LegacySiteStatus.UP, None)

_LEGACY: dict[SiteState, LegacySiteStatus] = {
    SiteState.SEEMS_DOWN: LegacySiteStatus.SEEMS_DOWN,
    SiteState.DOWN: LegacySiteStatus.DOWN,
}


#: enum lookups by table: this runs once per transition on the sink's hot path
_SITE_STATE: dict[EventState, SiteState] = {
    e: SiteState(e.value) for e in EventState if e.value in SiteState._value2member_map_
}
_SEVERITY: tuple[Severity, ...] = tuple(Severity)


def worst(open_events: Iterable[OpenEventRank]) -> OpenEventRank | None:
    """Worst severity, then earliest started_at, then smallest id (a total order)."""
    return min(
        open_events,
        key=lambda e: (-int(e.severity), e.started_at, e.event_id),
        default=None,
    )


def legacy_status(state: SiteState) -> LegacySiteStatus:
    """Jetmon's site_status: warning and degraded sites are still up (1)."""
    return _LEGACY.get(state, LegacySiteStatus.UP)


@dataclass(frozen=True, slots=True)
class Change:
    """What the projection needs from one transition."""

    event_id: str
    reason: Reason
    state_after: EventState
    severity_after: int | None
    started_at: datetime
    at: datetime


@dataclass(slots=True)
class SiteTracker:
    """Folds one site's transitions; `projection()` is the current projection."""

    open_events: dict[str, OpenEventRank] = field(default_factory=dict)
    current_state: SiteState = SiteState.UP
    last_status_change: datetime | None = None

    def apply(self, change: Change) -> None:
        if change.reason.closes or change.state_after is EventState.RESOLVED:
            self.open_events.pop(change.event_id, None)
        else:
            severity = _SEVERITY[change.severity_after or 0]
            self.open_events[change.event_id] = OpenEventRank(
                change.event_id, change.state_after, severity, change.started_at
            )
        state = self._state()
        if state is not self.current_state:
            self.current_state = state
            self.last_status_change = change.at

    def _state(self) -> SiteState:
        events = self.open_events
        if not events:
            return SiteState.UP
        if len(events) == 1:
            (top,) = events.values()
        else:
            top = min(events.values(), key=lambda e: (-e.severity, e.started_at, e.event_id))
        return _SITE_STATE[top.state]

    def projection(self) -> Projection:
        top = worst(self.open_events.values())
        if top is None:
            return Projection(
                SiteState.UP, Severity.UP, None, LegacySiteStatus.UP, self.last_status_change
            )
        state = _SITE_STATE[top.state]
        return Projection(
            state, top.severity, top.event_id, legacy_status(state), self.last_status_change
        )
