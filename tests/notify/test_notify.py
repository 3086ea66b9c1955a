"""`sitewatch notify` on the real broker and MariaDB, delivering to local receivers.

Transitions are written to `site-events` as the worker would; the notifier runs as a
process; receivers on 127.0.0.1 check every signature. Covered: which transitions
notify, maintenance, cooldown, retries then success, giving up, the webhooks CLI, and
a SIGKILL mid-delivery (every delivery id arrives, none is lost, and duplicates are
only re-sends of the same id).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pymysql
import pytest

from sitewatch import crypto
from sitewatch.streams import ids, records, timefmt
from sitewatch.streams.enums import CheckType, EventState, Reason
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import TopicNames
from tests.kafka_util import SITEWATCH, RunningBroker, produce, spawn, stop
from tests.notify.receiver import Receiver, serve

pytestmark = pytest.mark.integration

T0 = timefmt.to_ms("2026-11-26T10:00:00.000Z")
MIN = 60_000


def transition(
    site_id: int,
    event: str,
    seq: int,
    reason: Reason,
    before: EventState,
    after: EventState,
    at_ms: int,
    started_ms: int,
) -> records.Transition:
    event_id = ids.uuid5(f"test-event|{site_id}|{event}")
    closing = after is EventState.RESOLVED
    sev = {"up": 0, "seems_down": 3, "down": 4}
    return records.Transition(
        transition_id=ids.transition_id_for(event_id, seq),
        event_id=event_id,
        site_id=site_id,
        check_type=CheckType.HTTP,
        seq=seq,
        reason=reason,
        state_before=before,
        state_after=after,
        severity_before=sev[before.value],
        severity_after=None if closing else sev[after.value],
        started_at=timefmt.from_ms(started_ms),
        ended_at=timefmt.from_ms(at_ms) if closing else None,
        resolution_reason=reason if closing else None,
        at=timefmt.from_ms(at_ms),
        source="local",
    )


def outage(
    site_id: int, event: str, start: int, down_after: int | None, end: int
) -> list[records.Transition]:
    """opened -> (verifier_confirmed) -> closed, as the worker emits them."""
    S, D, U, R = EventState.SEEMS_DOWN, EventState.DOWN, EventState.UP, EventState.RESOLVED
    out = [transition(site_id, event, 1, Reason.OPENED, U, S, start, start)]
    if down_after is None:
        out.append(transition(site_id, event, 2, Reason.FALSE_ALARM, S, R, end, start))
        return out
    out.append(transition(site_id, event, 2, Reason.VERIFIER_CONFIRMED, S, D, down_after, start))
    out.append(transition(site_id, event, 3, Reason.VERIFIER_CLEARED, D, R, end, start))
    return out


@pytest.fixture
def db(db_url: str) -> str:
    """The shared migrated MariaDB database (tests/conftest.py)."""
    return db_url


def sql(url: str, query: str, *args: object) -> list[tuple[object, ...]]:
    conn = pymysql.connect(
        host="127.0.0.1", user="root", password="", database=url.rsplit("/", 1)[1], autocommit=True
    )
    try:
        with conn.cursor() as cur:
            cur.execute(query, args)
            return list(cur.fetchall())
    finally:
        conn.close()


#: seals the webhook secrets at rest (the notifier opens them with it)
SECRET_KEY = crypto.new_key()


def env_for(broker: RunningBroker, prefix: str, db: str, scale: str) -> dict[str, str]:
    return {
        "SITEWATCH_SECRET_KEY": SECRET_KEY,
        # the receivers listen on 127.0.0.1, which the address guard refuses otherwise
        "SITEWATCH_PROBE_ALLOW_PRIVATE": "1",
        "SITEWATCH_KAFKA_BOOTSTRAP": broker.bootstrap,
        "SITEWATCH_TOPIC_PREFIX": prefix,
        "SITEWATCH_DATABASE_URL": db,
        "SITEWATCH_PARTITIONS": "4",
        "SITEWATCH_NOTIFY_RETRY_SCALE": scale,
        "SITEWATCH_NOTIFY_TIMEOUT_S": "3",
        "SITEWATCH_LOG_FORMAT": "json",
    }


def webhooks(env: dict[str, str], *args: str, secret: str | None = None) -> str:
    """`sitewatch webhooks ...`; a secret goes in on stdin, never on the command line."""
    stdin = ("--secret-file", "-") if secret is not None else ()
    done = subprocess.run(
        [SITEWATCH, "webhooks", *args, *stdin],
        env={**os.environ, **env},
        input=None if secret is None else f"{secret}\n".encode(),
        capture_output=True,
        timeout=60,
        check=True,
    )
    return done.stdout.decode()


async def wait_for(check: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_notifier_signed_retries_maintenance_cooldown_and_give_up(
    broker: RunningBroker, unique_prefix: str, db: str, tmp_path: Path
) -> None:
    env = env_for(broker, unique_prefix, db, "0.0002")  # retries after 12 ms .. 4.3 s
    good = Receiver(secret="s3cret-one-0123456789", fail_first=2)
    only_two = Receiver(secret="s3cret-two-0123456789")
    broken = Receiver(secret="s3cret-three-0123456789", always_fail=True)
    runners = await serve(good, only_two, broken)
    sub_all = int(webhooks(env, "add", good.url, secret=good.secret).split()[0])
    webhooks(env, "add", only_two.url, "--site", "2", secret=only_two.secret)
    sub_broken = int(
        webhooks(env, "add", broken.url, "--site", "3", secret=broken.secret).split()[0]
    )
    temp = webhooks(env, "add", "http://127.0.0.1:9/nowhere")
    assert "secret: " in temp  # generated and shown once
    listed = webhooks(env, "list")
    assert good.url in listed and good.secret not in listed and "sealed" in listed
    stored = sql(db, "SELECT secret FROM sitewatch_webhook_subscriptions")
    assert all(str(s).startswith("enc:v1:") for (s,) in stored)  # sealed at rest
    webhooks(env, "remove", temp.split()[0])
    assert "nowhere" not in webhooks(env, "list")

    window = json.dumps(
        [{"start": timefmt.from_ms(T0 + 30 * MIN), "end": timefmt.from_ms(T0 + 120 * MIN)}]
    )
    sql(
        db,
        "INSERT INTO jetpack_monitor_sites (site_id, url) VALUES (1, 'http://one/'), (2, 'http://two/')",
    )
    sql(
        db,
        "INSERT INTO jetpack_monitor_sites (site_id, url, maintenance) VALUES (3, 'http://3/', %s)",
        window,
    )
    site1 = (
        outage(1, "a", T0, T0 + 1 * MIN, T0 + 5 * MIN)  # down + recovery: notified
        + outage(1, "b", T0 + 10 * MIN, T0 + 11 * MIN, T0 + 12 * MIN)  # within the cooldown
        + outage(1, "c", T0 + 50 * MIN, T0 + 51 * MIN, T0 + 52 * MIN)  # cooldown over
    )
    site2 = outage(2, "x", T0, None, T0 + 1 * MIN)  # seems_down then a false alarm: nothing
    site3 = outage(3, "m", T0, T0 + 1 * MIN, T0 + 40 * MIN)  # recovery inside maintenance
    rows = [(records.site_key(tr.site_id), records.encode(tr)) for tr in site1 + site2 + site3]
    await ensure_topics(broker.bootstrap, TopicNames(unique_prefix), 4)
    await produce(broker.bootstrap, f"{unique_prefix}site-events", rows)
    await produce(broker.bootstrap, f"{unique_prefix}site-events", rows[:4])  # redelivered

    proc = spawn(["notify", "--from-beginning"], env, tmp_path / "notify.log")
    try:
        notified = [site1[1], site1[2], site1[7], site1[8], site3[1]]
        want = {ids.delivery_id_for(sub_all, tr.transition_id) for tr in notified}
        await wait_for(lambda: set(good.delivered_ids()) >= want, 60, "deliveries")
        await wait_for(
            lambda: (
                sql(
                    db,
                    "SELECT state FROM sitewatch_webhook_deliveries WHERE subscription_id=%s",
                    sub_broken,
                )
                == [("failed",)]
            ),
            60,
            "the broken receiver's delivery to be given up",
        )
        await asyncio.sleep(1.0)  # nothing else arrives
    finally:
        assert stop(proc) == 0, (tmp_path / "notify.log").read_text()[-3000:]
        for runner in runners:
            await runner.cleanup()

    assert sorted(good.delivered_ids()) == sorted(want)  # each exactly once
    assert good.bad_signatures == 0 and only_two.got == [] and broken.got == []
    assert broken.attempts == {ids.delivery_id_for(sub_broken, site3[1].transition_id): 6}
    types = {(p["site_id"], p["type"], p["transition"]["reason"]) for p in good.got}  # type: ignore[index]
    assert types == {
        (1, "site.down", "verifier_confirmed"),
        (1, "site.recovered", "verifier_cleared"),
        (3, "site.down", "verifier_confirmed"),
    }
    decisions = dict(sql(db, "SELECT transition_id, decision FROM sitewatch_notify_alerts"))
    assert decisions == {
        site1[1].transition_id: "notify",
        site1[2].transition_id: "notify",
        site1[4].transition_id: "cooldown",
        site1[5].transition_id: "no_down_alert",
        site1[7].transition_id: "notify",
        site1[8].transition_id: "notify",
        site3[1].transition_id: "notify",
        site3[2].transition_id: "muted_maintenance",
    }
    states = sql(
        db,
        "SELECT id, state, attempts FROM sitewatch_webhook_deliveries WHERE subscription_id=%s",
        sub_all,
    )
    assert {s for _, s, _ in states} == {"sent"}
    assert all(a == 3 for _, _, a in states)  # two 503s then a 204, for every delivery


async def test_sigkill_mid_delivery_loses_nothing_and_duplicates_only_by_id(
    broker: RunningBroker, unique_prefix: str, db: str, tmp_path: Path
) -> None:
    env = env_for(broker, unique_prefix, db, "0.01")
    slow = Receiver(secret="k" * 16, delay_s=1.0)
    runners = await serve(slow)
    sub = int(webhooks(env, "add", slow.url, secret=slow.secret).split()[0])
    transitions: list[records.Transition] = []
    for site in range(1, 13):
        transitions += outage(site, "e", T0, T0 + MIN, T0 + 2 * MIN)
    await ensure_topics(broker.bootstrap, TopicNames(unique_prefix), 4)
    await produce(
        broker.bootstrap,
        f"{unique_prefix}site-events",
        [(records.site_key(tr.site_id), records.encode(tr)) for tr in transitions],
    )
    want = {
        ids.delivery_id_for(sub, tr.transition_id)
        for tr in transitions
        if tr.reason in (Reason.VERIFIER_CONFIRMED, Reason.VERIFIER_CLEARED)
    }
    assert len(want) == 24
    log = tmp_path / "notify.log"
    proc = spawn(["notify", "--from-beginning"], env, log)
    try:
        await wait_for(lambda: sum(slow.attempts.values()) >= 8, 60, "requests in flight")
        stop(proc, signal.SIGKILL)  # while requests are in flight, unanswered
        # every request the killed process made: answered or not, it may not have been
        # marked sent before the kill, and only those may be sent again
        attempted = sum(slow.attempts.values())
        proc = spawn(["notify", "--from-beginning"], env, log)
        await wait_for(lambda: set(slow.delivered_ids()) >= want, 90, "every delivery")
        await wait_for(
            lambda: (
                sql(db, "SELECT count(*) FROM sitewatch_webhook_deliveries WHERE state='sent'")
                == [(24,)]
            ),
            30,
            "every delivery marked sent",
        )
        await asyncio.sleep(1.0)
    finally:
        assert stop(proc) == 0, log.read_text()[-3000:]
        for runner in runners:
            await runner.cleanup()
    delivered = slow.delivered_ids()
    assert set(delivered) == want  # none lost; after dedup by delivery id, each exactly once
    assert len(set(delivered)) == 24
    # a duplicate is only ever a re-send of a request the killed process had made
    assert len(delivered) - 24 <= attempted
    assert sql(db, "SELECT count(*) FROM sitewatch_notify_alerts") == [(24,)]


async def test_notify_tables_match_migration_0002(db: str) -> None:
    import sqlalchemy as sa

    from sitewatch.notify import tables as t
    from sitewatch.sink.db import make_engine

    engine = make_engine(db)
    try:
        async with engine.connect() as conn:
            migrated = await conn.run_sync(
                lambda c: {
                    tb.name: [col["name"] for col in sa.inspect(c).get_columns(tb.name)]
                    for tb in t.ALL_TABLES
                }
            )
    finally:
        await engine.dispose()
    assert migrated == {tb.name: [c.name for c in tb.c] for tb in t.ALL_TABLES}
    create = sql(db, "SHOW CREATE TABLE sitewatch_webhook_deliveries")[0][1]
    assert "UNIQUE KEY `uq_sitewatch_webhook_deliveries_sub_transition`" in str(create)
    assert "ON DELETE CASCADE" in str(create)
