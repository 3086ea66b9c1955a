"""The one write switch (`SITEWATCH_SINK_WRITES`, the old DBUpdatesEnable).

Every database write of the sink (events, transitions, projection, settings, offsets,
projection repair) is a `Tx.write` call; `Tx` is only handed out by `WriteGate`, and its
`read` accepts SELECTs only. With writes off the gate counts what would have been
written, executes nothing, and rolls the (read-only) transaction back: no code path
writes around it (pr-review: "DBUpdatesEnable only gates half the writes").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


class Tx:
    """One database transaction seen through the gate."""

    def __init__(self, conn: AsyncConnection, writes: bool, report: Counter[str]) -> None:
        self._conn = conn
        self._writes = writes
        self.report = report  # label -> rows written (or that would have been)

    @property
    def dialect(self) -> str:
        return self._conn.dialect.name

    @property
    def writes(self) -> bool:
        return self._writes

    async def read(self, stmt: sa.Select[Any]) -> Sequence[sa.Row[Any]]:
        if not isinstance(stmt, sa.Select):  # reads must not be a way around the gate
            raise TypeError("Tx.read accepts SELECT statements only")
        result = await self._conn.execute(stmt)
        rows: Sequence[sa.Row[Any]] = result.all()
        return rows

    async def write(
        self, label: str, stmt: sa.Executable, rows: Sequence[dict[str, Any]] | None = None
    ) -> None:
        """Execute a write (executemany when `rows` is given) unless in shadow mode."""
        if rows is not None and not rows:
            return
        self.report[label] += len(rows) if rows is not None else 1
        if not self._writes:
            return
        if rows is None:
            await self._conn.execute(stmt)
        else:
            await self._conn.execute(stmt, list(rows))

    async def write_rows(
        self,
        label: str,
        table: str,
        columns: Sequence[str],
        rows: Sequence[tuple[Any, ...]],
        *,
        keys: Sequence[str] = (),
        update: Sequence[str] = (),
    ) -> None:
        """Bulk INSERT (or upsert on `keys`, updating `update`) of plain tuples.

        The hot path: driver-level executemany, which the MySQL drivers send as one
        multi-row INSERT, without SQLAlchemy's per-row parameter processing (P4).
        Values must be driver-ready: JSON already serialized, datetimes naive UTC.
        """
        if not rows:
            return
        self.report[label] += len(rows)
        if not self._writes:
            return
        cols = ", ".join(columns)
        if self.dialect == "mysql":
            sql = f"INSERT INTO {table} ({cols}) VALUES ({', '.join(['%s'] * len(columns))})"
            if update:
                sql += " ON DUPLICATE KEY UPDATE " + ", ".join(f"{c}=VALUES({c})" for c in update)
            # datetimes as their literal text: both drivers escape a datetime several
            # times slower than the string (P4); naive UTC, fractions kept
            params: list[tuple[Any, ...]] = [
                tuple(v.isoformat(" ") if type(v) is datetime else v for v in row) for row in rows
            ]
        else:
            sql = f"INSERT INTO {table} ({cols}) VALUES ({', '.join(['?'] * len(columns))})"
            if update:
                sql += f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET " + ", ".join(
                    f"{c}=excluded.{c}" for c in update
                )
            params = [tuple(_sqlite_value(v) for v in row) for row in rows]
        await self._conn.exec_driver_sql(sql, params)  # type: ignore[arg-type]


def _sqlite_value(value: Any) -> Any:
    # the text form SQLAlchemy's SQLite DateTime type writes and parses back
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


class WriteGate:
    """Hands out transactions; commits them only when writes are enabled."""

    def __init__(self, engine: AsyncEngine, writes: bool) -> None:
        self.engine = engine
        self.writes = writes

    @asynccontextmanager
    async def transaction(self, *, dirty_reads: bool = False) -> AsyncIterator[Tx]:
        """`dirty_reads`: READ UNCOMMITTED, for reads that lay the uncommitted batch's own
        state over whatever they see (`pipeline.py`); it spares InnoDB rebuilding old
        versions of the rows that batch is changing."""
        report: Counter[str] = Counter()
        async with self.engine.connect() as conn:
            if dirty_reads and conn.dialect.name == "mysql":
                await conn.execution_options(isolation_level="READ UNCOMMITTED")
            trans = await conn.begin()
            try:
                yield Tx(conn, self.writes, report)
            except BaseException:
                await trans.rollback()
                raise
            if self.writes:
                await trans.commit()
            else:
                await trans.rollback()
