"""Apache Kafka stops mid-run and comes back on the same data: everything carries on.

The whole pipeline (probe, two verifiers, worker, sink, notifier) runs against a Kafka
node of this test's own. Mid-run the broker is stopped (SIGTERM), left down for a while,
and started again on the same data folder and ports. Nobody restarts the sitewatch
processes: they must reconnect by themselves, keep detecting outages, keep delivering
webhooks, and MySQL must end with every transition of the topic exactly once and a
projection equal to its rebuild.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

import pytest

from scripts.apache_kafka import KafkaNode
from sitewatch import crypto
from sitewatch.probes.fleet import Behaviour, SiteScript
from tests.e2e.pipeline import Pipeline, running_pipeline, scratch_database
from tests.kafka_util import SITEWATCH, spawn
from tests.notify.receiver import Receiver, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BEFORE, AFTER, FLAPPING = 1, 2, 3
DOWN_FOR_S = 12.0


async def down_events(pipe: Pipeline, site_id: int) -> list[dict[str, object]]:
    return await pipe.wait_sql(
        "SELECT * FROM jetmon_events WHERE site_id = %s AND state = 'down'",
        site_id,
        timeout_s=120,
        what=f"site {site_id} confirmed down",
    )


async def test_broker_restart_mid_run_loses_and_duplicates_no_transition(
    own_kafka: KafkaNode, tmp_path: Path
) -> None:
    receiver = Receiver(secret="restart-secret-0123")
    runners = await serve(receiver)
    plan = [
        (BEFORE, "before", SiteScript(), None, {}),
        (AFTER, "after", SiteScript(), None, {}),
        (FLAPPING, "flapping", SiteScript(Behaviour.FLAPPING, flap_period=1), None, {}),
    ]
    try:
        with scratch_database("restart") as db:
            async with running_pipeline(
                own_kafka.bootstrap,
                db,
                tmp_path,
                plan,
                extra_env={
                    "SITEWATCH_NOTIFY_RETRY_SCALE": "0.001",
                    "SITEWATCH_SECRET_KEY": crypto.new_key(),  # webhook secrets sealed at rest
                },
            ) as pipe:
                # subscribe first: the notifier decides each transition once, as it comes
                add = await run(
                    pipe,
                    "webhooks",
                    "add",
                    receiver.url,
                    "--secret-file",
                    "-",
                    stdin=receiver.secret,
                )
                assert add.returncode == 0, add.stderr.decode()
                pipe.procs["notify"] = spawn(["notify"], pipe.env, tmp_path / "notify.log")
                await wait_for(
                    lambda: "notifier consuming" in (tmp_path / "notify.log").read_text(),
                    "the notifier to start",
                )
                await pipe.fleet.set("before", behaviour=Behaviour.DOWN)
                await down_events(pipe, BEFORE)
                await wait_for(lambda: kinds(receiver, BEFORE) >= {"site.down"}, "down webhook")

                flaps_before = await count_transitions(pipe, FLAPPING)
                own_kafka.stop()
                await asyncio.sleep(DOWN_FOR_S)
                await asyncio.to_thread(own_kafka.start)
                restarted = time.monotonic()

                # detection goes on: a new outage is confirmed and cleared, and notified
                await pipe.fleet.set("after", behaviour=Behaviour.DOWN)
                await down_events(pipe, AFTER)
                await pipe.fleet.set("after", behaviour=Behaviour.UP)
                await pipe.fleet.set("before", behaviour=Behaviour.UP)
                await pipe.wait_sql(
                    "SELECT id FROM jetmon_events WHERE site_id IN (%s, %s)"
                    " AND ended_at IS NOT NULL AND state = 'resolved'"
                    " AND resolution_reason = 'verifier_cleared'",
                    BEFORE,
                    AFTER,
                    until=lambda r: len(r) == 2,
                    timeout_s=120,
                    what="both outages cleared",
                )
                await wait_for(
                    lambda: (
                        kinds(receiver, AFTER) >= {"site.down", "site.recovered"}
                        and "site.recovered" in kinds(receiver, BEFORE)
                    ),
                    "webhooks after the restart",
                )
                assert await count_transitions(pipe, FLAPPING) > flaps_before
                dead = {n: p.returncode for n, p in pipe.procs.items() if p.poll() is not None}
                assert not dead, f"processes died: {dead}"

                # quiesce the sources, then MySQL must hold the topic exactly once
                for name in ("probe", "verifier-eu", "verifier-us"):
                    pipe.procs[name].terminate()
                    pipe.procs[name].wait(30)
                await assert_mysql_equals_topic(pipe)
                check = await run(pipe, "projection", "check")
                assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
                took = time.monotonic() - restarted
                print(f"\nbroker down {DOWN_FOR_S:.0f} s; all caught up {took:.0f} s after")
    finally:
        for runner in runners:
            await runner.cleanup()


async def run(
    pipe: Pipeline, *argv: str, stdin: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """A `sitewatch` command with the pipeline's settings, off the event loop."""
    return await asyncio.to_thread(
        subprocess.run,
        [SITEWATCH, *argv],
        env={**os.environ, **pipe.env},
        input=None if stdin is None else stdin.encode(),
        capture_output=True,
        timeout=120,
    )


def kinds(receiver: Receiver, site_id: int) -> set[str]:
    return {str(p["type"]) for p in receiver.got if p.get("site_id") == site_id}


async def wait_for(check: object, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def count_transitions(pipe: Pipeline, site_id: int) -> int:
    rows = await pipe.sql(
        "SELECT COUNT(*) AS n FROM jetmon_event_transitions WHERE site_id = %s", site_id
    )
    return int(rows[0]["n"])


async def assert_mysql_equals_topic(pipe: Pipeline, settle_s: float = 5.0) -> None:
    """Wait until MySQL holds each distinct transition of `site-events` (and nothing else)."""
    deadline = time.monotonic() + 120
    while True:
        on_topic = {t.transition_id for t in await pipe.transitions_topic()}
        rows = await pipe.sql("SELECT transition_id FROM jetmon_event_transitions")
        stored = [str(r["transition_id"]) for r in rows]
        assert len(stored) == len(set(stored)), "a transition is stored twice"
        if set(stored) == on_topic:
            await asyncio.sleep(settle_s)  # and it stays so (ticks may still close events)
            again = {t.transition_id for t in await pipe.transitions_topic()}
            rows = await pipe.sql("SELECT transition_id FROM jetmon_event_transitions")
            if {str(r["transition_id"]) for r in rows} == again:
                return
        assert time.monotonic() < deadline, (
            f"MySQL never matched the topic: {len(on_topic - set(stored))} missing, "
            f"{len(set(stored) - on_topic)} unknown"
        )
        await asyncio.sleep(1.0)
