"""`sitewatch replay` on a recorded incident: the real worker on the real broker first.

The worker runs scripted inputs (probes and verifiers played by the test), then stops;
replay of the range must reproduce what it published to `site-events` byte for byte,
`--diff` must report nothing, two runs must print identical bytes, and `--what-if
num_of_checks=5` must show the outage that would not have been alerted.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import msgspec
import pytest

from sitewatch.streams import records, replay, timefmt
from sitewatch.streams.enums import CheckType, Role
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.message import Record
from sitewatch.streams.processor import Processor
from sitewatch.streams.state import Config
from sitewatch.streams.stores import MemoryStore
from sitewatch.streams.topics import TopicNames
from tests.kafka_util import SITEWATCH, RunningBroker, produce, read_all, spawn, stop

pytestmark = pytest.mark.integration


def result(site_id: int, ok: bool, at_ms: int, rid: str, **kw: object) -> tuple[bytes, bytes]:
    rec = records.CheckResult(
        result_id=rid,
        site_id=site_id,
        check_type=CheckType.HTTP,
        ok=ok,
        observed_at=timefmt.from_ms(at_ms),
        probe="p1",
        **kw,
    )  # type: ignore[arg-type]
    return records.site_key(site_id), records.encode(rec)


def answer(site_id: int, request_id: str, loc: str, ok: bool, at_ms: int) -> tuple[bytes, bytes]:
    rec = records.CheckResult(
        result_id=f"v{site_id}{loc}",
        site_id=site_id,
        check_type=CheckType.HTTP,
        role=Role.VERIFIER,
        probe=loc,
        request_id=request_id,
        ok=ok,
        observed_at=timefmt.from_ms(at_ms),
    )
    return records.site_key(site_id), records.encode(rec)


def replay_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [SITEWATCH, "replay", *args],
        env={**os.environ, **env},
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def env(worker_env: dict[str, str]) -> dict[str, str]:
    return {**worker_env, "SITEWATCH_LOG_FORMAT": "json"}


async def record_incident(
    broker: RunningBroker, prefix: str, env: dict[str, str], tmp: Path
) -> int:
    """Run the worker over a scripted incident; returns its base time (ms)."""
    base = time.time_ns() // 1_000_000 - 120_000
    window = records.MaintenanceWindow(
        start=timefmt.from_ms(base - 1000), end=timefmt.from_ms(base + 3_600_000)
    )
    sites = [
        records.SiteRecord(site_id=1, url="http://one.test/"),
        records.SiteRecord(site_id=2, url="http://two.test/"),
        records.SiteRecord(site_id=3, url="http://three.test/"),
        records.SiteRecord(site_id=4, url="http://four.test/", verify_timeout_s=1),
        records.SiteRecord(site_id=5, url="http://five.test/", maintenance=[window]),
    ]
    await ensure_topics(broker.bootstrap, TopicNames(prefix), 4)
    await produce(
        broker.bootstrap,
        f"{prefix}sites",
        [(records.site_key(s.site_id), records.encode(s)) for s in sites],
    )
    proc = spawn(["worker"], env, tmp / "worker.log")
    try:
        rows = [result(1, False, base + i * 1000, f"s1-{i}") for i in range(4)]
        for site_id in (3, 4, 5):
            rows += [result(site_id, False, base + i * 1000, f"s{site_id}-{i}") for i in range(3)]
        rows += [result(2, False, base, "s2-0"), result(2, True, base + 1000, "s2-1")]
        await produce(broker.bootstrap, f"{prefix}check-results", rows)
        requests = await read_all(
            broker.bootstrap, f"{prefix}verify-requests", want=3, timeout_s=90
        )
        req = {
            r.site_id: r.request_id
            for _, v, _, _ in requests
            for r in (records.verify_request_decoder.decode(v or b""),)
        }
        assert sorted(req) == [1, 3, 4]
        answers = [answer(1, req[1], loc, False, base + 3500) for loc in ("eu", "us")]
        answers += [answer(3, req[3], loc, True, base + 2500) for loc in ("eu", "us")]
        answers.append(result(1, True, base + 10_000, "s1-up"))
        await produce(broker.bootstrap, f"{prefix}check-results", answers)
        await read_all(broker.bootstrap, f"{prefix}site-events", want=9, idle_s=3.0, timeout_s=90)
    finally:
        assert stop(proc) == 0, (tmp / "worker.log").read_text()[-3000:]
    return base


async def test_replay_reproduces_recorded_incident_and_what_if(
    broker: RunningBroker, unique_prefix: str, env: dict[str, str], tmp_path: Path
) -> None:
    base = await record_incident(broker, unique_prefix, env, tmp_path)
    recorded = await read_all(broker.bootstrap, f"{unique_prefix}site-events")
    first_seen: dict[str, bytes] = {}
    for _, value, _, _ in recorded:
        assert value is not None
        tr = records.transition_decoder.decode(value)
        first_seen.setdefault(tr.transition_id, value)
    by_site: dict[int, list[str]] = {}
    for tr in replay.sort_transitions(
        records.transition_decoder.decode(v) for v in first_seen.values()
    ):
        by_site.setdefault(tr.site_id, []).append(tr.reason.value)
    assert by_site == {
        1: ["opened", "verifier_confirmed", "verifier_cleared"],
        2: ["opened", "probe_cleared"],
        3: ["opened", "false_alarm"],
        4: ["opened", "false_alarm"],  # verify timeout, fired by a tick
    }

    span = ["--from", timefmt.from_ms(base - 1000), "--to", timefmt.from_ms(base + 60_000)]
    first = replay_cli(env, *span)
    assert first.returncode == 0, first.stderr.decode()
    # byte for byte what the worker published (the encoder is deterministic)
    assert sorted(first.stdout.splitlines()) == sorted(first_seen.values())
    second = replay_cli(env, *span)
    assert second.returncode == 0 and second.stdout == first.stdout  # deterministic

    checked = replay_cli(env, *span, "--diff")
    assert checked.returncode == 0, checked.stdout.decode() + checked.stderr.decode()
    assert checked.stdout.decode().strip().splitlines()[-1] == (
        "diff: 9 recorded, 9 replayed, 0 missing, 0 extra, 0 different"
    )

    # a range starting mid-incident: state rebuilt from the lookback, diff still clean
    mid = ["--from", timefmt.from_ms(base + 5000), "--to", timefmt.from_ms(base + 60_000)]
    later = replay_cli(env, *mid, "--diff", "--site", "1", "--site", "2")
    assert later.returncode == 0, later.stdout.decode() + later.stderr.decode()
    assert (
        later.stdout.decode()
        .strip()
        .endswith("1 recorded, 1 replayed, 0 missing, 0 extra, 0 different")
    )
    short = replay_cli(env, *mid, "--lookback", "1s", "--site", "1", "--diff")
    assert short.returncode == 1  # without the start of the incident it cannot be rebuilt
    assert "missing" in short.stdout.decode()

    # would five failures in a row have alerted? site 1 failed four times: no.
    what_if = replay_cli(env, *span, "--site", "1", "--what-if", "num_of_checks=5")
    assert what_if.returncode == 0, what_if.stderr.decode()
    reasons = [
        records.transition_decoder.decode(line).reason.value for line in what_if.stdout.splitlines()
    ]
    assert reasons == ["opened", "probe_cleared"]
    what_if_diff = replay_cli(env, *span, "--site", "1", "--what-if", "num_of_checks=5", "--diff")
    assert what_if_diff.returncode == 1
    text = what_if_diff.stdout.decode()
    # the event's second transition is now a clearing, and its third never happens
    assert 'reason: recorded="verifier_confirmed" replayed="probe_cleared"' in text
    assert "missing" in text and "reason=verifier_cleared" in text

    table = replay_cli(env, *span, "--output", "table", "--site", "4")
    assert table.returncode == 0
    lines = table.stdout.decode().splitlines()
    assert lines[0].split()[:5] == ["at", "site", "check", "seq", "reason"]
    assert [ln.split()[4] for ln in lines[1:]] == ["opened", "false_alarm"]

    bad = replay_cli(env, *span, "--what-if", "nonsense=1")
    assert bad.returncode == 2 and b"unknown setting" in bad.stderr


def test_replay_start_and_stop_follow_record_times_not_batches() -> None:
    """Feeding the same records in different chunkings gives the same transitions; the
    start is the first record at or after from-lookback by its own time."""
    names = TopicNames("x.")
    base = timefmt.to_ms("2026-11-26T10:00:00.000Z")
    site = records.encode(records.SiteRecord(site_id=1, url="http://one.test/"))
    rows: list[Record] = []
    for i in range(40):
        ok = not (10 <= i < 20)
        _, value = result(1, ok, base + i * 1000, f"r{i}")
        rows.append(Record(names.check_results, 0, i, b"1", value, timestamp=100 + i))
    window = replay.Window(
        start_ms=base + 5000, end_ms=base + 25_000, lookback_ms=2000, grace_ms=1000
    )

    def run(chunk: int) -> list[bytes]:
        rp = replay.Replay(Config(), names, window)
        rp.add_sites(0, [Record(names.sites, 0, 0, b"1", site)])
        for i in range(0, len(rows), chunk):
            if not rp.feed(0, rows[i : i + chunk]):
                break
        return [records.encode(t) for t in rp.result()]

    outs = {tuple(run(n)) for n in (1, 3, 7, 40)}
    assert len(outs) == 1
    got = [records.transition_decoder.decode(v) for v in outs.pop()]
    # the same inputs through a bare Processor (the worker's path) give the same bytes
    proc = Processor(
        Config(), MemoryStore(), MemoryStore(), MemoryStore(), names.check_results, names.sites, "t"
    )
    out = proc.process(
        [Record(names.sites, 0, 0, b"1", site)]
        + [Record(names.check_results, 0, r.offset, r.key, r.value) for r in rows],
        0,
    )
    direct = [
        v
        for _, v in out.transitions
        if window.start_ms <= timefmt.to_ms(records.transition_decoder.decode(v).at) < window.end_ms
    ]
    assert sorted(direct) == sorted(records.encode(t) for t in got)
    assert [t.reason.value for t in got] == ["opened", "verifier_confirmed", "verifier_cleared"]


def test_what_if_parsing() -> None:
    w = replay.parse_what_if(["num_of_checks=5", "quorum=1", "verifiers=a,b", "maintenance=[]"])
    assert w.site == {"num_of_checks": 5, "peer_offline_limit": 1, "maintenance": []}
    assert w.config(Config()).verifiers == ("a", "b")
    rewritten = w.rewrite(records.encode(records.SiteRecord(site_id=3, url="http://x/")))
    assert msgspec.json.decode(rewritten)["num_of_checks"] == 5
    for bad in ("num_of_checks=0", "num_of_checks", "colour=red"):
        with pytest.raises(replay.ReplayError):
            replay.parse_what_if([bad])
    assert replay.parse_duration_ms("48h") == 48 * 3_600_000
    assert replay.parse_time_ms("2026-11-26T10:00:00Z") == timefmt.to_ms("2026-11-26T10:00:00.000Z")
    assert replay.record_stamp(b'{"kind":"tick","at":"2026-11-26T10:00:00.000Z"}') == (
        "2026-11-26T10:00:00.000Z"
    )
    assert replay.record_stamp(b'{"observed_at": "2026-11-26T10:00:00Z"}') == "2026-11-26T10:00:00Z"
