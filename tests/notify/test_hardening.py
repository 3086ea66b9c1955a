"""Issue 11, items 3, 4 and 7 for the notifier, in process on SQLite, receivers on 127.0.0.1.

A subscriber URL is not trusted: no private or metadata target, no redirect, a bounded
read, a bounded share of the delivery slots; secrets are sealed at rest and never on a
command line; database errors are waited out; poison is dead-lettered.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiokafka import TopicPartition
from sqlalchemy.ext.asyncio import AsyncEngine

from sitewatch import crypto
from sitewatch.clock import now_ms
from sitewatch.devbroker import free_port
from sitewatch.migrations.command import upgrade
from sitewatch.notify import signing
from sitewatch.notify import tables as t
from sitewatch.notify.decide import Kind
from sitewatch.notify.deliver import MAX_PER_SUBSCRIPTION, Deliverer, delivery_body
from sitewatch.notify.notifier import Notifier
from sitewatch.notify.subscriptions import WebhookError, check_target
from sitewatch.settings import Settings
from sitewatch.sink.db import make_engine
from sitewatch.streams import records, timefmt
from sitewatch.streams.ids import delivery_id_for
from tests.kafka_util import SITEWATCH

from .test_notify import MIN, T0, outage

KEY = crypto.new_key()
SECRET = "a-webhook-secret-0123456789"


@pytest.fixture
async def db(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'notify.db'}"
    await upgrade(url)
    return url


def conf(db: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db,
        "secret_key": KEY,
        "probe_allow_private": True,
        "notify_retry_scale": 0.001,
        "notify_timeout_s": 2.0,
        **overrides,
    }
    return Settings(**values)


class Hook:
    """A receiver; `answer` decides each response."""

    def __init__(self, answer: Callable[[web.Request], Any] | None = None) -> None:
        self.port = free_port()
        self.answer = answer
        self.hits = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await request.read()
            if self.answer is None:
                return web.Response(status=204)
            result: web.StreamResponse = await self.answer(request)
            return result
        finally:
            self.in_flight -= 1

    async def start(self) -> Hook:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self


@pytest.fixture
async def hooks() -> AsyncIterator[list[Hook]]:
    made: list[Hook] = []
    yield made
    for hook in made:
        assert hook.runner is not None
        await hook.runner.cleanup()


async def hook(made: list[Hook], answer: Callable[[web.Request], Any] | None = None) -> Hook:
    h = await Hook(answer).start()
    made.append(h)
    return h


async def subscribe(db: str, url: str, secret: str) -> int:
    engine = make_engine(db)
    try:
        async with engine.begin() as conn:
            res = await conn.execute(sa.insert(t.subscriptions).values(url=url, secret=secret))
            assert res.inserted_primary_key is not None
            return int(res.inserted_primary_key[0])
    finally:
        await engine.dispose()


async def pending(db: str, sub_id: int, n: int) -> list[str]:
    """`n` due deliveries for `sub_id`, as the decide loop would have created them."""
    engine = make_engine(db)
    ids = []
    try:
        async with engine.begin() as conn:
            for i in range(n):
                tr = outage(1, f"e{sub_id}-{i}", T0, T0 + MIN, T0 + 2 * MIN)[1]
                did = delivery_id_for(sub_id, tr.transition_id)
                await conn.execute(
                    sa.insert(t.deliveries).values(
                        id=did,
                        subscription_id=sub_id,
                        transition_id=tr.transition_id,
                        site_id=1,
                        kind=Kind.DOWN.value,
                        state="pending",
                        attempts=0,
                        next_attempt_at=timefmt.to_datetime(now_ms() - MIN),
                        body=delivery_body(did, Kind.DOWN, tr).decode(),
                    )
                )
                ids.append(did)
    finally:
        await engine.dispose()
    return ids


async def rows(db: str) -> dict[str, tuple[Any, ...]]:
    engine = make_engine(db)
    try:
        async with engine.connect() as conn:
            d = t.deliveries
            found = await conn.execute(
                sa.select(d.c.id, d.c.state, d.c.attempts, d.c.last_status, d.c.last_error)
            )
            return {r.id: tuple(r)[1:] for r in found}
    finally:
        await engine.dispose()


async def deliver_for(
    settings: Settings, seconds: float, engine: AsyncEngine | None = None
) -> None:
    """The delivery loop for `seconds`, then stopped (it must still be running)."""
    engine = engine or make_engine(settings.db_url)
    deliverer = Deliverer(settings, engine)
    try:
        task = asyncio.create_task(deliverer.run())
        await asyncio.sleep(seconds)
        assert not task.done(), task.exception() if task.done() else None
        deliverer.stop()
        await asyncio.wait_for(task, 10)
    finally:
        await engine.dispose()


def webhooks_cli(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SITEWATCH, "webhooks", *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


METADATA_AND_PRIVATE = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/",
    "http://[fd00::1]:8080/admin",
    "http://127.0.0.1:9092/",
    "http://localhost:3306/",
    "http://10.0.0.5/hook",
    "https://192.0.0.192/",
]


@pytest.mark.parametrize("url", METADATA_AND_PRIVATE)
def test_webhook_to_metadata_address_refused(url: str) -> None:
    with pytest.raises(WebhookError, match="SITEWATCH_PROBE_ALLOW_PRIVATE"):
        check_target(url, allow_private=False)
    assert check_target(url, allow_private=True) == []  # tests and the demo may


def test_webhook_with_credentials_in_the_url_refused() -> None:
    with pytest.raises(WebhookError, match="credentials"):
        check_target("https://user:pw@hooks.example/", allow_private=True)


def test_webhooks_add_refuses_the_metadata_address(db: str) -> None:
    env = {"SITEWATCH_DATABASE_URL": db, "SITEWATCH_SECRET_KEY": KEY}
    url = METADATA_AND_PRIVATE[0]
    done = webhooks_cli(env, "add", url, "--secret-file", "-", stdin=SECRET)
    assert done.returncode == 2 and "metadata" in done.stderr, done
    assert "169.254" not in webhooks_cli(env, "list").stdout


def test_webhooks_add_takes_no_secret_on_the_command_line(db: str, tmp_path: Path) -> None:
    env = {
        "SITEWATCH_DATABASE_URL": db,
        "SITEWATCH_SECRET_KEY": KEY,
        "SITEWATCH_PROBE_ALLOW_PRIVATE": "1",
    }
    url = "http://127.0.0.1:9/hook"
    on_argv = webhooks_cli(env, "add", url, "--secret", SECRET)
    assert on_argv.returncode == 2 and "--secret-file" in on_argv.stderr
    assert SECRET not in on_argv.stderr
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    assert webhooks_cli(env, "add", url, "--secret-file", str(path)).returncode == 0
    assert webhooks_cli(env, "add", url, "--secret-file", "-", stdin=SECRET).returncode == 0
    from_env = webhooks_cli({**env, "SITEWATCH_WEBHOOK_SECRET": SECRET}, "add", url)
    assert from_env.returncode == 0 and "secret:" not in from_env.stdout
    short = webhooks_cli(env, "add", url, "--secret-file", "-", stdin="short")
    assert short.returncode == 2 and "16 to 256" in short.stderr
    no_key = webhooks_cli({**env, "SITEWATCH_SECRET_KEY": ""}, "add", url)
    assert no_key.returncode == 2 and "SITEWATCH_SECRET_KEY" in no_key.stderr
    stored = sa.create_engine(db.replace("+aiosqlite", "")).connect()
    secrets = [
        r[0] for r in stored.execute(sa.text("SELECT secret FROM sitewatch_webhook_subscriptions"))
    ]
    stored.close()
    assert len(secrets) == 3 and all(crypto.is_sealed(s) for s in secrets)
    box = crypto.SecretBox([KEY])
    assert {box.open(s) for s in secrets} == {SECRET}
    listed = webhooks_cli(env, "list")
    assert SECRET not in listed.stdout and "sealed" in listed.stdout


async def test_legacy_plaintext_secret_still_signs_and_seal_seals_it(
    db: str, hooks: list[Hook]
) -> None:
    got: list[bool] = []

    async def check(request: web.Request) -> web.Response:
        body = await request.read()
        got.append(signing.verify(SECRET, body, request.headers[signing.SIGNATURE_HEADER]))
        return web.Response(status=204)

    receiver = await hook(hooks, check)
    sub = await subscribe(db, receiver.url, SECRET)  # as stored before 0003
    await pending(db, sub, 1)
    await deliver_for(conf(db), 1.0)
    assert got == [True]
    env = {"SITEWATCH_DATABASE_URL": db, "SITEWATCH_SECRET_KEY": KEY}
    assert "sealed 1" in webhooks_cli(env, "seal").stdout
    assert "plaintext" not in webhooks_cli(env, "list").stdout


async def test_notifier_cannot_sign_without_the_key(db: str, hooks: list[Hook]) -> None:
    receiver = await hook(hooks)
    sub = await subscribe(db, receiver.url, crypto.SecretBox([KEY]).seal(SECRET))
    (did,) = await pending(db, sub, 1)
    await deliver_for(conf(db, secret_key=None), 1.0)
    assert receiver.hits == 0
    _, attempts, _, error = (await rows(db))[did]
    assert attempts >= 1 and "cannot sign" in error and "SITEWATCH_SECRET_KEY" in error


async def test_webhook_redirect_is_a_failed_delivery(db: str, hooks: list[Hook]) -> None:
    landing = await hook(hooks)

    async def redirect(request: web.Request) -> web.Response:
        # a 307 would make a client repeat the POST, body and signature, elsewhere
        return web.Response(status=307, headers={"Location": landing.url})

    bouncer = await hook(hooks, redirect)
    sub = await subscribe(db, bouncer.url, crypto.SecretBox([KEY]).seal(SECRET))
    (did,) = await pending(db, sub, 1)
    await deliver_for(conf(db), 1.5)
    assert bouncer.hits >= 1 and landing.hits == 0
    state, _, status, error = (await rows(db))[did]
    assert state in ("pending", "failed") and status == 307
    assert "redirects are not followed" in error


async def test_webhook_to_private_address_refused_at_delivery(db: str, hooks: list[Hook]) -> None:
    """A row written before the check (or a name that now resolves inside): the guard."""
    receiver = await hook(hooks)
    sub = await subscribe(db, receiver.url, crypto.SecretBox([KEY]).seal(SECRET))
    (did,) = await pending(db, sub, 1)
    await deliver_for(conf(db, probe_allow_private=False), 1.0)
    assert receiver.hits == 0
    _, attempts, status, error = (await rows(db))[did]
    assert attempts >= 1 and status is None and "blocked" in error
    assert "127.0.0.1" in error and "connected to" not in error  # the URL's own host only


async def test_webhook_response_is_read_only_a_few_kb(db: str, hooks: list[Hook]) -> None:
    written: list[int] = []

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200)
        await resp.prepare(request)
        chunk = b"x" * 65_536
        sent = 0
        try:
            for _ in range(2000):  # 128 MiB if anyone read it all
                await resp.write(chunk)
                sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass
        finally:
            written.append(sent)
        return resp

    receiver = await hook(hooks, endless)
    sub = await subscribe(db, receiver.url, crypto.SecretBox([KEY]).seal(SECRET))
    (did,) = await pending(db, sub, 1)
    began = time.monotonic()
    await deliver_for(conf(db), 1.5)
    assert (await rows(db))[did][:2] == ("sent", 1)
    assert time.monotonic() - began < 5
    assert written and written[0] < 32 * 1024 * 1024  # stopped by the closed connection


async def test_dead_endpoint_cannot_starve_other_subscriptions(db: str, hooks: list[Hook]) -> None:
    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(1.8)  # just under the 2 s request timeout
        return web.Response(status=503)

    dead, healthy = await hook(hooks, stall), await hook(hooks)
    box = crypto.SecretBox([KEY])
    dead_sub = await subscribe(db, dead.url, box.seal(SECRET))
    healthy_sub = await subscribe(db, healthy.url, box.seal(SECRET))
    await pending(db, dead_sub, 40)  # queued first, so first in line
    healthy_ids = await pending(db, healthy_sub, 5)
    await deliver_for(conf(db), 1.5)
    states = await rows(db)
    assert all(states[i][0] == "sent" for i in healthy_ids)  # not stuck behind 40 stalls
    assert dead.most_in_flight <= MAX_PER_SUBSCRIPTION


class _Msg(NamedTuple):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


async def test_notifier_backs_off_on_database_errors(db: str) -> None:
    notifier = Notifier(
        conf(db), engine=make_engine(f"mysql+asyncmy://root@127.0.0.1:{free_port()}/x")
    )
    tr = outage(1, "a", T0, T0 + MIN, T0 + 2 * MIN)[1]
    tp = TopicPartition("sitewatch.site-events", 0)
    batch = {tp: [_Msg(tp.topic, 0, 0, b"1", records.encode(tr))]}
    task = asyncio.create_task(notifier.decide_batch(batch))
    await asyncio.sleep(1.5)
    assert not task.done()  # backing off, not dead
    await notifier.engine.dispose()
    notifier.engine = make_engine(db)  # the database is back
    assert await asyncio.wait_for(task, 60) == 0  # decided (no subscription to deliver to)
    engine = make_engine(db)
    async with engine.connect() as conn:
        decided = (await conn.execute(sa.select(t.alerts.c.decision))).scalars().all()
    await engine.dispose()
    assert decided == ["notify"]
    # and the delivery loop lives through it too
    broken = make_engine(f"mysql+asyncmy://root@127.0.0.1:{free_port()}/x")
    await deliver_for(conf(db), 1.5, broken)


async def test_poison_on_site_events_is_dead_lettered_by_the_notifier(db: str) -> None:
    notifier = Notifier(conf(db))
    tr = outage(1, "a", T0, T0 + MIN, T0 + 2 * MIN)[1]
    deep = records.encode(tr)[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    tp = TopicPartition("sitewatch.site-events", 0)
    values = [b"{", deep, json.dumps({**json.loads(records.encode(tr)), "seq": -1}).encode(), None]
    msgs = [_Msg(tp.topic, 0, n, b"1", v) for n, v in enumerate(values)]
    msgs.append(_Msg(tp.topic, 0, len(msgs), b"1", records.encode(tr)))
    await notifier.decide_batch({tp: msgs})
    assert notifier.counts["dead_letters"] == 4 and notifier.counts["notify"] == 1


def test_webhook_delivery_id_is_inside_the_signed_body() -> None:
    tr = outage(1, "a", T0, T0 + MIN, T0 + 2 * MIN)[1]
    did = delivery_id_for(7, tr.transition_id)
    body = delivery_body(did, Kind.DOWN, tr)
    header = signing.sign(SECRET, body)
    assert json.loads(body)["delivery_id"] == did
    assert signing.verify(SECRET, body, header)
    other = body.replace(did.encode(), delivery_id_for(8, tr.transition_id).encode())
    assert not signing.verify(SECRET, other, header)  # the id a receiver dedups on is signed
