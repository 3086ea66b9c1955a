"""`sitewatch worker` on the real broker: scripted scenarios in, the lifecycle's transitions out.

The worker runs as the CLI does in production, configured only by SITEWATCH_*
variables; this test plays the probes (writing results) and the verifiers (reading
`verify-requests`, answering on `check-results` with the request id).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType, Role
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import TopicNames
from tests.kafka_util import RunningBroker, produce, read_all, spawn, stop

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "worker.log"
    proc = spawn(["worker"], worker_env, log)
    yield log
    assert stop(proc) == 0, log.read_text()[-3000:]


def result(site_id: int, ok: bool, at_ms: int, rid: str, **kw: object) -> tuple[bytes, bytes]:
    rec = records.CheckResult(
        result_id=rid,
        site_id=site_id,
        check_type=kw.pop("check_type", CheckType.HTTP),
        ok=ok,
        observed_at=timefmt.from_ms(at_ms),
        probe="p1",
        **kw,
    )  # type: ignore[arg-type]
    return records.site_key(site_id), records.encode(rec)


async def test_worker_scenarios_produce_spec_transitions(
    broker: RunningBroker, unique_prefix: str, worker: Path
) -> None:
    base = time.time_ns() // 1_000_000 - 120_000
    in_window = records.MaintenanceWindow(
        start=timefmt.from_ms(base - 1000), end=timefmt.from_ms(base + 3_600_000)
    )
    sites = [
        records.SiteRecord(site_id=1, url="http://one.test/"),
        records.SiteRecord(site_id=2, url="http://two.test/"),
        records.SiteRecord(site_id=3, url="http://three.test/"),
        records.SiteRecord(site_id=4, url="http://four.test/", verify_timeout_s=1),
        records.SiteRecord(site_id=5, url="http://five.test/", maintenance=[in_window]),
        records.SiteRecord(site_id=6, url="https://six.test/", checks=[CheckType.TLS_EXPIRY]),
        records.SiteRecord(site_id=7, url="http://seven.test/", active=False),
    ]
    await ensure_topics(broker.bootstrap, TopicNames(unique_prefix), 4)
    await produce(
        broker.bootstrap,
        f"{unique_prefix}sites",
        [(records.site_key(s.site_id), records.encode(s)) for s in sites],
    )
    rows = []
    for site_id in (1, 3, 4, 5, 7):
        rows += [result(site_id, False, base + i * 1000, f"s{site_id}-{i}") for i in range(3)]
    rows += [
        result(2, False, base, "s2-0"),
        result(2, False, base, "s2-0"),  # duplicate
        result(2, True, base + 1000, "s2-1"),
    ]
    rows.append(
        result(
            6,
            True,
            base,
            "s6-0",
            check_type=CheckType.TLS_EXPIRY,
            tls_not_after=timefmt.from_ms(base + 5 * 86_400_000),
        )
    )
    rows.append((b"1", b"{not json"))
    await produce(broker.bootstrap, f"{unique_prefix}check-results", rows)

    # Play the verifiers: answer every verify request for sites 1 and 3.
    requests = await read_all(
        broker.bootstrap, f"{unique_prefix}verify-requests", want=3, timeout_s=60
    )
    decoded = {
        records.verify_request_decoder.decode(v).site_id: records.verify_request_decoder.decode(v)
        for _, v, _, _ in requests
    }
    assert sorted(decoded) == [1, 3, 4]
    answers = []
    for site_id, ok in ((1, False), (3, True)):
        req = decoded[site_id]
        for loc in ("eu", "us"):
            rec = records.CheckResult(
                result_id=f"v{site_id}{loc}",
                site_id=site_id,
                check_type=CheckType.HTTP,
                role=Role.VERIFIER,
                probe=loc,
                request_id=req.request_id,
                ok=ok,
                observed_at=timefmt.from_ms(base + 3500),
            )
            answers.append((records.site_key(site_id), records.encode(rec)))
    answers.append(result(1, True, base + 10_000, "s1-up"))
    await produce(broker.bootstrap, f"{unique_prefix}check-results", answers)

    expected = {
        1: ["opened", "verifier_confirmed", "verifier_cleared"],
        2: ["opened", "probe_cleared"],
        3: ["opened", "false_alarm"],
        4: ["opened", "false_alarm"],  # nobody answered: the verify timeout fires on ticks
        6: ["opened"],
    }
    want = sum(len(v) for v in expected.values())
    events = await read_all(
        broker.bootstrap, f"{unique_prefix}site-events", want=want, idle_s=3.0, timeout_s=90
    )
    seen: dict[str, records.Transition] = {}
    for _, value, _, _ in events:
        tr = records.transition_decoder.decode(value)
        seen.setdefault(tr.transition_id, tr)
    by_site: dict[int, list[records.Transition]] = {}
    for tr in sorted(seen.values(), key=lambda t: (t.site_id, t.at, t.seq)):
        by_site.setdefault(tr.site_id, []).append(tr)
    assert {k: [t.reason.value for t in v] for k, v in by_site.items()} == expected
    confirmed = by_site[1][1]
    assert confirmed.started_at == timefmt.from_ms(base)
    assert confirmed.metadata["answers"] == {"eu": False, "us": False}
    assert by_site[4][1].metadata["no_verifier_answered"] is True
    assert (by_site[6][0].state_after.value, by_site[6][0].severity_after) == ("degraded", 2)

    letters = await read_all(
        broker.bootstrap, f"{unique_prefix}check-results.dead-letter", want=1, timeout_s=30
    )
    assert [records.dead_letter_decoder.decode(v).value for _, v, _, _ in letters] == ["{not json"]
    await asyncio.sleep(0)
