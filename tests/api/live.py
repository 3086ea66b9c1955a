"""A live `sitewatch api` for tests: the real CLI process on MariaDB and Apache Kafka,
with keys of every scope made by `sitewatch keys create`, and helpers to seed the
database the way the sink would have written it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pymysql
import sqlalchemy as sa

from sitewatch.crypto import new_key
from sitewatch.devbroker import free_port
from sitewatch.migrations.command import upgrade
from sitewatch.sink import tables as t
from sitewatch.sink.db import connect_once
from sitewatch.streams.topics import TopicNames
from tests import mysql_util
from tests.conftest import MYSQL_SERVER_URL
from tests.kafka_util import SITEWATCH, spawn, stop


def sitewatch(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SITEWATCH, *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def create_key(env: dict[str, str], name: str, scope: str) -> str:
    done = sitewatch(env, "keys", "create", "--name", name, "--scope", scope)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@dataclass
class LiveApi:
    url: str
    db_url: str
    db_name: str
    env: dict[str, str]
    names: TopicNames
    bootstrap: str
    tokens: dict[str, str] = field(default_factory=dict)
    log: Path | None = None

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def request(
        self, method: str, path: str, who: str | None = None, **kw: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        headers = {**(self.headers(who) if who else {}), **kw.pop("headers", {})}
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, headers=headers, **kw) as resp,
        ):
            text = await resp.text()
            body: Any = None
            if text and "json" in resp.content_type:
                import json

                body = json.loads(text)
            elif text:
                body = text
            return resp.status, body, resp

    def sql(self, sql: str, *args: object) -> list[dict[str, Any]]:
        return mysql_util.rows(self.db_name, sql, *args)


def new_database() -> tuple[str, str]:
    name = f"sw_api_{uuid.uuid4().hex[:10]}"
    conn = pymysql.connect(host="127.0.0.1", user="root", password="")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    conn.close()
    return name, f"{MYSQL_SERVER_URL}/{name}"


def drop_database(name: str) -> None:
    conn = pymysql.connect(host="127.0.0.1", user="root", password="")
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
    conn.close()


@asynccontextmanager
async def live_api(
    bootstrap: str, base: Path, *, db: tuple[str, str] | None = None, prefix: str | None = None
) -> AsyncIterator[LiveApi]:
    """`sitewatch api` on a free port; keys `reader`, `writer`, `admin`, `revoked`."""
    await asyncio.to_thread(base.mkdir, parents=True, exist_ok=True)
    name, url = db or new_database()
    await upgrade(url)
    port = free_port()
    names = TopicNames(prefix or f"api{uuid.uuid4().hex[:6]}.")
    env = {
        "SITEWATCH_DATABASE_URL": url,
        "SITEWATCH_KAFKA_BOOTSTRAP": bootstrap,
        "SITEWATCH_TOPIC_PREFIX": names.prefix,
        "SITEWATCH_PARTITIONS": "4",
        "SITEWATCH_API_LISTEN": f"127.0.0.1:{port}",
        "SITEWATCH_STATE_DIR": str(base / "state"),
        "SITEWATCH_LOG_FORMAT": "json",
        # webhook secrets are stored sealed, header values opened, with it
        "SITEWATCH_SECRET_KEY": new_key(),
    }
    api = LiveApi(f"http://127.0.0.1:{port}", url, name, env, names, bootstrap)
    for who, scope in (("reader", "read"), ("writer", "write"), ("admin", "admin")):
        api.tokens[who] = create_key(env, who, scope)
    api.tokens["revoked"] = create_key(env, "revoked", "admin")
    assert sitewatch(env, "keys", "revoke", "revoked").returncode == 0
    api.log = base / "api.log"
    proc = spawn(["api"], env, api.log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body, _ = await api.request("GET", "/api/v1/health")
                if status == 200 and body["status"] == "ok":
                    break
            except aiohttp.ClientError:
                pass
            assert proc.poll() is None, api.log.read_text()[-3000:]
            assert time.monotonic() < deadline, api.log.read_text()[-3000:]
            await asyncio.sleep(0.2)
        yield api
    finally:
        code = stop(proc)
        if db is None:
            drop_database(name)
        assert code == 0, api.log.read_text()[-3000:]


# -- seeding the tables as the sink would have written them ---------------------------------


def dt(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).replace(tzinfo=None)


async def seed(
    url: str,
    sites: list[dict[str, Any]] = (),  # type: ignore[assignment]
    events: list[dict[str, Any]] = (),  # type: ignore[assignment]
    transitions: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> None:
    async with connect_once(url, begin=True) as conn:
        if sites:
            await conn.execute(sa.insert(t.sites), list(sites))
        if events:
            await conn.execute(sa.insert(t.events), list(events))
        if transitions:
            await conn.execute(sa.insert(t.transitions), list(transitions))


def site_row(site_id: int, **kw: Any) -> dict[str, Any]:
    return {"site_id": site_id, "url": f"https://s{site_id}.example", **kw}


def event_row(
    event_id: str,
    site_id: int,
    started: str,
    ended: str | None = None,
    *,
    check_type: str = "http",
    state: str | None = None,
    severity: int = 4,
    **kw: Any,
) -> dict[str, Any]:
    if state is None:
        state = "resolved" if ended else {4: "down", 3: "seems_down"}.get(severity, "warning")
    return {
        "id": event_id,
        "site_id": site_id,
        "check_type": check_type,
        "discriminator": "",
        "state": state,
        "severity": severity,
        "started_at": dt(started),
        "ended_at": dt(ended) if ended else None,
        "resolution_reason": kw.pop("resolution_reason", "verifier_cleared" if ended else None),
        **kw,
    }


def same_as_report(shown: dict[str, Any], report: dict[str, Any]) -> None:
    """A page's figures (the `value`s of its `<data>` elements, as strings) equal the API's
    uptime report of the same window."""
    for key in ("down_s", "seems_down_s", "maintenance_s", "unknown_s"):
        assert float(shown[key]) == report[key], (key, shown, report)
    for key in ("uptime_ratio", "mttr_s"):
        value = float(shown[key]) if shown[key] != "" else None
        assert value == report[key], (key, shown, report)
    assert int(shown["incidents"]) == len(report["incidents"]), (shown, report)
