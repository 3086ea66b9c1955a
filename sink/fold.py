"""The sink's fold, pure: a batch's messages and the rows it touches -> its row changes.

`decode` turns messages into transitions and site records (poison set aside); `fold`
applies the transitions in log order to what `load.py` read (`Loaded`): idempotent on
transition_id, a contradiction reported (`Contradiction`) and not applied. Its
`Changes` are what `write.py` writes and what `shadow.py` remembers. No database, no
I/O: tests/sink/test_fold.py runs it without MariaDB.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sitewatch.streams import records
from sitewatch.streams.enums import EventState, Reason, Severity
from sitewatch.streams.message import ConsumedRecord
from sitewatch.streams.topics import TopicNames

from .projection import Change, OpenEventRank, SiteTracker
from .rows import EventRow, transition_row, wire_time

_RESOLVED = str(EventState.RESOLVED)

#: a transition with the message it came in
DecodedTransition = tuple[ConsumedRecord, records.Transition]


@dataclass(slots=True)
class Batch:
    """A batch's messages, decoded."""

    transitions: list[DecodedTransition] = field(default_factory=list)
    #: the last record of each site in the batch (None: a tombstone)
    sites: dict[int, records.SiteRecord | None] = field(default_factory=dict)
    #: sites with a tombstone in the batch (a later record may bring one back)
    deleted: set[int] = field(default_factory=set)
    #: messages that do not decode, with why, in log order
    poison: list[tuple[ConsumedRecord, str]] = field(default_factory=list)


def decode(messages: Sequence[ConsumedRecord], topics: TopicNames) -> Batch:
    """Poison never stops the batch: any exception of decoding, a RecursionError from a
    deeply nested value included, sets the message aside."""
    batch = Batch()
    events_topic, sites_topic = topics.site_events, topics.sites
    for msg in messages:
        if msg.topic == events_topic:
            try:
                batch.transitions.append((msg, records.keyed_transition(msg.key, msg.value)))
            except Exception as exc:
                batch.poison.append((msg, f"malformed transition: {_why(exc)}"))
        elif msg.topic == sites_topic:
            try:
                site_id, site = records.keyed_site(msg.key, msg.value)
                if site is None:
                    batch.deleted.add(site_id)
                batch.sites[site_id] = site
            except Exception as exc:
                batch.poison.append((msg, f"malformed site record: {_why(exc)}"))
        else:
            batch.poison.append((msg, f"unexpected topic {msg.topic}"))
    return batch


def _why(exc: BaseException) -> str:
    text = str(exc)
    return text if isinstance(exc, ValueError) and text else f"{type(exc).__name__}: {text}"


class Contradiction(enum.Enum):
    """Why a transition cannot apply to what the database holds (docs/lifecycle.md)."""

    #: a closing reason without state_after resolved, or resolved without one
    REASON_STATE_MISMATCH = "reason_state_mismatch"
    #: a live change without a severity, or with state up
    LIVE_WITHOUT_SEVERITY = "live_without_severity"
    #: `opened` for an event id that exists
    OPENS_EXISTING = "opens_existing"
    #: `opened` while another event is open for the same tuple
    OPENS_WHILE_OPEN = "opens_while_open"
    #: a change or close of an event that does not exist
    UNKNOWN_EVENT = "unknown_event"
    #: a site id that differs from the event's
    OTHER_SITE = "other_site"
    #: any change of a closed event
    ALREADY_CLOSED = "already_closed"


def contradiction(
    tr: records.Transition, ev: EventRow | None, open_other: str | None
) -> Contradiction | None:
    """What `tr` contradicts in `ev` (its event, if stored) and `open_other` (the event
    open for its tuple, if any); None when it applies."""
    closing = tr.reason.closes
    if closing != (tr.state_after is EventState.RESOLVED):
        return Contradiction.REASON_STATE_MISMATCH
    if not closing and (tr.severity_after is None or tr.state_after is EventState.UP):
        return Contradiction.LIVE_WITHOUT_SEVERITY
    if tr.reason is Reason.OPENED:
        if ev is not None:
            return Contradiction.OPENS_EXISTING
        if open_other is not None:
            return Contradiction.OPENS_WHILE_OPEN
        return None
    if ev is None:
        return Contradiction.UNKNOWN_EVENT
    if ev.site_id != tr.site_id:
        return Contradiction.OTHER_SITE
    if ev.ended_at is not None:
        return Contradiction.ALREADY_CLOSED
    return None


def explain(
    kind: Contradiction, tr: records.Transition, ev: EventRow | None, open_other: str | None
) -> str:
    """The words of a contradiction in its dead letter."""
    match kind:
        case Contradiction.REASON_STATE_MISMATCH:
            return f"reason {tr.reason} with state_after {tr.state_after} is inconsistent"
        case Contradiction.LIVE_WITHOUT_SEVERITY:
            return f"live transition {tr.reason} without a severity or with state up"
        case Contradiction.OPENS_EXISTING:
            how = "closed" if ev is not None and ev.ended_at is not None else "open"
            return f"opening event {tr.event_id} which already exists ({how})"
        case Contradiction.OPENS_WHILE_OPEN:
            return f"opening event {tr.event_id} while event {open_other} is open for its tuple"
        case Contradiction.UNKNOWN_EVENT:
            return f"{tr.reason} transition for unknown event {tr.event_id}"
        case Contradiction.OTHER_SITE:
            site = ev.site_id if ev is not None else None
            return f"event {tr.event_id} belongs to site {site}, not {tr.site_id}"
        case Contradiction.ALREADY_CLOSED:
            return f"{tr.reason} transition for event {tr.event_id}, already closed"


@dataclass(frozen=True, slots=True)
class Contradicted:
    msg: ConsumedRecord
    kind: Contradiction
    #: the dead letter's words (`explain`)
    detail: str


