"""The API's reads of the database (SQLAlchemy Core), as rows turned into answer Structs.

Lists are keyset pages: one more row than asked tells whether a next page exists, and
the last row's sort key becomes the cursor; no OFFSET, so a deep page costs what the
first does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import msgspec
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
from .timefmt import db_time, parse, to_ms, wire

#: an event's columns as answered (not the internal open_key)
EVENT_COLUMNS = tuple(c for c in st.events.c if c.name != "open_key")
HIDDEN = "<hidden>"

T = TypeVar("T")
Answer = TypeVar("Answer", bound=msgspec.Struct)


# -- rows as answers, rows as pages ---------------------------------------------------------


def answer_of(shape: type[Answer], m: sa.RowMapping, **given: Any) -> Answer:
    """`shape` with each field the column of its name (a time in the wire format), but
    for the fields `given` says."""
    fields = shape.__struct_fields__
    return shape(**{f: given[f] if f in given else _wire_value(m[f]) for f in fields})


def _wire_value(value: Any) -> Any:
    return wire(value) if isinstance(value, datetime) else value


def json_object(value: Any) -> dict[str, Any] | None:
    """A JSON column that should hold an object; anything else answers null."""
    return value if isinstance(value, dict) else None


def ascending(
    stmt: sa.Select[Any], key: sa.ColumnElement[int], listed: cursor.List, q: models.PageQuery
) -> sa.Select[Any]:
    """`stmt` as a page of `listed` in ascending `key` (an id) order, after the cursor's."""
    stmt = stmt.order_by(key).limit(q.limit + 1)
    if q.cursor is not UNSET:
        (after,) = cursor.decode(listed, q.cursor, int)
        stmt = stmt.where(key > after)
    return stmt


def newest_first(
    stmt: sa.Select[Any],
    at: sa.ColumnElement[datetime],
    key: sa.ColumnElement[str],
    listed: cursor.List,
    q: models.PageQuery,
) -> sa.Select[Any]:
    """`stmt` as a page of `listed`, newest first (`at`, then `key`, descending), after
    the cursor's row."""
    stmt = stmt.order_by(at.desc(), key.desc()).limit(q.limit + 1)
    if q.cursor is not UNSET:
        stamp, last_key = cursor.decode(listed, q.cursor, int, str)
        moment = db_time(clamp_ms(stamp))
        # the first conjunct is what MariaDB can range-scan an index on; the OR refines it
        stmt = stmt.where(at <= moment, sa.or_(at < moment, key < last_key))
    return stmt


async def read_page(
    conn: AsyncConnection,
    stmt: sa.Select[Any],
    q: models.PageQuery,
    of: Callable[[sa.RowMapping], T],
    listed: cursor.List,
    position: Callable[[sa.RowMapping], tuple[Any, ...]],
) -> tuple[list[T], str | None]:
    """The answers of a page (`stmt` reads one row more than `q.limit`), and the cursor of
    the next page, the `position` of its last row, when that row was there."""
    rows = (await conn.execute(stmt)).all()
    data = [of(r._mapping) for r in rows[: q.limit]]
    if len(rows) <= q.limit:
        return data, None
    return data, cursor.encode(listed, *position(rows[q.limit - 1]._mapping))


# -- sites ----------------------------------------------------------------------------------


def site_of(m: sa.RowMapping) -> models.Site:
    headers = m["custom_headers"]
    return answer_of(
        models.Site,
        m,
        active=bool(m["active"]),
        custom_headers={str(k): HIDDEN for k in headers} if isinstance(headers, dict) else None,
        maintenance=maintenance_windows(m["maintenance"]),
        checks=list(m["checks"] or ["http"]) if isinstance(m["checks"], list | None) else [],
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
    stmt = sa.select(s)
    if q.state is not UNSET:
        stmt = stmt.where(s.c.current_state == q.state.value)
    if q.active is not UNSET:
        stmt = stmt.where(s.c.active == q.active)
    stmt = ascending(stmt, s.c.site_id, cursor.List.SITES, q)
    data, next_cursor = await read_page(
        conn, stmt, q, site_of, cursor.List.SITES, lambda m: (m["site_id"],)
    )
    return models.SitePage(data=data, next_cursor=next_cursor)


# -- events ---------------------------------------------------------------------------------


def event_of(m: sa.RowMapping) -> models.Event:
    return answer_of(models.Event, m, event_id=m["id"], metadata=json_object(m["metadata"]))


async def events_page(
    conn: AsyncConnection, q: models.SiteEventsQuery, site_id: int | None
) -> models.EventPage:
    """Newest first (started_at, then id, descending)."""
    e = st.events
    stmt = sa.select(*EVENT_COLUMNS)
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
    stmt = newest_first(stmt, e.c.started_at, e.c.id, cursor.List.EVENTS, q)
    data, next_cursor = await read_page(
        conn, stmt, q, event_of, cursor.List.EVENTS, lambda m: (to_ms(m["started_at"]), m["id"])
    )
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
        answer_of(models.Transition, m, metadata=json_object(m["metadata"]))
        for m in (r._mapping for r in rows)
    ]
    ev = event_of(row._mapping)
    return models.EventDetail(**msgspec.structs.asdict(ev), transitions=transitions)


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


def webhook_of(m: sa.RowMapping) -> models.Webhook:
    return answer_of(models.Webhook, m, secret_sealed=is_sealed(str(m["secret"])))


async def webhooks_page(conn: AsyncConnection, q: models.PageQuery) -> models.WebhookPage:
    s = nt.subscriptions
    stmt = ascending(sa.select(s), s.c.id, cursor.List.WEBHOOKS, q)
    data, next_cursor = await read_page(
        conn, stmt, q, webhook_of, cursor.List.WEBHOOKS, lambda m: (m["id"],)
    )
    return models.WebhookPage(data=data, next_cursor=next_cursor)


async def webhook_row(conn: AsyncConnection, webhook_id: int) -> sa.Row[Any] | None:
    s = nt.subscriptions
    return (await conn.execute(sa.select(s).where(s.c.id == webhook_id))).first()


async def deliveries_page(
    conn: AsyncConnection, webhook_id: int, q: models.PageQuery
) -> models.DeliveryPage:
    """Newest first (created_at, then id, descending)."""
    d = nt.deliveries
    stmt = sa.select(d).where(d.c.subscription_id == webhook_id)
    stmt = newest_first(stmt, d.c.created_at, d.c.id, cursor.List.DELIVERIES, q)
    data, next_cursor = await read_page(
        conn,
        stmt,
        q,
        lambda m: answer_of(models.Delivery, m),
        cursor.List.DELIVERIES,
        lambda m: (to_ms(m["created_at"]), m["id"]),
    )
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
