"""Issue 11 for the sink (items 1, 4, 5) on the real MariaDB, in process.

Records over their columns are refused at the edge (a dead letter naming the field)
instead of by the database; only transient database errors retry; site header values
are never stored in the clear; bound values never appear in errors.
"""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from sitewatch import crypto
from sitewatch.migrations.command import upgrade
from sitewatch.settings import Settings
from sitewatch.sink import dberrors
from sitewatch.sink import tables as t
from sitewatch.sink.batch import BatchApplier
from sitewatch.sink.consumer import Sink
from sitewatch.sink.db import make_engine
from sitewatch.sink.dberrors import DbFailure
from sitewatch.sink.gate import WriteGate
from sitewatch.sink.rows import REDACTED_VALUE
from sitewatch.streams import records

from . import synthetic
from .conftest import drop_mysql_db, new_mysql_db, snapshot
from .helpers import GROUP, NOW_MS, TOPICS, Log, feed

pytestmark = pytest.mark.integration


def _tampered(tr: records.Transition, **changes: Any) -> bytes:
    return json.dumps({**json.loads(records.encode(tr)), **changes}).encode()


async def test_transition_longer_than_its_columns_is_refused_at_the_edge(
    engine: AsyncEngine,
) -> None:
    log = Log()
    items = list(synthetic.transitions(random.Random(3), n_sites=3, count=30))
    opened = next(x for x in items if x.reason.value == "opened")
    msgs = [log.transition(x) for x in items[:15]]
    for change in (
        {"discriminator": "d" * 300},  # a String(128) column: MariaDB used to refuse it
        {"source": "operator:" + "a" * 400},  # String(255): the projection drifted for good
        {"metadata": {"x": json.loads("[" * 40 + "]" * 40)}},  # MariaDB refuses depth 32
        {"severity_after": 99},  # Severity(99) crashed the next batch's load
    ):
        bad = _tampered(opened, event_id="bad", transition_id=f"bad:{len(msgs)}", **change)
        msgs.append(log.msg(TOPICS.site_events, 0, records.site_key(opened.site_id), bad))
    msgs += [log.transition(x) for x in items[15:]]
    (res,) = await feed(engine, msgs)
    assert res.counts["transitions"] == 30 and res.counts["dead_letters"] == 4
    errors = [letter.error for letter, _ in res.dead_letters]
    assert all(e.startswith("malformed transition") for e in errors)
    for name, error in zip(
        ("discriminator", "source", "metadata", "severity_after"), errors, strict=True
    ):
        assert name in error or "nested deeper" in error
    snap = await snapshot(engine)
    assert len(snap["jetmon_event_transitions"]) == 30


def _dbapi(cls: type[sa.exc.DBAPIError], *args: object) -> sa.exc.DBAPIError:
    return cls("INSERT ...", {}, Exception(*args))


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_dbapi(sa.exc.OperationalError, 1213, "Deadlock found"), DbFailure.TRANSIENT),
        (_dbapi(sa.exc.OperationalError, 1205, "Lock wait timeout"), DbFailure.TRANSIENT),
        (_dbapi(sa.exc.OperationalError, 2013, "Lost connection"), DbFailure.TRANSIENT),
        (_dbapi(sa.exc.OperationalError, 1290, "--read-only"), DbFailure.TRANSIENT),
        (_dbapi(sa.exc.OperationalError, "database is locked"), DbFailure.TRANSIENT),
        (_dbapi(sa.exc.OperationalError, 4025, "CONSTRAINT failed"), DbFailure.REFUSED),
        (_dbapi(sa.exc.OperationalError, 1644, "closed event row is immutable"), DbFailure.REFUSED),
        (_dbapi(sa.exc.OperationalError, 3140, "Invalid JSON text"), DbFailure.REFUSED),
        (_dbapi(sa.exc.IntegrityError, 1062, "Duplicate entry"), DbFailure.REFUSED),
        (_dbapi(sa.exc.DataError, 1406, "Data too long"), DbFailure.REFUSED),
        (_dbapi(sa.exc.ProgrammingError, 1146, "Table doesn't exist"), DbFailure.FATAL),
        (_dbapi(sa.exc.OperationalError, 1045, "Access denied"), DbFailure.FATAL),
        (_dbapi(sa.exc.OperationalError, "no such table: jetmon_events"), DbFailure.FATAL),
        (ConnectionResetError(), DbFailure.TRANSIENT),
        (TypeError("a bug met by one record"), DbFailure.REFUSED),
    ],
)
def test_only_transient_database_errors_retry(exc: BaseException, kind: DbFailure) -> None:
    assert dberrors.classify(exc) is kind


