"""Async engines, and one-shot connections, for whatever reads or writes the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # SQLite enforces foreign keys (ON DELETE CASCADE) only when asked, per connection.
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An engine for a `mysql+asyncmy`, `mysql+aiomysql` or `sqlite+aiosqlite` URL.

    Bound values never appear in errors (`hide_parameters`): a refused row's error text
    goes to logs and dead letters, and rows hold site credentials and webhook secrets.
    """
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, **kwargs)
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    # pre-ping: a connection broken by a server restart is replaced, not handed out
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_recycle", 3600)
    return create_async_engine(url, **kwargs)


@asynccontextmanager
async def connect_once(url: str, *, begin: bool = False) -> AsyncIterator[AsyncConnection]:
    """A connection on an engine of its own, disposed after: a command's one database
    round. With `begin`, in a transaction committed when the block ends."""
    engine = make_engine(url)
    try:
        if begin:
            async with engine.begin() as conn:
                yield conn
        else:
            async with engine.connect() as conn:
                yield conn
    finally:
        await engine.dispose()
