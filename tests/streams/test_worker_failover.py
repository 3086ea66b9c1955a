"""What only a real Kafka cluster proves: partitions move between workers with their state.

Both tests run `sitewatch worker` processes on Apache Kafka with the crash test's workload
(20,000 results over 500 flapping sites) and compare what they publish with what the pure
core computes: after dedup by `transition_id`, byte for byte. Clock ticks stay out of the
comparison (the workload spans 2,000 s of stream time: no timer is due).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
from rocksdict import AccessType, Options, Rdict

from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import TopicNames
from tests.kafka_util import RunningBroker, produce, read_all, spawn, stop
from tests.streams.workload import (
    BASE,
    INPUTS,
    PARTITIONS,
    collect,
    committed,
    env_for,
    expected_by_core,
    script,
    sites,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Faust keeps its changelog position in each partition's store under this key
FAUST_OFFSET_KEY = b"__faust\x00offset__"


def read_tables(state_dir: Path) -> dict[str, dict[bytes, bytes]]:
    """Every row of the worker's local tables (all partitions), by table name."""
    tables: dict[str, dict[bytes, bytes]] = {}
    for path in sorted((state_dir / "worker").glob("v*/tables/*-[0-9]*.db")):
        table = path.stem.rsplit("-", 1)[0]
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            rows = tables.setdefault(table, {})
            for key, value in db.items():
                if key != FAUST_OFFSET_KEY:
                    rows[key] = value
        finally:
            db.close()
    return tables


