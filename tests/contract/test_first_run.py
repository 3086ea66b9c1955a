"""An outside team that publishes its sites before sitewatch ever ran: the broker creates
`sites` on that first write (with its default partition count, not compacted), and the
worker started afterwards must still come up and apply the sites' results."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from .harness import (
    Follower,
    Installed,
    Producer,
    canonical,
    new_id,
    now_ms,
    spawn,
    topic_partitions,
)

pytestmark = pytest.mark.integration


async def test_worker_starts_after_a_producer_created_the_sites_topic(
    installed: Installed, bundled_broker: str, tmp_path: Path
) -> None:
    prefix = f"f{uuid.uuid4().hex[:6]}."
    producer = await Producer(bundled_broker).start()
    try:
        await producer.send(f"{prefix}sites", 7, {"site_id": 7, "url": "https://seven.test/"})
        auto = await topic_partitions(bundled_broker, f"{prefix}sites")
        env = {
            "SITEWATCH_KAFKA_BOOTSTRAP": bundled_broker,
            "SITEWATCH_TOPIC_PREFIX": prefix,
            "SITEWATCH_STATE_DIR": str(tmp_path / "state"),
            "SITEWATCH_LOG_FORMAT": "json",
        }
        worker = spawn(installed, "worker", ["worker"], env, tmp_path)
        try:
            results = await topic_partitions(bundled_broker, f"{prefix}check-results", 120)
            assert results == auto  # co-partitioned with what the broker made
            follower = await Follower(bundled_broker, [f"{prefix}site-events"]).start()
            try:
                result = {
                    "kind": "result",
                    "result_id": new_id("r"),
                    "site_id": 7,
                    "check_type": "http",
                    "ok": False,
                    "observed_at": canonical(now_ms()),
                }
                await producer.send(f"{prefix}check-results", 7, result)
                opened = await follower.wait(
                    lambda: follower.of(f"{prefix}site-events", 7),
                    "the site's opened transition",
                    timeout_s=120,
                    logs=worker.tail(),
                )
                assert opened[0].json()["reason"] == "opened"
                assert worker.alive(), worker.tail()
            finally:
                await follower.stop()
        finally:
            assert worker.stop() == 0, worker.tail()
    finally:
        await producer.stop()
