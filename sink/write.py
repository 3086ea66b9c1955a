"""The statements of one batch, in the one order the schema accepts, through the gate.

The order, and the constraint each step respects (sink/tables.py, migration 0001):

1. `sites_deleted`: a tombstone deletes the site row first, and ON DELETE CASCADE its
   events: the fold dropped them already (`fold.cascade`), and an event the batch then
   opens for that site must not meet an old open one of its tuple (UNIQUE `open_key`).
2. `sites_upserted`, then 3. `projections`: the site row must exist before any event
   row of it (FK `jetmon_events.site_id`); the projection upsert creates the row of a
   site whose settings have not arrived yet (url '' and the defaults).
4. `events_updated` before 5. `events_inserted`: an update may close an event, which
   frees its open key (UNIQUE `open_key`, one open event per tuple) for the event a
   later transition of the batch opens for the same tuple. A row closed in the database
   is never among the updates: the trigger `jetmon_events_closed_immutable` would
   refuse it (the fold dead-letters any change of a closed event).
6. `transitions`: append-only, in log order (their autoincrement id is the log order
   `sitewatch projection check` folds); UNIQUE `transition_id` is the idempotence.
7. `offsets` last, in the same transaction (ADR 3), moved forward only (GREATEST).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sitewatch.crypto import SecretBox

from . import offsets
from . import tables as t
from .fold import Changes
from .gate import Tx
from .rows import EVENT_COLUMNS, EVENT_UPDATE, TRANSITION_COLUMNS, site_row


def upsert(dialect: str, table: sa.Table, keys: Sequence[str], update: Sequence[str]) -> sa.Insert:
    """INSERT ... ON DUPLICATE KEY UPDATE (MySQL) / ON CONFLICT DO UPDATE (SQLite)."""
    if dialect == "mysql":
        my = mysql_insert(table)
        return my.on_duplicate_key_update({c: my.inserted[c] for c in update})
    lite = sqlite_insert(table)
    return lite.on_conflict_do_update(
        index_elements=list(keys), set_={c: lite.excluded[c] for c in update}
    )


@dataclass(slots=True)
class Rows:
    """A batch's rows, driver-ready, one field per step above."""

    deleted: list[int]
    settings: list[dict[str, Any]]
    projections: list[tuple[Any, ...]]
    events_updated: list[tuple[Any, ...]]
    events_inserted: list[tuple[Any, ...]]
    transitions: list[tuple[Any, ...]]


def rows_of(changes: Changes, secrets: SecretBox | None) -> Rows:
    """The rows of `changes`. Built when the batch is folded: in the pipeline, this CPU
    work overlaps the previous batch's writes. `secrets` seals header values."""
    return Rows(
        deleted=changes.deleted,
        settings=[site_row(s, secrets) for s in changes.settings],
        projections=[
            (sid, *tracker.projection().as_tuple()) for sid, tracker in changes.sites.items()
        ],
        events_updated=[e.as_tuple() for e in changes.updated],
        events_inserted=[e.as_tuple() for e in changes.inserted],
        transitions=changes.transitions,
    )


async def write(tx: Tx, rows: Rows) -> None:
    """Steps 1 to 6 (the caller writes the offsets, step 7, with `write_offsets`)."""
    await tx.write(
        "sites_deleted",
        sa.delete(t.sites).where(t.sites.c.site_id == sa.bindparam("sid")),
        [{"sid": s} for s in rows.deleted],
    )
    await tx.write(
        "sites_upserted",
        upsert(tx.dialect, t.sites, ["site_id"], t.SETTINGS_COLUMNS),
        rows.settings,
    )
    await tx.write_rows(
        "projections",
        t.sites.name,
        ("site_id", *t.PROJECTION_COLUMNS),
        rows.projections,
        keys=("site_id",),
        update=t.PROJECTION_COLUMNS,
    )
    await tx.write_rows(
        "events_updated",
        t.events.name,
        EVENT_COLUMNS,
        rows.events_updated,
        keys=("id",),
        update=EVENT_UPDATE,
    )
    await tx.write_rows("events_inserted", t.events.name, EVENT_COLUMNS, rows.events_inserted)
    await tx.write_rows("transitions", t.transitions.name, TRANSITION_COLUMNS, rows.transitions)


async def write_offsets(tx: Tx, group: str, moved: offsets.Offsets) -> None:
    """Step 7: the consumer offsets, forward only."""
    await tx.write("offsets", offsets.upsert(tx.dialect), offsets.rows(group, moved))