async def test_failover_survivor_rebuilds_killed_workers_partitions_from_changelog(
    broker: RunningBroker, tmp_path: Path, unique_prefix: str
) -> None:
    rows = script()
    expected = expected_by_core(rows)
    names = TopicNames(unique_prefix)
    await ensure_topics(broker.bootstrap, names, PARTITIONS)
    await produce(broker.bootstrap, names.sites, sites())
    state_a, state_b = tmp_path / "state-a", tmp_path / "state-b"
    env_a = env_for(broker, unique_prefix, state_a)
    env_b = env_for(broker, unique_prefix, state_b)
    log_a, log_b = tmp_path / "worker-a.log", tmp_path / "worker-b.log"
    thirds = [rows[i : i + len(rows) // 3 + 1] for i in range(0, len(rows), len(rows) // 3 + 1)]
    rng = random.Random(5)
    a = spawn(["worker"], env_a, log_a)
    b = spawn(["worker"], env_b, log_b)
    try:
        await produce(broker.bootstrap, names.check_results, thirds[0])
        # both workers are in the group and processing once a share is committed
        await committed_at_least(broker, unique_prefix, len(thirds[0]) // 2)
        # kill one mid-run: while it is processing the second third
        await produce(broker.bootstrap, names.check_results, thirds[1])
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        stop(a, signal.SIGKILL)
        shutil.rmtree(state_a)  # its local store is gone for good
        # the survivor takes every partition and rebuilds the dead one's from the changelog
        await asyncio.sleep(rng.uniform(6.0, 10.0))
        # a replacement on an empty node: partitions move back, recovered from the changelog
        a = spawn(["worker"], env_a, log_a)
        await produce(broker.bootstrap, names.check_results, thirds[2])
        got, raw = await collect(broker, unique_prefix, timeout_s=600)
        assert stop(a) == 0, log_a.read_text()[-3000:]
        assert stop(b) == 0, log_b.read_text()[-3000:]
    finally:
        stop(a, signal.SIGKILL)
        stop(b, signal.SIGKILL)
    missing = expected.keys() - got.keys()
    extra = got.keys() - expected.keys()
    assert not missing and not extra, f"missing {len(missing)}, extra {len(extra)}"
    assert got == expected
    print(f"\nfail-over: {len(expected)} transitions, {raw} records ({raw - len(expected)} dups)")


async def test_fresh_worker_recovers_every_site_from_changelog(
    broker: RunningBroker, tmp_path: Path, unique_prefix: str
) -> None:
    rows = script()
    expected = expected_by_core(rows)
    names = TopicNames(unique_prefix)
    await ensure_topics(broker.bootstrap, names, PARTITIONS)
    await produce(broker.bootstrap, names.sites, sites())
    old_state, new_state = tmp_path / "old", tmp_path / "new"
    log = tmp_path / "worker.log"

    first = spawn(["worker"], env_for(broker, unique_prefix, old_state), log)
    try:
        await produce(broker.bootstrap, names.check_results, rows)
        got, _ = await collect(broker, unique_prefix, timeout_s=600)
        assert stop(first) == 0, log.read_text()[-3000:]
    finally:
        stop(first, signal.SIGKILL)
    assert got == expected
    before = read_tables(old_state)
    assert len(before["site-settings"]) == 500 and len(before["site-state"]) >= 450

    # A marker: a failure for a site that ended up, so its `opened` tells when the new
    # worker has recovered and is processing.
    state = before["site-state"]
    marker_site = next(
        s for s in range(1, 501) if _last_http_ok(rows, s) and records.site_key(s) in state
    )
    marker = records.CheckResult(
        result_id="marker",
        site_id=marker_site,
        check_type=CheckType.HTTP,
        ok=False,
        observed_at=timefmt.from_ms(BASE + INPUTS * 100 + 1000),
        probe="p",
    )
    started = time.monotonic()
    fresh = spawn(["worker"], env_for(broker, unique_prefix, new_state), log)
    try:
        await produce(
            broker.bootstrap,
            names.check_results,
            [(records.site_key(marker_site), records.encode(marker))],
        )
        recovered_s = await _wait_for_opened(broker, names.site_events, marker_site, len(got))
        recovered_s -= started
        assert stop(fresh) == 0, log.read_text()[-3000:]
    finally:
        stop(fresh, signal.SIGKILL)
    after = read_tables(new_state)
    marker_key = records.site_key(marker_site)
    for table in ("site-settings", "site-state"):
        old = {k: v for k, v in before[table].items() if k != marker_key}
        new = {k: v for k, v in after[table].items() if k != marker_key}
        assert new == old, f"{table}: {len(new)} rows recovered vs {len(old)}"
    print(f"\nfresh-node recovery of {len(before['site-state'])} sites: {recovered_s:.1f} s")


async def test_result_that_overtakes_its_settings_is_applied_after_a_fresh_node_recovers_it(
    broker: RunningBroker, tmp_path: Path, unique_prefix: str
) -> None:
    """Parked results travel with their batch's changelog: a worker on an empty node gets
    them back from the parked table's changelog and applies them, in order, once the
    site's settings arrive."""
    names = TopicNames(unique_prefix)
    await ensure_topics(broker.bootstrap, names, PARTITIONS)
    site_id = 7
    key = records.site_key(site_id)
    early = [
        records.CheckResult(
            result_id=f"early-{n}",
            site_id=site_id,
            check_type=CheckType.HTTP,
            ok=n == 2,
            observed_at=timefmt.from_ms(BASE + n * 1000),
            probe="p",
        )
        for n in range(3)
    ]
    old_state, new_state = tmp_path / "old", tmp_path / "new"
    log = tmp_path / "worker.log"
    first = spawn(["worker"], env_for(broker, unique_prefix, old_state), log)
    try:
        await produce(
            broker.bootstrap, names.check_results, [(key, records.encode(r)) for r in early]
        )
        await committed_at_least(broker, unique_prefix, len(early))
        assert stop(first) == 0, log.read_text()[-3000:]
    finally:
        stop(first, signal.SIGKILL)
    before = read_tables(old_state)
    assert key in before["site-parked"] and key not in before.get("site-state", {})
    fresh = spawn(["worker"], env_for(broker, unique_prefix, new_state), log)
    try:
        site = records.SiteRecord(site_id=site_id, url="http://seven.test/")
        await produce(broker.bootstrap, names.sites, [(key, records.encode(site))])
        events = await read_all(broker.bootstrap, names.site_events, want=2, timeout_s=120)
        assert stop(fresh) == 0, log.read_text()[-3000:]
    finally:
        stop(fresh, signal.SIGKILL)
    got = [records.transition_decoder.decode(v) for _, v, _, _ in events if v is not None]
    assert [(t.reason.value, t.at) for t in got] == [
        ("opened", timefmt.from_ms(BASE)),
        ("probe_cleared", timefmt.from_ms(BASE + 2000)),
    ]
    assert key not in read_tables(new_state).get("site-parked", {})


async def committed_at_least(broker: RunningBroker, prefix: str, n: int) -> None:
    deadline = time.monotonic() + 120
    while await committed(broker, f"{prefix}worker", f"{prefix}check-results") < n:
        assert time.monotonic() < deadline, "the workers never got going"
        await asyncio.sleep(0.2)


def _last_http_ok(rows: list[tuple[bytes, bytes]], site_id: int) -> bool:
    last = None
    for key, value in rows:
        if key == records.site_key(site_id):
            rec = records.input_decoder.decode(value)
            if isinstance(rec, records.CheckResult) and rec.check_type is CheckType.HTTP:
                last = rec.ok
    return last is True


async def _wait_for_opened(broker: RunningBroker, topic: str, site_id: int, known: int) -> float:
    """Monotonic time at which an `opened` of `site_id` newer than the workload shows up."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        rows = await read_all(broker.bootstrap, topic, idle_s=0.5, timeout_s=30, want=known)
        for _, value, _, _ in rows:
            assert value is not None
            tr = records.transition_decoder.decode(value)
            if tr.site_id == site_id and tr.started_at > timefmt.from_ms(BASE + INPUTS * 100):
                return time.monotonic()
        await asyncio.sleep(0.5)
    raise AssertionError("the fresh worker never processed the marker")