@dataclass(slots=True)
class Loaded:
    """What the database (with an overlay laid over it) holds of what a batch touches."""

    #: the batch's transition ids that are already stored
    known: set[str]
    #: the batch's events and the open ones of its sites, without the events of the
    #: sites the batch deletes (`cascade`)
    events: dict[str, EventRow]
    #: current state and last change of the batch's sites (open events are added by `fold`)
    trackers: dict[int, SiteTracker]
    #: events of the batch's transitions that went with their deleted site
    gone: set[str]


def cascade(events: dict[str, EventRow], deleted: set[int]) -> set[str]:
    """Drop the events of the `deleted` sites, as ON DELETE CASCADE will before any
    transition of the batch is applied; their ids."""
    cascaded = {k for k, v in events.items() if v.site_id in deleted}
    for eid in cascaded:
        del events[eid]
    return cascaded


@dataclass(slots=True)
class Changes:
    """A folded batch's changes, table by table: what `write.py` writes and what
    `shadow.py` remembers."""

    #: the sites tombstoned, by id
    deleted: list[int]
    #: the settings to store, one record per site
    settings: list[records.SiteRecord]
    #: the trackers of the sites whose projection changed, by site id in order
    sites: dict[int, SiteTracker]
    #: changed events that are stored, then new ones (in fold order)
    updated: list[EventRow]
    inserted: list[EventRow]
    #: transition rows (TRANSITION_COLUMNS), in log order
    transitions: list[tuple[Any, ...]]
    #: transitions not applied, in log order
    contradicted: list[Contradicted]
    #: duplicates (already stored or seen earlier in the batch), of_deleted_sites
    counts: Counter[str]


def fold(batch: Batch, loaded: Loaded) -> Changes:
    """Apply `batch`'s transitions in log order to `loaded` (whose rows it changes)."""
    known, events, trackers, gone = loaded.known, loaded.events, loaded.trackers, loaded.gone
    counts: Counter[str] = Counter()
    contradicted: list[Contradicted] = []
    open_by_tuple: dict[tuple[int, int, str, str], str] = {}
    for stored in events.values():
        if stored.ended_at is None:
            open_by_tuple[stored.tuple_key] = stored.id
            tracker = trackers.setdefault(stored.site_id, SiteTracker())
            tracker.open_events[stored.id] = OpenEventRank(
                stored.id, EventState(stored.state), Severity(stored.severity), stored.started_at
            )

    trans_rows: list[tuple[Any, ...]] = []
    applied_sites: set[int] = set()
    for msg, tr in batch.transitions:
        if tr.transition_id in known:
            counts["duplicates"] += 1  # a replay: its effect is already stored
            continue
        ev = events.get(tr.event_id)
        if ev is None and tr.event_id in gone:
            # e.g. the auto_timeout of an event whose site was deleted: history, kept
            # in the append-only transitions; no event row, no site row brought back
            counts["of_deleted_sites"] += 1
            known.add(tr.transition_id)
            trans_rows.append(transition_row(msg, tr, wire_time(tr.at), wire_time(tr.started_at)))
            continue
        # str() of a StrEnum member is its value, in C: `.value` is a Python-level
        # descriptor, and the fold asks for several per transition (P4)
        key = (tr.site_id, tr.endpoint_id or 0, str(tr.check_type), tr.discriminator)
        open_other = open_by_tuple.get(key)
        kind = contradiction(tr, ev, open_other)
        if kind is not None:
            contradicted.append(Contradicted(msg, kind, explain(kind, tr, ev, open_other)))
            continue
        at = wire_time(tr.at)
        started = wire_time(tr.started_at)
        if tr.reason is Reason.OPENED:
            ev = EventRow(
                id=tr.event_id,
                site_id=tr.site_id,
                endpoint_id=tr.endpoint_id,
                check_type=key[2],
                discriminator=tr.discriminator,
                state=str(tr.state_after),
                severity=tr.severity_after or 0,
                started_at=started,
                ended_at=None,
                resolution_reason=None,
                cause_event_id=tr.cause_event_id,
                metadata=dict(tr.metadata) if tr.metadata else None,
                in_db=False,
            )
            events[ev.id] = ev
            open_by_tuple[key] = ev.id
        else:
            assert ev is not None  # contradiction() checked it
            if tr.metadata:
                ev.metadata = {**(ev.metadata or {}), **tr.metadata}
            if tr.cause_event_id is not None:
                ev.cause_event_id = tr.cause_event_id
            if tr.reason.closes:
                # closed: keeps its last severity; resolution_reason = closing reason
                ev.state = _RESOLVED
                ev.ended_at = wire_time(tr.ended_at) if tr.ended_at else at
                ev.resolution_reason = str(tr.resolution_reason or tr.reason)
                open_by_tuple.pop(ev.tuple_key, None)
            else:
                ev.state = str(tr.state_after)
                ev.severity = tr.severity_after or 0
        ev.dirty = True
        known.add(tr.transition_id)
        trackers.setdefault(tr.site_id, SiteTracker()).apply(
            Change(tr.event_id, tr.reason, tr.state_after, tr.severity_after, started, at)
        )
        applied_sites.add(tr.site_id)
        trans_rows.append(transition_row(msg, tr, at, started))

    dirty = [e for e in events.values() if e.dirty]
    return Changes(
        deleted=sorted(batch.deleted),
        settings=[s for s in batch.sites.values() if s is not None],
        sites={sid: trackers[sid] for sid in sorted(applied_sites)},
        updated=[e for e in dirty if e.in_db],
        inserted=[e for e in dirty if not e.in_db],
        transitions=trans_rows,
        contradicted=contradicted,
        counts=counts,
    )
