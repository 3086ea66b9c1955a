"""docs/consuming.md: the shipped schema validates real records; the example consumer runs."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import jsonschema
import msgspec
import pytest

from sitewatch.streams import records, schemas_gen
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.processor import MemoryStore, Message, Processor
from sitewatch.streams.state import Config
from sitewatch.streams.topics import TopicNames
from tests.kafka_util import RunningBroker, produce

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "consume_site_events.py"


def some_transitions(names: TopicNames) -> list[tuple[bytes, bytes]]:
    """An outage of site 7 as the worker's Processor emits it."""
    site = records.encode(records.SiteRecord(site_id=7, url="http://seven.test/"))
    batch = [Message(names.sites, 0, 0, b"7", site)]
    for i, ok in enumerate([False, False, False, True]):
        rec = records.CheckResult(
            result_id=f"r{i}",
            site_id=7,
            check_type="http",  # type: ignore[arg-type]
            ok=ok,
            observed_at=f"2026-11-26T10:00:0{i}.000Z",
        )
        batch.append(Message(names.check_results, 0, i, b"7", records.encode(rec)))
    proc = Processor(Config(), MemoryStore(), MemoryStore(), names.check_results, names.sites, "t")
    return [(k, v) for k, v in proc.process(batch, 0).transitions]


def test_site_events_schema_validates_emitted_records() -> None:
    schema = schemas_gen.load("site-events.schema.json")
    rows = some_transitions(TopicNames("x."))
    assert [msgspec.json.decode(v)["reason"] for _, v in rows] == [
        "opened",
        "verifier_confirmed",
        "verifier_cleared",
    ]
    for _, value in rows:
        jsonschema.validate(msgspec.json.decode(value), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**msgspec.json.decode(rows[0][1]), "state_after": "sideways"}, schema)


async def test_example_consumer_runs_against_the_broker(
    broker: RunningBroker, unique_prefix: str
) -> None:
    names = TopicNames(unique_prefix)
    await ensure_topics(broker.bootstrap, names, 2)
    rows = some_transitions(names)
    await produce(broker.bootstrap, names.site_events, rows + rows[:1])  # a redelivery
    env = {
        **os.environ,
        "SITEWATCH_KAFKA_BOOTSTRAP": broker.bootstrap,
        "SITEWATCH_TOPIC_PREFIX": unique_prefix,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "3",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = out.decode().splitlines()
    assert [ln.split()[2] for ln in lines] == ["opened", "verifier_confirmed", "verifier_cleared"]
    assert lines[0].startswith("7 2026-11-26T10:00:00.000Z opened up -> seems_down")