async def test_transient_error_retries_the_whole_batch_without_splitting(
    db_url: str, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = Log()
    items = list(synthetic.transitions(random.Random(4), n_sites=2, count=20))
    msgs = [log.transition(x) for x in items]
    sink = Sink(Settings(database_url=db_url, topic_prefix="sinktest."), engine=engine)
    calls: list[int] = []
    real = sink.applier.apply

    async def flaky(tx: Any, messages: Any, now_ms: int) -> Any:
        calls.append(len(messages))
        if len(calls) == 1:
            raise _dbapi(sa.exc.OperationalError, 1213, "Deadlock found")
        return await real(tx, messages, now_ms)

    monkeypatch.setattr(sink.applier, "apply", flaky)
    result = await sink.process(msgs)
    assert calls == [20, 20] and result.counts["transitions"] == 20


async def test_site_header_values_never_stored_in_the_clear(engine: AsyncEngine) -> None:
    box = crypto.SecretBox([crypto.new_key()])
    headers = {"Authorization": "Bearer s3cr3t", "X-Other": "v"}
    log = Log()
    sealed_site = records.SiteRecord(site_id=1, url="http://a/", custom_headers=headers)
    bare_site = records.SiteRecord(site_id=2, url="http://b/", custom_headers=headers)
    async with WriteGate(engine, True).transaction() as tx:
        await BatchApplier(TOPICS, GROUP, box).apply(tx, [log.site(sealed_site)], NOW_MS)
    async with WriteGate(engine, True).transaction() as tx:
        await BatchApplier(TOPICS, GROUP).apply(tx, [log.site(bare_site)], NOW_MS)
    async with engine.connect() as conn:
        rows = dict(
            (await conn.execute(sa.select(t.sites.c.site_id, t.sites.c.custom_headers))).all()
        )
    assert "s3cr3t" not in json.dumps(rows)
    assert {k: box.open(v) for k, v in rows[1].items()} == headers
    assert rows[2] == {name: REDACTED_VALUE for name in headers}


async def test_refused_row_error_hides_bound_values(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        with pytest.raises(sa.exc.DBAPIError) as caught:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.insert(t.sites).values(site_id=1, url="http://x/", keyword="s3cr3t" * 400)
                )
    finally:
        await engine.dispose()
    assert "s3cr3t" not in str(caught.value) and "hidden" in str(caught.value)
    assert "s3cr3t" not in dberrors.describe(caught.value)


async def test_migration_0003_scrubs_stored_header_values_and_widens_secrets() -> None:
    name, url = new_mysql_db()
    try:
        await upgrade(url, "0002")
        engine = make_engine(url)
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "INSERT INTO jetpack_monitor_sites (site_id, url, custom_headers) VALUES "
                "(1, 'http://a/', '{\"Authorization\": \"Bearer s3cr3t\"}'), (2, 'http://b/', NULL)"
            )
        await upgrade(url)
        async with engine.connect() as conn:
            stored = (
                await conn.exec_driver_sql("SELECT custom_headers FROM jetpack_monitor_sites")
            ).all()
            width = (
                await conn.exec_driver_sql(
                    "SELECT CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS WHERE "
                    f"TABLE_SCHEMA='{name}' AND TABLE_NAME='sitewatch_webhook_subscriptions' "
                    "AND COLUMN_NAME='secret'"
                )
            ).scalar()
        await engine.dispose()
    finally:
        drop_mysql_db(name)
    assert "s3cr3t" not in str(stored)
    assert msgspec.json.decode(stored[0][0]) == {"Authorization": REDACTED_VALUE}
    assert width == 1024
