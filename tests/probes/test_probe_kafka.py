"""`sitewatch probe` and `sitewatch verifier` as processes, on the real (Tansu) broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from sitewatch.probes.fleet import KEYWORD, Fleet
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import CheckType, ErrorKind, Role
from tests.kafka_util import RunningBroker

from .helpers import Reader, create_topics, env_for, publish, start, stop

pytestmark = pytest.mark.integration

#: fleet site -> (checks, expected (check_type, ok, error) of each result)
EXPECTED: dict[str, tuple[list[CheckType], set[tuple[CheckType, bool, ErrorKind]]]] = {
    "up": (
        [CheckType.HTTP, CheckType.TCP],
        {(CheckType.HTTP, True, ErrorKind.NONE), (CheckType.TCP, True, ErrorKind.NONE)},
    ),
    "down": ([CheckType.HTTP], {(CheckType.HTTP, False, ErrorKind.CONNECT)}),
    "error-5xx": ([CheckType.HTTP], {(CheckType.HTTP, False, ErrorKind.HTTP_STATUS)}),
    "slow": ([CheckType.HTTP], {(CheckType.HTTP, False, ErrorKind.TIMEOUT)}),
    "redirect-loop": ([CheckType.HTTP], {(CheckType.HTTP, False, ErrorKind.REDIRECT)}),
    "redirect-other-host": ([CheckType.HTTP], {(CheckType.HTTP, True, ErrorKind.NONE)}),
    "keyword-missing": ([CheckType.HTTP], {(CheckType.HTTP, False, ErrorKind.KEYWORD)}),
    "reset": ([CheckType.HTTP], {(CheckType.HTTP, False, ErrorKind.CONNECT)}),
    "tls-warning": (
        [CheckType.HTTP, CheckType.TLS_EXPIRY],
        {(CheckType.HTTP, True, ErrorKind.NONE), (CheckType.TLS_EXPIRY, False, ErrorKind.NONE)},
    ),
    "tls-expired": (
        [CheckType.HTTP, CheckType.TLS_EXPIRY],
        {
            (CheckType.HTTP, False, ErrorKind.TLS_EXPIRED),
            (CheckType.TLS_EXPIRY, False, ErrorKind.TLS_EXPIRED),
        },
    ),
}


def site(site_id: int, url: str, checks: list[CheckType], **kw: object) -> records.SiteRecord:
    return records.SiteRecord(
        site_id=site_id,
        url=url,
        checks=checks,
        check_interval_s=1,
        recheck_interval_s=1,
        timeout_s=1,
        keyword=KEYWORD,
        **kw,  # type: ignore[arg-type]
    )


async def test_probe_publishes_each_behaviour(
    broker: RunningBroker, unique_prefix: str, fleet: Fleet, fleet_ca: Path, tmp_path: Path
) -> None:
    names = await create_topics(broker.bootstrap, unique_prefix)
    ids = {name: i for i, name in enumerate(EXPECTED, start=1)}
    invalid_id, deleted_id = 100, 101
    sites = [site(ids[n], fleet.sites[n].url, checks) for n, (checks, _) in EXPECTED.items()]
    sites.append(site(invalid_id, "ftp://example.com/", [CheckType.HTTP]))
    sites.append(site(deleted_id, fleet.sites["up"].url, [CheckType.HTTP]))
    items: list[tuple[bytes | None, bytes | None]] = [
        (records.site_key(s.site_id), records.encode(s)) for s in sites
    ]
    items.append((b"7", b'{"site_id": "not a number"'))  # poison: dead-lettered
    await publish(broker.bootstrap, names.sites, items)

    env = env_for(broker.bootstrap, unique_prefix, fleet_ca, tmp_path)
    proc = await start(
        ["probe", "--name", "p1", "--max-initial-delay", "0.2"], env, tmp_path / "probe.log"
    )
    try:
        async with Reader(broker.bootstrap, names.check_results) as reader:

            def seen() -> dict[int, set[tuple[CheckType, bool, ErrorKind]]]:
                out: dict[int, set[tuple[CheckType, bool, ErrorKind]]] = defaultdict(set)
                for r in reader.results():
                    out[r.site_id].add((r.check_type, r.ok, r.error))
                return out

            def complete() -> bool:
                got = seen()
                return (
                    all(got[ids[n]] >= exp for n, (_, exp) in EXPECTED.items())
                    and bool(got[invalid_id])
                    and bool(got[deleted_id])
                )

            await reader.wait_for(complete, 60, "a result of every behaviour")
            got = seen()
            for name, (_, expected) in EXPECTED.items():
                assert got[ids[name]] == expected, name
            assert got[invalid_id] == {(CheckType.HTTP, False, ErrorKind.INVALID_TARGET)}
            results = reader.results()
            assert all(r.role is Role.PRIMARY and r.probe == "p1" for r in results)
            assert len({r.result_id for r in results}) == len(results)
            # the class stays the contract's; the finer cause rides along in error_cause
            causes = {n: {r.error_cause for r in results if r.site_id == ids[n]} for n in ids}
            assert (causes["down"], causes["reset"], causes["up"]) == (
                {"refused"},
                {"reset"},
                {None},
            )
            up = next(r for r in results if r.site_id == ids["up"] and r.check_type == "http")
            assert up.timings_ms is not None and up.timings_ms.tcp and up.timings_ms.ttfb
            tls = next(r for r in results if r.check_type is CheckType.TLS_EXPIRY)
            assert tls.tls_not_after is not None

            # a deleted site is no longer checked; the probe kept going past the poison
            await publish(broker.bootstrap, names.sites, [(records.site_key(deleted_id), None)])
            await asyncio.sleep(1.5)
            cutoff = time.time() * 1000
            await asyncio.sleep(2.5)
            await reader.poll()
            late = [
                r
                for r in reader.results()
                if r.site_id == deleted_id and timefmt.to_ms(r.observed_at) > cutoff
            ]
            assert late == []

        async with Reader(broker.bootstrap, names.dead_letter(names.sites)) as dead:
            await dead.wait_for(lambda: bool(dead.values), 10, "the dead letter")
            letter = records.dead_letter_decoder.decode(dead.values[0])
            assert letter.key == "7" and "not a number" in (letter.value or "")
        assert proc.returncode is None  # still running
    finally:
        assert await stop(proc) == 0


async def test_two_probes_split_sites_and_take_over(
    broker: RunningBroker, unique_prefix: str, fleet: Fleet, fleet_ca: Path, tmp_path: Path
) -> None:
    names = await create_topics(broker.bootstrap, unique_prefix)
    ids = list(range(1, 13))
    for i in ids:
        if f"split-{i}" not in fleet.sites:
            await fleet.add(f"split-{i}")
    sites = [site(i, fleet.sites[f"split-{i}"].url, [CheckType.HTTP]) for i in ids]
    await publish(
        broker.bootstrap,
        names.sites,
        [(records.site_key(s.site_id), records.encode(s)) for s in sites],
    )
    env = env_for(broker.bootstrap, unique_prefix, fleet_ca, tmp_path)
    args = ["--max-initial-delay", "0.2"]
    a = await start(["probe", "--name", "a", *args], env, tmp_path / "a.log")
    b = await start(["probe", "--name", "b", *args], env, tmp_path / "b.log")
    try:
        async with Reader(broker.bootstrap, names.check_results) as reader:

            def owners(since_ms: float) -> dict[int, set[str]]:
                out: dict[int, set[str]] = defaultdict(set)
                for r in reader.results():
                    if timefmt.to_ms(r.observed_at) >= since_ms:
                        out[r.site_id].add(r.probe)
                return out

            def split() -> bool:
                # over the last 2.5 s every site was checked by exactly one probe, both busy
                got = owners(time.time() * 1000 - 2500)
                return (
                    set(got) == set(ids)
                    and all(len(p) == 1 for p in got.values())
                    and {p for ps in got.values() for p in ps} == {"a", "b"}
                )

            await reader.wait_for(split, 60, "the two probes to split the sites")
            assert await stop(a) == 0
            stopped = time.time() * 1000

            def taken_over() -> bool:
                got = owners(stopped + 500)
                return set(got) == set(ids) and all(p == {"b"} for p in got.values())

            await reader.wait_for(taken_over, 60, "probe b to take over every site")
    finally:
        await stop(a)
        assert await stop(b) == 0


async def test_verifier_answers_with_request_id(
    broker: RunningBroker, unique_prefix: str, fleet: Fleet, fleet_ca: Path, tmp_path: Path
) -> None:
    names = await create_topics(broker.bootstrap, unique_prefix)
    env = env_for(broker.bootstrap, unique_prefix, fleet_ca, tmp_path)
    proc = await start(["verifier", "--name", "eu-west"], env, tmp_path / "verifier.log")
    now = timefmt.from_ms(int(time.time() * 1000))
    requests = {
        "false-alarm": records.VerifyRequest(
            request_id=str(uuid.uuid4()),
            site_id=41,
            check_type=CheckType.HTTP,
            event_id="e1",
            url=fleet.sites["false-alarm"].url,
            timeout_s=2,
            requested_at=now,
        ),
        "error-5xx": records.VerifyRequest(
            request_id=str(uuid.uuid4()),
            site_id=42,
            check_type=CheckType.HTTP,
            event_id="e2",
            url=fleet.sites["error-5xx"].url,
            timeout_s=2,
            requested_at=now,
        ),
    }
    await publish(
        broker.bootstrap,
        names.verify_requests,
        [(records.site_key(r.site_id), records.encode(r)) for r in requests.values()]
        + [(b"43", b"garbage")],
    )
    try:
        async with Reader(broker.bootstrap, names.check_results) as reader:
            await reader.wait_for(lambda: len(reader.results()) >= 2, 60, "two answers")
            answers = {r.request_id: r for r in reader.results()}
        fa = answers[requests["false-alarm"].request_id]
        assert (fa.site_id, fa.ok, fa.role, fa.probe) == (41, True, Role.VERIFIER, "eu-west")
        down = answers[requests["error-5xx"].request_id]
        assert (down.site_id, down.ok, down.error) == (42, False, ErrorKind.HTTP_STATUS)
        async with Reader(broker.bootstrap, names.dead_letter(names.verify_requests)) as dead:
            await dead.wait_for(lambda: bool(dead.values), 10, "the dead letter")
    finally:
        assert await stop(proc) == 0
