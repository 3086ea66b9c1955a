"""The API's reads of the database (SQLAlchemy Core), as rows turned into answer Structs.

Lists are keyset pages: one more row than asked tells whether a next page exists, and
the last row's sort key becomes the cursor; no OFFSET, so a deep page costs what the
first does.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from msgspec import UNSET
from sqlalchemy.ext.asyncio import AsyncConnection

from sitewatch.crypto import is_sealed
from sitewatch.notify import tables as nt
from sitewatch.sink import tables as st
from sitewatch.streams import records

from . import cursor, models
from .availability import AVAILABILITY_CHECKS
from .problems import Kind, Problem
from .timefmt import db_time, parse, to_ms, wire, wire_or_none

#: an event's columns as answered (not the internal open_key)
EVENT_COLUMNS = tuple(c for c in st.events.c if c.name != "open_key")
HIDDEN = "<hidden>"


# -- sites ----------------------------------------------------------------------------------


def site_of(row: sa.Row[Any]) -> models.Site:
    m = row._mapping
    headers = m["custom_headers"]
    return models.Site(
        site_id=m["site_id"],
        url=m["url"],
        active=bool(m["active"]),
        check_interval_s=m["check_interval_s"],
        timeout_s=m["timeout_s"],
        recheck_interval_s=m["recheck_interval_s"],
        num_of_checks=m["num_of_checks"],
        peer_offline_limit=m["peer_offline_limit"],
        verify_timeout_s=m["verify_timeout_s"],
        keyword=m["keyword"],
        redirect_policy=m["redirect_policy"],
        custom_headers={str(k): HIDDEN for k in headers} if isinstance(headers, dict) else None,
        alert_cooldown_minutes=m["alert_cooldown_minutes"],
        maintenance=maintenance_windows(m["maintenance"]),
        checks=list(m["checks"] or ["http"]) if isinstance(m["checks"], list | None) else [],
        current_state=m["current_state"],
        current_severity=m["current_severity"],
        active_event_id=m["active_event_id"],
        site_status=m["site_status"],
        last_status_change=wire_or_none(m["last_status_change"]),
        created_at=wire_or_none(m["created_at"]),
    )


def maintenance_windows(value: Any) -> list[records.MaintenanceWindow]:
    """The stored windows; anything that is not a {start, end} pair of strings is skipped."""
    if not isinstance(value, list):
        return []
    out = []
    for item in value:
        if not isinstance(item, dict):
            continue
        start, end = item.get("start"), item.get("end")
        if isinstance(start, str) and isinstance(end, str):
            out.append(records.MaintenanceWindow(start=start, end=end))
    return out


async def site_row(conn: AsyncConnection, site_id: int) -> sa.Row[Any] | None:
    return (await conn.execute(sa.select(st.sites).where(st.sites.c.site_id == site_id))).first()


async def sites_page(conn: AsyncConnection, q: models.SitesQuery) -> models.SitePage:
    s = st.sites
    stmt = sa.select(s).order_by(s.c.site_id).limit(q.limit + 1)
    if q.cursor is not UNSET:
        (after,) = cursor.decode(cursor.List.SITES, q.cursor, int)
        stmt = stmt.where(s.c.site_id > after)
    if q.state is not UNSET:
        stmt = stmt.where(s.c.current_state == q.state.value)
    if q.active is not UNSET:
        stmt = stmt.where(s.c.active == q.active)
    rows = (await conn.execute(stmt)).all()
    data = [site_of(r) for r in rows[: q.limit]]
    more = len(rows) > q.limit
    next_cursor = cursor.encode(cursor.List.SITES, data[-1].site_id) if more else None
    return models.SitePage(data=data, next_cursor=next_cursor)


# -- events ---------------------------------------------------------------------------------


def event_of(row: sa.Row[Any]) -> models.Event:
    m = row._mapping
    return models.Event(
        event_id=m["id"],
        site_id=m["site_id"],
        endpoint_id=m["endpoint_id"],
        check_type=m["check_type"],
        discriminator=m["discriminator"],
        state=m["state"],
        severity=m["severity"],
        started_at=wire(m["started_at"]),
        ended_at=wire_or_none(m["ended_at"]),
        resolution_reason=m["resolution_reason"],
        cause_event_id=m["cause_event_id"],
        metadata=m["metadata"] if isinstance(m["metadata"], dict) else None,
        created_at=wire(m["created_at"]),
    )


async def events_page(
    conn: AsyncConnection, q: models.SiteEventsQuery, site_id: int | None
) -> models.EventPage:
    """Newest first (started_at, then id, descending)."""
    e = st.events
    stmt = (
        sa.select(*EVENT_COLUMNS).order_by(e.c.started_at.desc(), e.c.id.desc()).limit(q.limit + 1)
    )
    if site_id is not None:
        stmt = stmt.where(e.c.site_id == site_id)
    if q.state is models.EventStateFilter.OPEN:
        stmt = stmt.where(e.c.ended_at.is_(None))
        if site_id is None:
            # open events newest first are one prefix of this index, read in order; left to
            # itself MariaDB may walk (started_at) instead and skip the closed ones
            stmt = stmt.with_hint(e, "FORCE INDEX (ix_jetmon_events_open_started)", "mysql")
    elif q.state is models.EventStateFilter.CLOSED:
        stmt = stmt.where(e.c.ended_at.is_not(None))
    elif q.state is not UNSET:
        stmt = stmt.where(e.c.state == q.state.value)
    if q.check_type is not UNSET:
        stmt = stmt.where(e.c.check_type == q.check_type.value)
    if q.severity_gte is not UNSET:
        stmt = stmt.where(e.c.severity >= q.severity_gte)
    if q.from_ is not UNSET:
        stmt = stmt.where(e.c.started_at >= db_time(stamp_ms(q.from_, "from")))
    if q.to is not UNSET:
        stmt = stmt.where(e.c.started_at < db_time(stamp_ms(q.to, "to")))
    if q.cursor is not UNSET:
        started, last_id = cursor.decode(cursor.List.EVENTS, q.cursor, int, str)
        at = db_time(clamp_ms(started))
        # the first conjunct is what MariaDB can range-scan an index on; the OR refines it
        stmt = stmt.where(
            e.c.started_at <= at,
            sa.or_(e.c.started_at < at, e.c.id < last_id),
        )
    rows = (await conn.execute(stmt)).all()
    data = [event_of(r) for r in rows[: q.limit]]
    next_cursor = None
    if len(rows) > q.limit:
        last = rows[q.limit - 1]._mapping
        next_cursor = cursor.encode(cursor.List.EVENTS, to_ms(last["started_at"]), last["id"])
    return models.EventPage(data=data, next_cursor=next_cursor)


async def event_detail(conn: AsyncConnection, event_id: str) -> models.EventDetail | None:
    row = (await conn.execute(sa.select(*EVENT_COLUMNS).where(st.events.c.id == event_id))).first()
    if row is None:
        return None
    tr = st.transitions
    rows = await conn.execute(
        sa.select(tr).where(tr.c.event_id == event_id).order_by(tr.c.seq, tr.c.id)
    )
    transitions = [
        models.Transition(
            transition_id=m["transition_id"],
            seq=m["seq"],
            reason=m["reason"],
            state_before=m["state_before"],
            state_after=m["state_after"],
            severity_before=m["severity_before"],
            severity_after=m["severity_after"],
            source=m["source"],
            at=wire(m["at"]),
            metadata=m["metadata"] if isinstance(m["metadata"], dict) else None,
            kafka_topic=m["kafka_topic"],
            kafka_partition=m["kafka_partition"],
            kafka_offset=m["kafka_offset"],
        )
        for m in (r._mapping for r in rows)
    ]
    ev = event_of(row)
    return models.EventDetail(
        **{f: getattr(ev, f) for f in ev.__struct_fields__}, transitions=transitions
    )


async def event_site(conn: AsyncConnection, event_id: str) -> tuple[int, bool] | None:
    """(site_id, is open) of an event, None when there is no such event."""
    e = st.events
    row = (
        await conn.execute(sa.select(e.c.site_id, e.c.ended_at).where(e.c.id == event_id))
    ).first()
    return None if row is None else (int(row[0]), row[1] is None)


# -- the uptime report's inputs -------------------------------------------------------------


def epoch_ms(column: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[int]:
    """A DATETIME column as epoch milliseconds, computed by the database: the report reads
    thousands of rows, and handing it integers saves a datetime and a conversion each."""
    if dialect == "mysql":
        micros = sa.func.timestampdiff(
            sa.literal_column("MICROSECOND"), sa.literal_column("'1970-01-01'"), column
        )
        return sa.type_coerce(micros.op("DIV")(sa.literal_column("1000")), sa.BigInteger)
    # SQLite: julianday() keeps enough precision to round to the millisecond exactly
    days = sa.func.julianday(column) - sa.literal_column("2440587.5")
    return sa.type_coerce(sa.cast(sa.func.round(days * 86_400_000), sa.BigInteger), sa.BigInteger)


def spans_select(
    dialect: str,
    sites: sa.ColumnElement[bool],
    start_ms: int,
    end_ms: int,
    *,
    by_site: bool = False,
) -> sa.Select[Any]:
    """The availability events of `sites` overlapping [start, end), as the report's spans
    (id, check_type, severity, started ms, ended ms), after their `site_id` if `by_site`.

    Read from `ix_jetmon_events_site_uptime` alone (index-only): events ending after the
    window starts, or still open, that started before it ends. MariaDB is told to use it:
    with (site_id, started_at) alone it would fetch every row by primary key.
    """
    e = st.events
    return (
        sa.select(
            *([e.c.site_id] if by_site else []),
            e.c.id,
            e.c.check_type,
            e.c.severity,
            epoch_ms(e.c.started_at, dialect),
            epoch_ms(e.c.ended_at, dialect),
        )
        .where(
            sites,
            sa.or_(e.c.ended_at.is_(None), e.c.ended_at > db_time(start_ms)),
            e.c.started_at < db_time(end_ms),
            e.c.check_type.in_(sorted(c.value for c in AVAILABILITY_CHECKS)),
        )
        .with_hint(e, "FORCE INDEX (ix_jetmon_events_site_uptime)", "mysql")
    )


# -- webhooks -------------------------------------------------------------------------------


def webhook_of(row: sa.Row[Any]) -> models.Webhook:
    m = row._mapping
    return models.Webhook(
        id=m["id"],
        url=m["url"],
        site_id=m["site_id"],
        created_at=wire(m["created_at"]),
        secret_sealed=is_sealed(str(m["secret"])),
    )


async def webhooks_page(conn: AsyncConnection, q: models.PageQuery) -> models.WebhookPage:
    s = nt.subscriptions
    stmt = sa.select(s).order_by(s.c.id).limit(q.limit + 1)
    if q.cursor is not UNSET:
        (after,) = cursor.decode(cursor.List.WEBHOOKS, q.cursor, int)
        stmt = stmt.where(s.c.id > after)
    rows = (await conn.execute(stmt)).all()
    data = [webhook_of(r) for r in rows[: q.limit]]
    more = len(rows) > q.limit
    return models.WebhookPage(
        data=data, next_cursor=cursor.encode(cursor.List.WEBHOOKS, data[-1].id) if more else None
    )


async def webhook_row(conn: AsyncConnection, webhook_id: int) -> sa.Row[Any] | None:
    s = nt.subscriptions
    return (await conn.execute(sa.select(s).where(s.c.id == webhook_id))).first()


async def deliveries_page(
    conn: AsyncConnection, webhook_id: int, q: models.PageQuery
) -> models.DeliveryPage:
    """Newest first (created_at, then id, descending)."""
    d = nt.deliveries
    stmt = (
        sa.select(d)
        .where(d.c.subscription_id == webhook_id)
        .order_by(d.c.created_at.desc(), d.c.id.desc())
        .limit(q.limit + 1)
    )
    if q.cursor is not UNSET:
        created, last_id = cursor.decode(cursor.List.DELIVERIES, q.cursor, int, str)
        at = db_time(clamp_ms(created))
        stmt = stmt.where(d.c.created_at <= at, sa.or_(d.c.created_at < at, d.c.id < last_id))
    rows = (await conn.execute(stmt)).all()
    data = [
        models.Delivery(
            id=m["id"],
            subscription_id=m["subscription_id"],
            transition_id=m["transition_id"],
            site_id=m["site_id"],
            kind=m["kind"],
            state=m["state"],
            attempts=m["attempts"],
            next_attempt_at=wire_or_none(m["next_attempt_at"]),
            last_attempt_at=wire_or_none(m["last_attempt_at"]),
            last_status=m["last_status"],
            last_error=m["last_error"],
            created_at=wire(m["created_at"]),
            sent_at=wire_or_none(m["sent_at"]),
        )
        for m in (r._mapping for r in rows[: q.limit])
    ]
    next_cursor = None
    if len(rows) > q.limit:
        last = rows[q.limit - 1]._mapping
        next_cursor = cursor.encode(cursor.List.DELIVERIES, to_ms(last["created_at"]), last["id"])
    return models.DeliveryPage(data=data, next_cursor=next_cursor)


# -- times ----------------------------------------------------------------------------------

#: DATETIME's range (MySQL/MariaDB): times outside it are clamped before a query
MIN_MS = -30_610_224_000_000  # 1000-01-01T00:00:00Z
MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def clamp_ms(ms: int) -> int:
    return max(MIN_MS, min(MAX_MS, ms))


def stamp_ms(stamp: str, name: str) -> int:
    """A query parameter's wire timestamp to ms (clamped); a 400 if it is no real time."""
    try:
        return clamp_ms(parse(stamp))
    except (ValueError, OverflowError):
        raise Problem(Kind.INVALID_PARAMETER, f"{name}: not a real time: {stamp!r}") from None
