"""docs/consuming.md: the shipped schema validates real records; the example consumer runs."""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import sys
from pathlib import Path

import jsonschema
import msgspec
import pytest

from sitewatch.streams import records, schemas_gen
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.message import Record
from sitewatch.streams.processor import Processor
from sitewatch.streams.state import Config
from sitewatch.streams.stores import MemoryStore
from sitewatch.streams.topics import TopicNames
from tests.kafka_util import RunningBroker, produce

pytestmark = pytest.mark.integration

DOCS = Path(__file__).resolve().parents[2] / "docs"
EXAMPLE = DOCS / "examples" / "consume_site_events.py"


def some_transitions(names: TopicNames) -> list[tuple[bytes, bytes]]:
    """An outage of site 7 as the worker's Processor emits it."""
    site = records.encode(records.SiteRecord(site_id=7, url="http://seven.test/"))
    batch = [Record(names.sites, 0, 0, b"7", site)]
    for i, ok in enumerate([False, False, False, True]):
        rec = records.CheckResult(
            result_id=f"r{i}",
            site_id=7,
            check_type="http",  # type: ignore[arg-type]
            ok=ok,
            observed_at=f"2026-11-26T10:00:0{i}.000Z",
        )
        batch.append(Record(names.check_results, 0, i, b"7", records.encode(rec)))
    proc = Processor(
        Config(), MemoryStore(), MemoryStore(), MemoryStore(), names.check_results, names.sites, "t"
    )
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


def kcat_commands() -> list[list[str]]:
    """The kcat command lines of docs/consuming.md, as argument lists."""
    text = (DOCS / "consuming.md").read_text("utf-8")
    block = text.split("## Example: kcat", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return [
        shlex.split(line.split("|")[0]) for line in block.splitlines() if line.startswith("kcat")
    ]


async def test_kcat_example_reads_site_events_from_apache_kafka(
    broker: RunningBroker, unique_prefix: str
) -> None:
    """A client no one here wrote (librdkafka's kcat) reads the event topic as documented."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is required (make test installs Debian's package)"
    names = TopicNames(unique_prefix)
    await ensure_topics(broker.bootstrap, names, 2)
    rows = some_transitions(names)
    await produce(broker.bootstrap, names.site_events, rows)
    argv = kcat_commands()[0]  # everything from the beginning, then exit
    argv = [broker.bootstrap if a == "127.0.0.1:9092" else a for a in argv]
    argv = [names.site_events if a == "sitewatch.site-events" else a for a in argv]
    proc = await asyncio.create_subprocess_exec(
        kcat, *argv[1:], stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    lines = [ln for ln in out.decode().splitlines() if ln.strip()]
    assert len(lines) == len(rows), lines
    reasons = []
    for line in lines:
        key, value = line.split(" ", 1)
        tr = records.transition_decoder.decode(value)
        assert key == str(tr.site_id) == "7"
        reasons.append((tr.seq, tr.reason.value))
    assert [r for _, r in sorted(reasons)] == ["opened", "verifier_confirmed", "verifier_cleared"]
