"""Shared fixtures: real brokers per test session and a fresh MariaDB database.

`broker` is Apache Kafka (a KRaft node fetched from Maven Central by
`scripts/apache_kafka.py`): the integration and end-to-end tiers run on it. `tansu` is the
bundled Tansu broker of `sitewatch dev`, for the smoke tier. Nothing is mocked; a missing
service (Java, Maven, MariaDB) fails the tests that need it, never a skip.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.apache_kafka import KafkaError, KafkaNode
from sitewatch.devbroker import Broker

MYSQL_SERVER_URL = os.environ.get("SITEWATCH_TEST_MYSQL", "mysql+asyncmy://root@127.0.0.1:3306")


def start_kafka(data_dir: Path) -> KafkaNode:
    """A started Apache Kafka node, or the test fails saying why (no Java, no Maven...)."""
    try:
        return KafkaNode(data_dir=data_dir).start()
    except KafkaError as exc:
        pytest.fail(f"Apache Kafka is required by the integration tests: {exc}")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaNode]:
    """Apache Kafka, shared by the session (tests isolate themselves by topic prefix)."""
    node = start_kafka(tmp_path_factory.mktemp("kafka"))
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
def own_kafka(tmp_path: Path) -> Iterator[KafkaNode]:
    """An Apache Kafka node of the test's own, for tests that stop or restart it."""
    node = start_kafka(tmp_path / "kafka")
    try:
        yield node
    finally:
        node.close()


@pytest.fixture(scope="session")
def tansu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The bundled Tansu broker (the smoke tier: what `sitewatch dev` runs on)."""
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with Broker(log_path=log) as running:
        yield running


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A database of its own on the machine's MariaDB, dropped at the end."""
    import pymysql

    name = f"sw_test_{uuid.uuid4().hex[:10]}"
    try:
        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="")
    except pymysql.err.OperationalError as exc:  # pragma: no cover - CI guard
        pytest.fail(f"MariaDB on 127.0.0.1:3306 is required: {exc}")
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    try:
        yield f"{MYSQL_SERVER_URL}/{name}"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()


@pytest.fixture
async def db_url() -> AsyncIterator[str]:
    """A migrated database of its own on the machine's MariaDB, dropped after the test."""
    from sitewatch.migrations.command import upgrade
    from tests.sink.conftest import drop_mysql_db, new_mysql_db

    name, url = new_mysql_db()
    try:
        await upgrade(url)
        yield url
    finally:
        drop_mysql_db(name)


@pytest.fixture
def unique_prefix() -> str:
    """A topic prefix of its own, so tests on one broker never see each other's records."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def worker_env(broker: KafkaNode, unique_prefix: str, tmp_path: Path) -> dict[str, str]:
    """SITEWATCH_* for a worker (and friends) on the test broker, with two verifiers.

    No SITEWATCH_BROKER_FLAVOR: the processes detect the broker as in production.
    """
    return {
        "SITEWATCH_KAFKA_BOOTSTRAP": broker.bootstrap,
        "SITEWATCH_TOPIC_PREFIX": unique_prefix,
        "SITEWATCH_STATE_DIR": str(tmp_path / "state"),
        "SITEWATCH_PARTITIONS": "4",
        "SITEWATCH_VERIFIERS": "eu,us",
        "SITEWATCH_TICK_INTERVAL_S": "0.5",
    }


# -- suite time by tier (printed at the end of every run; the README quotes it) ------------

_TIER_SECONDS: dict[str, float] = {}
_TIER_TESTS: dict[str, set[str]] = {}


def _tier(item: pytest.Item) -> str:
    path = item.path.as_posix()
    if "/tests/contract/" in path:
        return "contract: the built wheel, black-box, bundled broker + MariaDB"
    if item.get_closest_marker("smoke") or "/tests/e2e/test_dev" in path:
        return "smoke: the bundled Tansu broker (sitewatch dev)"
    if "/tests/e2e/" in path:
        return "end to end: every process, Apache Kafka + MariaDB"
    if item.get_closest_marker("integration"):
        return "integration: Apache Kafka and/or MariaDB"
    return "unit: in process, no broker"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    started = time.monotonic()
    yield
    tier = _tier(item)
    _TIER_SECONDS[tier] = _TIER_SECONDS.get(tier, 0.0) + time.monotonic() - started
    _TIER_TESTS.setdefault(tier, set()).add(item.nodeid)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _TIER_SECONDS:
        return
    terminalreporter.section("suite time by tier")
    for tier, seconds in sorted(_TIER_SECONDS.items(), key=lambda kv: -kv[1]):
        count = len(_TIER_TESTS[tier])
        terminalreporter.write_line(f"{seconds / 60:6.1f} min  {count:4} tests  {tier}")
