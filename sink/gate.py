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


class WriteGate:
    """Hands out transactions; commits them only when writes are enabled."""

    def __init__(self, engine: AsyncEngine, writes: bool) -> None:
        self.engine = engine
        self.writes = writes

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        report: Counter[str] = Counter()
        async with self.engine.connect() as conn:
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
