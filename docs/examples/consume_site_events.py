"""Follow sitewatch's site-events: one JSON transition per record, keyed by site_id."""

import asyncio
import json
import os
import sys

from aiokafka import AIOKafkaConsumer


async def main(limit: int | None) -> None:
    consumer = AIOKafkaConsumer(
        os.environ.get("SITEWATCH_TOPIC_PREFIX", "sitewatch.") + "site-events",
        bootstrap_servers=os.environ.get("SITEWATCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        group_id="my-dashboard",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: set[str] = set()  # in production: a unique key on transition_id in your store
    try:
        async for msg in consumer:
            t = json.loads(msg.value)
            if t["transition_id"] not in seen:  # delivery is at least once: dedup
                seen.add(t["transition_id"])
                print(t["site_id"], t["at"], t["reason"], t["state_before"], "->", t["state_after"])
            await consumer.commit()  # after handling: a crash re-reads, never skips
            if limit and len(seen) >= limit:
                break
    finally:
        await consumer.stop()


asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else None))
