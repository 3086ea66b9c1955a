"""Fixtures of the sink tests: a fresh, migrated database per test (MariaDB or SQLite)."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from sitewatch.migrations.command import upgrade
from sitewatch.sink import tables as t
from sitewatch.sink.db import make_engine

MYSQL = "mysql+asyncmy://root@127.0.0.1:3306"


def _admin(sql: str) -> None:
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def new_mysql_db() -> tuple[str, str]:
    name = f"sw_sink_{uuid.uuid4().hex[:10]}"
    _admin(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    return name, f"{MYSQL}/{name}"


def drop_mysql_db(name: str) -> None:
    _admin(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'sink.db'}"
    await upgrade(url)
    return url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(db_url)
    yield eng
    await eng.dispose()


async def snapshot(engine: AsyncEngine, *, volatile: bool = True) -> dict[str, list[Any]]:
    """Every row of the sink's tables, in key order.

    With `volatile=False` the columns that differ between equivalent runs are left
    out: events' created_at (insert time) and transitions' autoincrement id (InnoDB
    may skip values after a rolled-back insert).
    """
    out: dict[str, list[Any]] = {}
    order = {
        "jetpack_monitor_sites": "site_id",
        "jetmon_events": "id",
        "jetmon_event_transitions": "transition_id",
        "sitewatch_offsets": "consumer_group, topic, kafka_partition",
    }
    skip = (
        set()
        if volatile
        else {
            ("jetmon_events", "created_at"),
            ("jetmon_event_transitions", "id"),
            ("jetpack_monitor_sites", "created_at"),
        }
    )
    async with engine.connect() as conn:
        for table in t.ALL_TABLES:
            cols = [c.name for c in table.c if (table.name, c.name) not in skip]
            rows = await conn.execute(
                sa.text(f"SELECT {', '.join(cols)} FROM {table.name} ORDER BY {order[table.name]}")
            )
            out[table.name] = [tuple(r) for r in rows]
    return out


class PrivateMariaDB:
    """A mariadbd of the test's own (own datadir, port, socket) that it may kill.

    The machine's server on 3306 is never touched. Grants are skipped: root over TCP
    without a password, like the machine's server.
    """

    def __init__(self, base: Path) -> None:
        from sitewatch.devbroker import free_port

        self.base = base
        self.datadir = base / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    @property
    def server_url(self) -> str:
        return f"mysql+asyncmy://root@127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.base / "server.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.base / 'mysqld.sock'}",
                f"--pid-file={self.base / 'mysqld.pid'}",
                "--user=root",
                "--skip-grant-tables",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user="root").close()
                return
            except pymysql.err.OperationalError:
                assert self.proc.poll() is None, (self.base / "server.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "private mariadbd did not start"
                time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-transaction, as in a crash."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.proc = None

    def execute(self, sql: str) -> None:
        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()


@pytest.fixture
def private_mariadb(tmp_path: Path) -> Iterator[PrivateMariaDB]:
    server = PrivateMariaDB(tmp_path / "mariadb")
    server.start()
    try:
        yield server
    finally:
        server.kill()
