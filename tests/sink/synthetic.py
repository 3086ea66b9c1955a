"""Synthetic lifecycle-like transition sequences (the sink tests, bench P4); valid by
construction.

Per tuple: open seems_down -> maybe verifier_confirmed down -> close; or a TLS warning
that moves between warning and degraded and closes; sometimes a cause_linked change.
Ids are deterministic (uuid5), times move forward (with ties, to exercise tie-breaks).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType, EventState, Reason
from sitewatch.streams.message import Record

NS = uuid.UUID("0b5e7f4a-8a53-4bd5-9d8f-3b0c2b7f1a11")
START_MS = 1_790_000_000_000

TUPLES: list[tuple[int | None, CheckType, str]] = [
    (None, CheckType.HTTP, ""),
    (None, CheckType.TLS_EXPIRY, ""),
    (None, CheckType.DNS, ""),
    (2, CheckType.HTTP, ""),
    (None, CheckType.TCP, "443"),
]


@dataclass
class _Open:
    event_id: str
    state: EventState
    severity: int
    seq: int
    started_at: str


def transitions(rng: random.Random, n_sites: int, count: int) -> Iterator[records.Transition]:
    """`count` transitions over sites 1..n_sites, each site's events following docs/lifecycle.md."""
    clock = START_MS
    opened: dict[tuple[int, int], _Open] = {}
    for _ in range(count):
        clock += rng.choice((0, 0, 1, 250, 1000, 30_000))
        site = rng.randint(1, n_sites)
        ti = rng.randrange(len(TUPLES))
        endpoint, check, disc = TUPLES[ti]
        at = timefmt.from_ms(clock)
        ev = opened.get((site, ti))
        if ev is None:
            tls = check is CheckType.TLS_EXPIRY
            state = (
                rng.choice((EventState.WARNING, EventState.DEGRADED))
                if tls
                else (EventState.SEEMS_DOWN)
            )
            sev = {EventState.WARNING: 1, EventState.DEGRADED: 2}.get(state, 3)
            eid = str(uuid.uuid5(NS, f"{site}|{ti}|{clock}"))
            ev = opened[(site, ti)] = _Open(eid, state, sev, 0, at)
            reason, before, before_sev = Reason.OPENED, EventState.UP, 0
        else:
            before, before_sev = ev.state, ev.severity
            roll = rng.random()
            if roll < 0.1:
                reason = Reason.CAUSE_LINKED
            elif ev.state is EventState.SEEMS_DOWN and roll < 0.55:
                reason, ev.state, ev.severity = Reason.VERIFIER_CONFIRMED, EventState.DOWN, 4
            elif ev.state is EventState.WARNING and roll < 0.5:
                reason, ev.state, ev.severity = (Reason.SEVERITY_ESCALATION, EventState.DEGRADED, 2)
            elif ev.state is EventState.DEGRADED and roll < 0.5:
                reason, ev.state, ev.severity = (
                    Reason.SEVERITY_DEESCALATION,
                    EventState.WARNING,
                    1,
                )
            else:
                reason = {
                    EventState.SEEMS_DOWN: rng.choice((Reason.PROBE_CLEARED, Reason.FALSE_ALARM)),
                    EventState.DOWN: rng.choice(
                        (Reason.VERIFIER_CLEARED, Reason.MANUAL_OVERRIDE, Reason.AUTO_TIMEOUT)
                    ),
                }.get(ev.state, Reason.PROBE_CLEARED)
        ev.seq += 1
        closing = reason.closes
        yield records.Transition(
            transition_id=str(uuid.uuid5(NS, f"{ev.event_id}|{ev.seq}")),
            event_id=ev.event_id,
            site_id=site,
            endpoint_id=endpoint,
            check_type=check,
            discriminator=disc,
            seq=ev.seq,
            reason=reason,
            state_before=before,
            state_after=EventState.RESOLVED if closing else ev.state,
            severity_before=before_sev,
            severity_after=None if closing else ev.severity,
            started_at=ev.started_at,
            ended_at=at if closing else None,
            resolution_reason=reason if closing else None,
            cause_event_id=None,
            at=at,
            source="local",
            metadata={"n": ev.seq} if rng.random() < 0.3 else {},
        )
        if closing:
            del opened[(site, ti)]


def as_messages(topic: str, items: list[records.Transition], partitions: int = 4) -> list[Record]:
    """Messages as the broker would number them: partition by site, offsets per partition."""
    next_offset = [0] * partitions
    out: list[Record] = []
    for tr in items:
        p = tr.site_id % partitions
        out.append(Record(topic, p, next_offset[p], records.site_key(tr.site_id),
                              records.encode(tr)))  # fmt: skip
        next_offset[p] += 1
    return out
