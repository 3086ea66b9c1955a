"""Shared fixtures: a real Tansu broker per test session and a fresh MariaDB database.

Neither is mocked. A missing service fails the tests that need it (never a skip).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitewatch.devbroker import Broker

MYSQL_SERVER_URL = os.environ.get("SITEWATCH_TEST_MYSQL", "mysql+asyncmy://root@127.0.0.1:3306")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
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
def unique_prefix() -> str:
    """A topic prefix of its own, so tests on one broker never see each other's records."""
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def worker_env(broker: Broker, unique_prefix: str, tmp_path: Path) -> dict[str, str]:
    """SITEWATCH_* for a worker (and friends) on the test broker, with two verifiers."""
    return {
        "SITEWATCH_KAFKA_BOOTSTRAP": broker.bootstrap,
        "SITEWATCH_BROKER_FLAVOR": "tansu",
        "SITEWATCH_TOPIC_PREFIX": unique_prefix,
        "SITEWATCH_STATE_DIR": str(tmp_path / "state"),
        "SITEWATCH_PARTITIONS": "4",
        "SITEWATCH_VERIFIERS": "eu,us",
        "SITEWATCH_TICK_INTERVAL_S": "0.5",
    }
