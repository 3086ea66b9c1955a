"""The conformance suite's fixtures: one installed wheel, one bundled broker, one MariaDB
database, one worker + sink pipeline shared by every scenario (each on sites, and
partitions, of its own). Package-scoped: all of it stops when the suite is done, before
the rest of the test run.

The broker flavor is never set: the processes must recognise the bundled broker
themselves. Producers behave like another team's: plain JSON (sometimes with nulls,
unknown fields, other timestamp spellings), results sent by a program of their own,
verifier answers written by a plain producer that reads `request_id` off
`verify-requests`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import jsonschema
import pytest

from .harness import (
    Database,
    Follower,
    Installed,
    Logs,
    Process,
    Producer,
    SiteIds,
    build_and_install,
    run_cli,
    spawn,
    start_broker,
    topic_partitions,
)
from .pipeline import PARTITIONS, VERIFIERS, Pipeline, base_ms, new_database


@pytest.fixture(scope="package")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel, built from the repository and installed into a fresh virtualenv."""
    return build_and_install(tmp_path_factory.mktemp("contract-install"))


@pytest.fixture(scope="package")
def bundled_broker(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, bootstrap = start_broker(installed, tmp_path_factory.mktemp("contract-broker"))
    try:
        yield bootstrap
    finally:
        proc.stop()


@pytest.fixture(scope="package")
def contract_db() -> Iterator[Database]:
    db = new_database()
    try:
        yield db
    finally:
        db.drop()


@pytest.fixture(scope="package")
async def pipeline(
    installed: Installed,
    bundled_broker: str,
    contract_db: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Pipeline]:
    base = tmp_path_factory.mktemp("contract-pipeline")
    prefix = f"c{uuid.uuid4().hex[:6]}."
    env = {
        "SITEWATCH_KAFKA_BOOTSTRAP": bundled_broker,
        "SITEWATCH_TOPIC_PREFIX": prefix,
        "SITEWATCH_PARTITIONS": str(PARTITIONS),
        "SITEWATCH_STATE_DIR": str(base / "state"),
        "SITEWATCH_DATABASE_URL": contract_db.url,
        "SITEWATCH_VERIFIERS": ",".join(VERIFIERS),
        "SITEWATCH_LOG_FORMAT": "json",
    }
    run_cli(installed, ["migrate"], env)
    logs = Logs()
    processes: list[Process] = []
    producer: Producer | None = None
    follower: Follower | None = None
    try:
        for name, argv in {"worker": ["worker"], "sink": ["sink"]}.items():
            processes.append(spawn(installed, name, argv, env, base / "logs"))
        logs.processes = processes
        # the processes create their topics; writing to one before would create it with
        # the broker's default partition count (and the worker refuse to start)
        for topic in ("sites", "check-results", "verify-requests", "site-events"):
            parts = await topic_partitions(bundled_broker, f"{prefix}{topic}", timeout_s=120)
            assert len(parts) == PARTITIONS, (topic, parts)
        producer = await Producer(bundled_broker).start()
        follower = Follower(
            bundled_broker,
            [
                f"{prefix}{topic}"
                for topic in (
                    "site-events",
                    "verify-requests",
                    "site-events.dead-letter",
                    "check-results.dead-letter",
                    "sites.dead-letter",
                )
            ],
        )
        pipe = Pipeline(
            installed,
            bundled_broker,
            prefix,
            contract_db,
            producer,
            follower,
            SiteIds(PARTITIONS, start=1000),
            logs,
        )
        follower.on_record(
            lambda rec: pipe.on_request(rec) if rec.topic == pipe.requests_topic else None
        )
        await follower.start()
        # ready: a canary site's failure comes out as an `opened` transition
        [canary] = pipe.ids.isolated()
        await pipe.site(canary, num_of_checks=5)
        t0 = base_ms()
        await pipe.fail(canary, t0)
        await pipe.wait_transitions(canary, 1, timeout_s=120)
        await pipe.succeed(canary, t0 + 1000)
        yield pipe
    finally:
        if follower is not None:
            await follower.stop()
        if producer is not None:
            await producer.stop()
        codes = {p.name: p.stop() for p in processes}
        assert all(code == 0 for code in codes.values()), (codes, logs())


@pytest.fixture(scope="package")
def validate_transition(installed: Installed) -> Callable[[dict[str, Any]], None]:
    """Checks a record of `site-events` against the shipped schema, as consumers do."""
    schema = installed.schema("site-events.schema.json")
    validator = jsonschema.Draft202012Validator(schema)

    def check(tr: dict[str, Any]) -> None:
        validator.validate(tr)

    return check
