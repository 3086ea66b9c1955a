"""Apply one batch of `site-events` and `sites` messages in one database transaction.

Per batch: decode (poison -> dead letter), load the state the batch touches, fold the
transitions in log order (idempotent on transition_id; contradictions -> dead letter),
then write transitions, events, site settings, the projection and the consumer offsets
through the gate, all in the caller's transaction (invariant 1, exactly-once effect).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sitewatch.crypto import SecretBox
from sitewatch.streams import records, timefmt
from sitewatch.streams.deadletter import dead_letter_for
from sitewatch.streams.enums import EventState, LegacySiteStatus, Reason, Severity, SiteState
from sitewatch.streams.message import ConsumedRecord
from sitewatch.streams.topics import TopicNames

from . import offsets
from . import tables as t
from .gate import Tx
from .projection import Change, OpenEventRank, Projection, SiteTracker

CONSUMER = "sitewatch-sink"
_RESOLVED = str(EventState.RESOLVED)
_CHUNK = 5000  # ids per IN (...) list: few round trips, well within packet limits


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
        return (*_STORED(self), _json(self.metadata))


@dataclass(slots=True)
class BatchResult:
    """What the batch did (or, in shadow mode, would have done)."""

    counts: Counter[str] = field(default_factory=Counter)
    dead_letters: list[tuple[records.DeadLetter, bytes | None]] = field(default_factory=list)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(slots=True)
class Prepared:
    """A folded batch: the rows to write, in write order, and what they will change."""

    result: BatchResult
    messages: int
    deleted: list[int]
    settings: list[dict[str, Any]]
    projections: list[tuple[Any, ...]]
    events_updated: list[tuple[Any, ...]]
    events_inserted: list[tuple[Any, ...]]
    transitions: list[tuple[Any, ...]]
    #: the state these rows leave behind, for folding the next batch before they commit
    overlay: ShadowOverlay


def _dt(stamp: str) -> datetime:
    """Wire timestamp -> naive UTC datetime at millisecond precision (DATETIME(3))."""
    if len(stamp) == 24 and stamp[-1] == "Z":  # the canonical form: parse it directly
        return datetime.fromisoformat(stamp[:-1])
    return timefmt.to_datetime(timefmt.to_ms(stamp))


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def upsert(dialect: str, table: sa.Table, keys: Sequence[str], update: Sequence[str]) -> sa.Insert:
    """INSERT ... ON DUPLICATE KEY UPDATE (MySQL) / ON CONFLICT DO UPDATE (SQLite)."""
    if dialect == "mysql":
        my = mysql_insert(table)
        return my.on_duplicate_key_update({c: my.inserted[c] for c in update})
    lite = sqlite_insert(table)
    return lite.on_conflict_do_update(
        index_elements=list(keys), set_={c: lite.excluded[c] for c in update}
    )


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
#: an EventRow's values of EVENT_COLUMNS but metadata (stored as JSON), read in C
_STORED: Callable[[EventRow], _Stored] = attrgetter(*EVENT_COLUMNS[:-1])
_EVENT_UPDATE = ("state", "severity", "ended_at", "resolution_reason", "cause_event_id", "metadata")
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
_json_encoder = msgspec.json.Encoder(order="deterministic")


def _json(value: Any) -> str | None:
    """JSON text for a JSON column written on the raw path (NULL for empty)."""
    return _json_encoder.encode(value).decode() if value else None


def _event_cols() -> list[sa.Column[Any]]:
    return [c for c in t.events.c if c.name not in ("created_at", "open_key")]


# rows are read in EVENT_COLUMNS order, which is EventRow's: positional, no mapping
assert tuple(c.name for c in _event_cols()) == EVENT_COLUMNS


def _event_from_row(row: Sequence[Any]) -> EventRow:
    (eid, site, endpoint, check, disc, state, severity, started, ended, why, cause, meta) = row
    return EventRow(
        eid, site, endpoint, check, disc, state, severity, started, ended, why, cause, meta, True
    )


def _contradiction(tr: records.Transition, ev: EventRow | None, open_other: str | None) -> str:
    """Why `tr` cannot apply to what the database holds, or '' if it can."""
    closing = tr.reason.closes
    if closing != (tr.state_after is EventState.RESOLVED):
        return f"reason {tr.reason} with state_after {tr.state_after} is inconsistent"
    if not closing and (tr.severity_after is None or tr.state_after is EventState.UP):
        return f"live transition {tr.reason} without a severity or with state up"
    if tr.reason is Reason.OPENED:
        if ev is not None:
            how = "closed" if ev.ended_at is not None else "open"
            return f"opening event {tr.event_id} which already exists ({how})"
        if open_other is not None:
            return f"opening event {tr.event_id} while event {open_other} is open for its tuple"
        return ""
    if ev is None:
        return f"{tr.reason} transition for unknown event {tr.event_id}"
    if ev.site_id != tr.site_id:
        return f"event {tr.event_id} belongs to site {ev.site_id}, not {tr.site_id}"
    if ev.ended_at is not None:
        return f"{tr.reason} transition for event {tr.event_id}, already closed"
    return ""


@dataclass(slots=True)
class ShadowOverlay:
    """Shadow mode's memory of what it would have written (the database is untouched).

    Without it, a transition applied "in shadow" in one batch would be unknown to the
    next one and every later change of that event would look like a contradiction.
    It grows with the events seen since start; shadow runs are meant to be bounded.
    """

    transition_ids: set[str] = field(default_factory=set)
    events: dict[str, EventRow] = field(default_factory=dict)
    open_by_site: dict[int, set[str]] = field(default_factory=dict)
    sites: dict[int, tuple[SiteState, datetime | None]] = field(default_factory=dict)
    deleted: set[int] = field(default_factory=set)
    #: events that went with their deleted site (what ON DELETE CASCADE would remove)
    gone_events: set[str] = field(default_factory=set)

    def merge_into(
        self,
        events: dict[str, EventRow],
        trackers: dict[int, SiteTracker],
        eids: Iterable[str],
        sites: Iterable[int],
    ) -> None:
        for eid in list(events):
            if eid in self.events:
                events[eid] = self.events[eid].copy()
            elif events[eid].site_id in self.deleted:
                del events[eid]  # cascaded away by a shadow delete
        for eid in eids:
            if eid in self.events:
                events[eid] = self.events[eid].copy()
        for sid in sites:
            for eid in self.open_by_site.get(sid, ()):
                events[eid] = self.events[eid].copy()
            if sid in self.sites:
                state, changed = self.sites[sid]
                trackers[sid] = SiteTracker(current_state=state, last_status_change=changed)

    def remember(
        self,
        deleted: set[int],
        events: Iterable[EventRow],
        trackers: dict[int, SiteTracker],
        applied_sites: Iterable[int],
        transition_ids: Iterable[str],
    ) -> None:
        for sid in deleted:
            self.deleted.add(sid)
            self.sites[sid] = (SiteState.UP, None)
            for eid in self.open_by_site.pop(sid, set()):
                self.events.pop(eid, None)
                self.gone_events.add(eid)
            for eid in [k for k, v in self.events.items() if v.site_id == sid]:
                del self.events[eid]
                self.gone_events.add(eid)
        for ev in events:  # owned from here on: a fold works on copies (merge_into)
            ev.in_db, ev.dirty = True, False
            self.events[ev.id] = ev
            opened = self.open_by_site.setdefault(ev.site_id, set())
            if ev.ended_at is None:
                opened.add(ev.id)
            else:
                opened.discard(ev.id)
        for sid in applied_sites:
            tracker = trackers[sid]
            self.sites[sid] = (tracker.current_state, tracker.last_status_change)
        self.transition_ids.update(transition_ids)


class BatchApplier:
    """Stateless between batches when writing: what it needs is read in the transaction."""

    def __init__(self, topics: TopicNames, group: str, secrets: SecretBox | None = None) -> None:
        self.topics = topics
        self.group = group
        #: seals site header values before they are stored (None: values are not stored)
        self.secrets = secrets
        self.shadow = ShadowOverlay()
        self._events_topic, self._sites_topic = topics.site_events, topics.sites

    async def refuse(self, tx: Tx, msg: ConsumedRecord, error: str, now_ms: int) -> BatchResult:
        """Dead-letter one message the database refused, and move its offset past it."""
        res = BatchResult()
        letter = dead_letter_for(msg, error, CONSUMER, now_ms)
        res.dead_letters.append((letter, msg.key))
        offsets.advance(res.offsets, [msg])
        await self._write_offsets(tx, res)
        res.counts.update(tx.report)
        res.counts["dead_letters"] += 1
        res.counts["messages"] += 1
        return res

    async def _write_offsets(self, tx: Tx, res: BatchResult) -> None:
        await tx.write("offsets", offsets.upsert(tx.dialect), offsets.rows(self.group, res.offsets))

    async def _gone_events(
        self,
        tx: Tx,
        transitions: Sequence[tuple[ConsumedRecord, records.Transition]],
        events: dict[str, EventRow],
        deleted: set[int],
        present: set[int],
        cascaded: set[str],
        base: ShadowOverlay | None,
    ) -> set[str]:
        """Events of the batch's transitions that were deleted with their site.

        A site's tombstone deletes its event rows (ON DELETE CASCADE), but the worker
        may still close such an event later (`auto_timeout`). Its transitions stay in
        the table (no foreign key there), which tells it from a transition for an event
        that never existed: that one is a contradiction.
        """
        candidates = {
            tr.event_id
            for _, tr in transitions
            if tr.reason is not Reason.OPENED
            and tr.event_id not in events
            and (tr.site_id in deleted or tr.site_id not in present)
        }
        if not candidates:
            return set()
        found = candidates & (cascaded | (base.gone_events if base is not None else set()))
        for part in _chunks(sorted(candidates - found)):
            rows = await tx.read(
                sa.select(t.transitions.c.event_id)
                .where(t.transitions.c.event_id.in_(part))
                .distinct()
            )
            found.update(r[0] for r in rows)
        return found

    async def apply(self, tx: Tx, messages: Sequence[ConsumedRecord], now_ms: int) -> BatchResult:
        """Fold and write one batch in `tx` (the caller commits)."""
        shadow = None if tx.writes else self.shadow
        return await self.write(tx, await self.prepare(tx, messages, now_ms, shadow))

    async def prepare(
        self,
        tx: Tx,
        messages: Sequence[ConsumedRecord],
        now_ms: int,
        base: ShadowOverlay | None = None,
    ) -> Prepared:
        """Decode, load and fold a batch: everything but the writes (reads only).

        `base` is what the database does not show yet: shadow mode's memory, or the
        batch still being written when the sink folds the next one (`pipeline.py`);
        what it holds wins over what the reads return. The result's `overlay` is this
        batch's own, for the batch after it.
        """
        res = BatchResult()
        transitions: list[tuple[ConsumedRecord, records.Transition]] = []
        site_final: dict[int, records.SiteRecord | None] = {}
        deleted: set[int] = set()

        def dead(msg: ConsumedRecord, error: str) -> None:
            letter = dead_letter_for(msg, error, CONSUMER, now_ms)
            res.dead_letters.append((letter, msg.key))
            res.counts["dead_letters"] += 1

        # 1. decode; poison records never stop the batch (any exception of decoding,
        #    a RecursionError from a deeply nested value included)
        offsets.advance(res.offsets, messages)
        for msg in messages:
            if msg.topic == self._events_topic:
                try:
                    transitions.append((msg, records.keyed_transition(msg.key, msg.value)))
                except Exception as exc:
                    dead(msg, f"malformed transition: {_why(exc)}")
            elif msg.topic == self._sites_topic:
                try:
                    site_id, site = records.keyed_site(msg.key, msg.value)
                    if site is None:
                        deleted.add(site_id)
                    site_final[site_id] = site
                except Exception as exc:
                    dead(msg, f"malformed site record: {_why(exc)}")
            else:
                dead(msg, f"unexpected topic {msg.topic}")

        # 2. load what the batch touches
        touched = {tr.site_id for _, tr in transitions}
        tids = list({tr.transition_id for _, tr in transitions})
        known: set[str] = set()
        for part in _chunks(tids):
            rows = await tx.read(
                sa.select(t.transitions.c.transition_id).where(
                    t.transitions.c.transition_id.in_(part)
                )
            )
            known.update(r[0] for r in rows)
        events: dict[str, EventRow] = {}
        cols = _event_cols()
        eids = list({tr.event_id for _, tr in transitions})
        for part in _chunks(eids):
            for row in await tx.read(sa.select(*cols).where(t.events.c.id.in_(part))):
                events[row.id] = _event_from_row(row)
        trackers: dict[int, SiteTracker] = {}
        site_list = sorted(touched - deleted)
        present: set[int] = set()
        for part in _chunks(site_list):
            for row in await tx.read(
                sa.select(*cols).where(t.events.c.site_id.in_(part), t.events.c.ended_at.is_(None))
            ):
                events.setdefault(row.id, _event_from_row(row))
            for row in await tx.read(
                sa.select(
                    t.sites.c.site_id, t.sites.c.current_state, t.sites.c.last_status_change
                ).where(t.sites.c.site_id.in_(part))
            ):
                present.add(row.site_id)
                trackers[row.site_id] = SiteTracker(
                    current_state=SiteState(row.current_state),
                    last_status_change=row.last_status_change,
                )
        if base is not None:
            known.update(tid for tid in tids if tid in base.transition_ids)
            base.merge_into(events, trackers, eids, site_list)
        # a site deleted in this batch lost its events (ON DELETE CASCADE) before any
        # transition of the batch is applied
        cascaded = {k for k, v in events.items() if v.site_id in deleted}
        events = {k: v for k, v in events.items() if v.site_id not in deleted}
        gone = await self._gone_events(tx, transitions, events, deleted, present, cascaded, base)
        open_by_tuple: dict[tuple[int, int, str, str], str] = {}
        for loaded in events.values():
            if loaded.ended_at is None:
                open_by_tuple[loaded.tuple_key] = loaded.id
                tracker = trackers.setdefault(loaded.site_id, SiteTracker())
                tracker.open_events[loaded.id] = OpenEventRank(
                    loaded.id,
                    EventState(loaded.state),
                    Severity(loaded.severity),
                    loaded.started_at,
                )

        # 3. fold transitions in log order
        trans_rows: list[tuple[Any, ...]] = []
        applied_sites: set[int] = set()
        for msg, tr in transitions:
            if tr.transition_id in known:
                res.counts["duplicates"] += 1  # a replay: its effect is already stored
                continue
            ev = events.get(tr.event_id)
            if ev is None and tr.event_id in gone:
                # e.g. the auto_timeout of an event whose site was deleted: history, kept
                # in the append-only transitions; no event row, no site row brought back
                res.counts["of_deleted_sites"] += 1
                known.add(tr.transition_id)
                trans_rows.append(_transition_row(msg, tr, _dt(tr.at), _dt(tr.started_at)))
                continue
            # str() of a StrEnum member is its value, in C: `.value` is a Python-level
            # descriptor, and the fold asks for several per transition (P4)
            key = (tr.site_id, tr.endpoint_id or 0, str(tr.check_type), tr.discriminator)
            why = _contradiction(tr, ev, open_by_tuple.get(key))
            if why:
                dead(msg, f"contradicts the database: {why}")
                continue
            at = _dt(tr.at)
            started = _dt(tr.started_at)
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
                assert ev is not None  # _contradiction checked it
                if tr.metadata:
                    ev.metadata = {**(ev.metadata or {}), **tr.metadata}
                if tr.cause_event_id is not None:
                    ev.cause_event_id = tr.cause_event_id
                if tr.reason.closes:
                    # closed: keeps its last severity; resolution_reason = closing reason
                    ev.state = _RESOLVED
                    ev.ended_at = _dt(tr.ended_at) if tr.ended_at else at
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
            trans_rows.append(_transition_row(msg, tr, at, started))

        # 4. rows, driver-ready (the CPU work done here overlaps a previous batch's writes)
        dirty = [e for e in events.values() if e.dirty]
        prepared = Prepared(
            result=res,
            messages=len(messages),
            deleted=sorted(deleted),
            settings=[_site_row(s, self.secrets) for s in site_final.values() if s is not None],
            projections=[
                (sid, *trackers[sid].projection().as_tuple()) for sid in sorted(applied_sites)
            ],
            events_updated=[e.as_tuple() for e in dirty if e.in_db],
            events_inserted=[e.as_tuple() for e in dirty if not e.in_db],
            transitions=trans_rows,
            overlay=base if base is self.shadow and base is not None else ShadowOverlay(),
        )
        # after the rows are built: remember() takes the dirty events over as they are
        prepared.overlay.remember(
            deleted, dirty, trackers, applied_sites, (r[0] for r in trans_rows)
        )
        return prepared

    async def write(self, tx: Tx, prepared: Prepared) -> BatchResult:
        """Write a prepared batch through the gate, in an order the constraints accept:
        sites before events (FK); updates of open events (which may close one) before
        inserts (open key)."""
        res = prepared.result
        await tx.write(
            "sites_deleted",
            sa.delete(t.sites).where(t.sites.c.site_id == sa.bindparam("sid")),
            [{"sid": s} for s in prepared.deleted],
        )
        await tx.write(
            "sites_upserted",
            upsert(tx.dialect, t.sites, ["site_id"], t.SETTINGS_COLUMNS),
            prepared.settings,
        )
        await tx.write_rows(
            "projections",
            t.sites.name,
            ("site_id", *t.PROJECTION_COLUMNS),
            prepared.projections,
            keys=("site_id",),
            update=t.PROJECTION_COLUMNS,
        )
        await tx.write_rows(
            "events_updated",
            t.events.name,
            EVENT_COLUMNS,
            prepared.events_updated,
            keys=("id",),
            update=_EVENT_UPDATE,
        )
        await tx.write_rows(
            "events_inserted", t.events.name, EVENT_COLUMNS, prepared.events_inserted
        )
        await tx.write_rows(
            "transitions", t.transitions.name, TRANSITION_COLUMNS, prepared.transitions
        )
        await self._write_offsets(tx, res)
        res.counts.update(tx.report)
        res.counts["messages"] += prepared.messages
        return res


def _transition_row(
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
        _json(tr.metadata),
        tr.endpoint_id,
        str(tr.check_type),
        tr.discriminator,
        started,
        _dt(tr.ended_at) if tr.ended_at else None,
        str(tr.resolution_reason) if tr.resolution_reason else None,
        tr.cause_event_id,
        msg.topic,
        msg.partition,
        msg.offset,
    )


def _why(exc: BaseException) -> str:
    text = str(exc)
    return text if isinstance(exc, ValueError) and text else f"{type(exc).__name__}: {text}"


def stored_headers(headers: dict[str, str] | None, secrets: SecretBox | None) -> Any:
    """What `custom_headers` holds in the database: names with sealed values, or with
    the values left out when no key is configured. Never the values in the clear."""
    if not headers:
        return None
    if secrets is None:
        return {name: REDACTED_VALUE for name in headers}
    return {name: secrets.seal(value) for name, value in headers.items()}


#: a header value the sink did not store (no SITEWATCH_SECRET_KEY)
REDACTED_VALUE = "<not stored>"


def _site_row(site: records.SiteRecord, secrets: SecretBox | None = None) -> dict[str, Any]:
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


def projection_of(row: Any) -> Projection:
    """The stored projection of a `jetpack_monitor_sites` row."""
    return Projection(
        SiteState(row.current_state),
        Severity(row.current_severity),
        row.active_event_id,
        LegacySiteStatus(row.site_status),
        row.last_status_change,
    )
