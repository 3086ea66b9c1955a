"""`SITEWATCH_METRICS_LISTEN`: every long-running process, started as the real CLI on the
real broker (and MariaDB), serves Prometheus metrics whose counters move with its work.

Each test scrapes once before driving the process and again after, over HTTP, and parses
the text with prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from sitewatch import crypto
from sitewatch.devbroker import free_port
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import TopicNames
from tests.kafka_util import SITEWATCH, RunningBroker, produce, spawn, stop
from tests.notify.receiver import Receiver, serve
from tests.notify.test_notify import outage
from tests.sink.synthetic import transitions as synthetic_transitions

PARTITIONS = "4"

#: (sample name, sorted labels) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, lbl), v in samples.items() if n == name and want <= set(lbl))


def series(samples: Samples, name: str) -> list[dict[str, str]]:
    return [dict(lbl) for (n, lbl) in samples if n == name]


@dataclass
class Scraper:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    async def scrape(self) -> Samples:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{self.port}/metrics") as resp,
        ):
            assert resp.status == 200
            assert resp.content_type == "text/plain"
            return parse(await resp.text())

    async def wait(
        self, done: Callable[[Samples], bool], what: str, limit_s: float = 90.0
    ) -> Samples:
        """Scrape until `done` holds; connection errors are fine while the process starts."""
        deadline = time.monotonic() + limit_s
        last: Samples = {}
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                last = await self.scrape()
                if done(last):
                    return last
            except aiohttp.ClientConnectionError:
                pass
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {last}"
            await asyncio.sleep(0.3)

    async def up(self) -> Samples:
        return await self.wait(lambda s: bool(s), "the metrics endpoint")


@pytest.fixture
def run_process(tmp_path: Path) -> Iterator[Callable[[list[str], dict[str, str]], Scraper]]:
    """Start `sitewatch ARGS` with metrics on a free port; stopped (exit 0) at the end."""
    started: list[Scraper] = []

    def start(args: list[str], env: dict[str, str]) -> Scraper:
        port = free_port()
        log = tmp_path / f"{args[0]}.log"
        proc = spawn(args, {**env, "SITEWATCH_METRICS_LISTEN": f"127.0.0.1:{port}"}, log)
        started.append(Scraper(port, proc, log))
        return started[-1]

    yield start
    for s in started:
        assert stop(s.proc) == 0, s.log.read_text()[-3000:]


def base_env(broker: RunningBroker, prefix: str, tmp_path: Path) -> dict[str, str]:
    return {
        "SITEWATCH_KAFKA_BOOTSTRAP": broker.bootstrap,
        "SITEWATCH_TOPIC_PREFIX": prefix,
        "SITEWATCH_PARTITIONS": PARTITIONS,
        "SITEWATCH_STATE_DIR": str(tmp_path / "state"),
        "SITEWATCH_LOG_FORMAT": "json",
    }


@pytest.fixture
def database(db_url: str) -> str:
    """The shared migrated MariaDB database (tests/conftest.py)."""
    return db_url


@pytest.fixture
async def website() -> AsyncIterator[str]:
    """A site that answers 200 on loopback."""

    async def fine(request: web.Request) -> web.Response:
        return web.Response(text="fine")

    app = web.Application()
    app.router.add_get("/", fine)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}/"  # nothing listens there: refused


def key_value(rec: records.SiteRecord | records.CheckResult) -> tuple[bytes, bytes]:
    return records.site_key(rec.site_id), records.encode(rec)


# -- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nonsense", "127.0.0.1", ":9464", "127.0.0.1:70000", "[x]:1"])
def test_bad_metrics_listen_stops_the_process_with_exit_2_and_one_line(value: str) -> None:
    done = subprocess.run(
        [SITEWATCH, "sink"],
        env={**os.environ, "SITEWATCH_METRICS_LISTEN": value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    named = [line for line in done.stderr.splitlines() if "SITEWATCH_METRICS_LISTEN" in line]
    assert len(named) == 1, done.stderr
    assert repr(value) in named[0]


@pytest.mark.integration
async def test_metrics_address_in_use_stops_the_process_with_exit_2(
    broker: RunningBroker, unique_prefix: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**base_env(broker, unique_prefix, tmp_path)}
        env["SITEWATCH_METRICS_LISTEN"] = f"127.0.0.1:{port}"
        done = await asyncio.to_thread(
            subprocess.run,
            [SITEWATCH, "verifier", "--name", "eu"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2, done.stderr
    assert f"SITEWATCH_METRICS_LISTEN: cannot serve on 127.0.0.1:{port}" in done.stderr


# -- the processes -----------------------------------------------------------------------


@pytest.mark.integration
async def test_worker_metrics_count_inputs_transitions_dead_letters_and_lag(
    broker: RunningBroker,
    unique_prefix: str,
    worker_env: dict[str, str],
    run_process: Callable[[list[str], dict[str, str]], Scraper],
) -> None:
    worker = run_process(["worker"], worker_env)
    before = await worker.up()
    assert total(before, "sitewatch_worker_inputs_total") == 0
    assert total(before, "sitewatch_worker_transitions_total") == 0

    await ensure_topics(broker.bootstrap, TopicNames(unique_prefix), int(PARTITIONS))
    base = time.time_ns() // 1_000_000 - 60_000
    await produce(
        broker.bootstrap,
        f"{unique_prefix}sites",
        [key_value(records.SiteRecord(site_id=1, url="http://one.test/"))],
    )
    results = [
        key_value(
            records.CheckResult(
                result_id=f"r{i}",
                site_id=1,
                check_type=CheckType.HTTP,
                ok=ok,
                observed_at=timefmt.from_ms(base + i * 1000),
                probe="p1",
            )
        )
        for i, ok in enumerate([False, True])  # opened, probe_cleared
    ]
    await produce(broker.bootstrap, f"{unique_prefix}check-results", [*results, (b"1", b"{bad")])

    after = await worker.wait(
        lambda s: (
            total(s, "sitewatch_worker_transitions_total") >= 2
            and total(s, "sitewatch_worker_dead_letters_total") >= 1
            and total(s, "sitewatch_worker_ticks_total") >= 1
        ),
        "the worker to apply the inputs",
    )
    assert total(after, "sitewatch_worker_inputs_total") == 2
    assert total(after, "sitewatch_worker_site_records_total") == 1
    assert total(after, "sitewatch_worker_transitions_total") == 2
    assert total(after, "sitewatch_worker_dead_letters_total") == 1
    assert total(after, "sitewatch_worker_redeliveries_total") == 0  # no crash, no redelivery
    assert total(after, "sitewatch_worker_batch_records_count") >= 1
    assert total(after, "sitewatch_worker_batch_records_sum") >= 4
    assert total(after, "sitewatch_worker_batch_duration_seconds_count") >= 1
    assert total(after, "sitewatch_worker_pending_timers") == 0  # the event closed
    lagged = await worker.wait(
        lambda s: any(
            lbl["topic"] == f"{unique_prefix}check-results"
            for lbl in series(s, "sitewatch_consumer_lag_records")
        ),
        "lag of the owned check-results partitions",
    )
    owned = series(lagged, "sitewatch_consumer_lag_records")
    assert {lbl["partition"] for lbl in owned} <= {"0", "1", "2", "3"}
    assert all(total(lagged, "sitewatch_consumer_lag_records", **lbl) >= 0 for lbl in owned)


@pytest.mark.integration
async def test_sink_metrics_count_messages_transitions_redeliveries_and_commits(
    broker: RunningBroker,
    unique_prefix: str,
    database: str,
    tmp_path: Path,
    run_process: Callable[[list[str], dict[str, str]], Scraper],
) -> None:
    env = {**base_env(broker, unique_prefix, tmp_path), "SITEWATCH_DATABASE_URL": database}
    names = TopicNames(unique_prefix)
    await ensure_topics(broker.bootstrap, names, int(PARTITIONS))
    sink = run_process(["sink"], env)
    before = await sink.up()
    assert total(before, "sitewatch_sink_messages_total") == 0
    assert total(before, "sitewatch_sink_writes_enabled") == 1

    items = list(synthetic_transitions(random.Random(9), n_sites=5, count=40))
    rows = [(records.site_key(tr.site_id), records.encode(tr)) for tr in items]
    await produce(broker.bootstrap, names.site_events, rows)
    await produce(broker.bootstrap, names.site_events, rows[:10])  # redelivered
    await produce(broker.bootstrap, names.site_events, [(b"2", b'{"poison": true}')])
    site = records.SiteRecord(site_id=1, url="https://one.example")
    await produce(broker.bootstrap, names.sites, [key_value(site)])

    after = await sink.wait(
        lambda s: total(s, "sitewatch_sink_messages_total") >= 52,
        "the sink to apply every record",
    )
    assert total(after, "sitewatch_sink_messages_total") == 52
    assert total(after, "sitewatch_sink_transitions_total") == 40
    assert total(after, "sitewatch_sink_redeliveries_total") == 10
    assert total(after, "sitewatch_sink_dead_letters_total") == 1
    assert total(after, "sitewatch_sink_rows_total", write="offsets") >= 1
    assert total(after, "sitewatch_sink_rows_total", write="sites_upserted") == 1
    assert total(after, "sitewatch_sink_rows_total", write="events_inserted") >= 1
    assert total(after, "sitewatch_sink_batch_records_sum") == 52
    assert total(after, "sitewatch_sink_batch_duration_seconds_count") >= 1
    assert total(after, "sitewatch_sink_commit_duration_seconds_count") >= 1
    caught_up = await sink.wait(
        lambda s: (
            {lbl["topic"] for lbl in series(s, "sitewatch_consumer_lag_records")}
            == {names.site_events, names.sites}
            and total(s, "sitewatch_consumer_lag_records") == 0
        ),
        "lag 0 on every owned partition",
    )
    assert len(series(caught_up, "sitewatch_consumer_lag_records")) == 2 * int(PARTITIONS)


@pytest.mark.integration
async def test_probe_metrics_count_checks_by_type_and_outcome_with_durations(
    broker: RunningBroker,
    unique_prefix: str,
    website: str,
    tmp_path: Path,
    run_process: Callable[[list[str], dict[str, str]], Scraper],
) -> None:
    env = {**base_env(broker, unique_prefix, tmp_path), "SITEWATCH_PROBE_ALLOW_PRIVATE": "1"}
    names = TopicNames(unique_prefix)
    await ensure_topics(broker.bootstrap, names, int(PARTITIONS))
    probe = run_process(["probe", "--name", "p1", "--max-initial-delay", "0.2"], env)
    before = await probe.up()
    assert total(before, "sitewatch_checks_total") == 0

    sites = [
        records.SiteRecord(
            site_id=site_id,
            url=url,
            checks=checks,
            check_interval_s=1,
            recheck_interval_s=1,
            timeout_s=2,
        )
        for site_id, url, checks in (
            (1, website, [CheckType.HTTP, CheckType.TCP]),
            (2, closed_url(), [CheckType.HTTP]),
        )
    ]
    await produce(broker.bootstrap, names.sites, [*map(key_value, sites), (b"3", b"{bad")])

    after = await probe.wait(
        lambda s: (
            total(s, "sitewatch_checks_total", check_type="http", outcome="ok") >= 1
            and total(s, "sitewatch_checks_total", check_type="http", outcome="failed") >= 1
            and total(s, "sitewatch_checks_total", check_type="tcp", outcome="ok") >= 1
        ),
        "checks of both sites",
    )
    assert total(after, "sitewatch_checks_total", check_type="http", error="connect") >= 1
    assert total(after, "sitewatch_check_duration_seconds_count", check_type="http") >= 2
    assert total(after, "sitewatch_check_duration_seconds_count", check_type="tcp") >= 1
    assert total(after, "sitewatch_check_duration_seconds_sum", check_type="http") > 0
    assert total(after, "sitewatch_probe_site_records_total") == 2
    assert total(after, "sitewatch_probe_dead_letters_total") == 1
    assert total(after, "sitewatch_probe_results_total") >= 3
    assert total(after, "sitewatch_probe_failing_site_checks_total") >= 1
    assert total(after, "sitewatch_probe_owned_sites") == 2
    lag = series(after, "sitewatch_consumer_lag_records")
    assert {lbl["topic"] for lbl in lag} == {names.sites}


@pytest.mark.integration
async def test_verifier_metrics_count_requests_answers_and_checks(
    broker: RunningBroker,
    unique_prefix: str,
    website: str,
    tmp_path: Path,
    run_process: Callable[[list[str], dict[str, str]], Scraper],
) -> None:
    env = {**base_env(broker, unique_prefix, tmp_path), "SITEWATCH_PROBE_ALLOW_PRIVATE": "1"}
    names = TopicNames(unique_prefix)
    await ensure_topics(broker.bootstrap, names, int(PARTITIONS))
    verifier = run_process(["verifier", "--name", "eu"], env)
    before = await verifier.up()
    assert total(before, "sitewatch_verifier_answers_total") == 0

    now = timefmt.from_ms(time.time_ns() // 1_000_000)
    requests = [
        records.VerifyRequest(
            request_id=uuid.uuid4().hex,
            site_id=site_id,
            check_type=CheckType.HTTP,
            event_id=uuid.uuid4().hex,
            url=url,
            timeout_s=2,
            requested_at=now,
        )
        for site_id, url in ((1, website), (2, closed_url()))
    ]
    rows = [(records.site_key(r.site_id), records.encode(r)) for r in requests]
    await produce(broker.bootstrap, names.verify_requests, [*rows, (b"3", b"{bad")])

    after = await verifier.wait(
        lambda s: (
            total(s, "sitewatch_verifier_answers_total") >= 2
            and total(s, "sitewatch_verifier_dead_letters_total") >= 1
        ),
        "answers to both requests",
    )
    assert total(after, "sitewatch_verifier_requests_total") == 3
    assert total(after, "sitewatch_verifier_answers_total") == 2
    assert total(after, "sitewatch_verifier_dead_letters_total") == 1
    assert total(after, "sitewatch_checks_total", check_type="http", outcome="ok") == 1
    assert total(after, "sitewatch_checks_total", check_type="http", outcome="failed") == 1
    assert total(after, "sitewatch_check_duration_seconds_count", check_type="http") == 2
    lag = series(after, "sitewatch_consumer_lag_records")
    assert lag and {lbl["topic"] for lbl in lag} == {names.verify_requests}


@pytest.mark.integration
async def test_notifier_metrics_count_decisions_and_webhook_deliveries_by_outcome(
    broker: RunningBroker,
    unique_prefix: str,
    database: str,
    tmp_path: Path,
    run_process: Callable[[list[str], dict[str, str]], Scraper],
) -> None:
    env = {
        **base_env(broker, unique_prefix, tmp_path),
        "SITEWATCH_DATABASE_URL": database,
        "SITEWATCH_NOTIFY_RETRY_SCALE": "0.01",
        "SITEWATCH_NOTIFY_TIMEOUT_S": "3",
        # webhook secrets are sealed at rest; the receivers listen on loopback
        "SITEWATCH_SECRET_KEY": crypto.new_key(),
        "SITEWATCH_PROBE_ALLOW_PRIVATE": "1",
    }
    secret = "s3cret-for-metrics"
    good = Receiver(secret=secret)
    broken = Receiver(secret=secret, always_fail=True)  # 503: retried later
    runners = await serve(good, broken)
    try:
        for url in (good.url, broken.url):
            await asyncio.to_thread(
                subprocess.run,
                [SITEWATCH, "webhooks", "add", url, "--secret-file", "-"],
                env={**os.environ, **env},
                input=secret.encode(),
                check=True,
                capture_output=True,
                timeout=60,
            )
        names = TopicNames(unique_prefix)
        await ensure_topics(broker.bootstrap, names, int(PARTITIONS))
        notifier = run_process(["notify", "--from-beginning"], env)
        before = await notifier.up()
        assert total(before, "sitewatch_notifier_deliveries_total") == 0
        assert len(series(before, "sitewatch_notifier_deliveries_total")) == 3  # every outcome

        t0 = timefmt.to_ms("2026-11-26T10:00:00.000Z")
        story = outage(1, "m", t0, t0 + 60_000, t0 + 120_000)  # opened, down, recovered
        rows = [(records.site_key(tr.site_id), records.encode(tr)) for tr in story]
        await produce(broker.bootstrap, names.site_events, [*rows, rows[1]])  # one redelivered
        after = await notifier.wait(
            lambda s: (
                total(s, "sitewatch_notifier_deliveries_total", outcome="sent") >= 2
                and total(s, "sitewatch_notifier_deliveries_total", outcome="retry") >= 2
            ),
            "deliveries to both subscriptions",
        )
    finally:
        for runner in runners:
            await runner.cleanup()
    assert len(good.got) == 2 and good.bad_signatures == 0
    assert total(after, "sitewatch_notifier_transitions_total") == 4
    assert total(after, "sitewatch_notifier_redeliveries_total") == 1
    assert total(after, "sitewatch_notifier_decisions_total", decision="notify") == 2
    assert total(after, "sitewatch_notifier_decisions_total", decision="cooldown") == 0
    assert total(after, "sitewatch_notifier_deliveries_total", outcome="sent") == 2
    assert total(after, "sitewatch_notifier_deliveries_total", outcome="gave_up") == 0
    assert total(after, "sitewatch_notifier_delivery_duration_seconds_count") >= 4
    lag = series(after, "sitewatch_consumer_lag_records")
    assert {lbl["topic"] for lbl in lag} == {names.site_events}
