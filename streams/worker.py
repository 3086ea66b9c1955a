"""`sitewatch worker`: the Faust app that runs the lifecycle over `check-results`.

A thin shell: Faust tables hold each site's lifecycle state and settings (changelog
backed, RocksDB locally), `Processor` does the work, and this module moves bytes
between Kafka and it. Delivery is at-least-once; the core re-emits what a redelivered
input produced, and downstream dedups by `transition_id`.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import uuid
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import faust
import structlog
from faust.streams import _current_event

from sitewatch import logs
from sitewatch.settings import Settings

from . import records, timefmt
from .broker import group_timeouts
from .deadletter import log_dead_letter, log_unsent, message_key
from .kafka_admin import ensure_topics
from .processor import Message, Processor
from .state import Config
from .topics import Topic, TopicNames, partition_of

log = structlog.get_logger(__name__)

BATCH_MAX = 2000
BATCH_WITHIN_S = 0.02


def _bind(handle: object) -> None:
    """Make `handle` Faust's current event: tables pick partitions from it."""
    if handle is not None:
        _current_event.set(weakref.ref(handle))  # type: ignore[arg-type]


class TableStore:
    """A Faust table behind the processor's store protocols (raw bytes both ways)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: bytes, msg: Message) -> bytes | None:
        _bind(msg.handle)
        value: bytes | None = self.table.get(key)
        return value

    def put(self, key: bytes, value: bytes, msg: Message) -> None:
        _bind(msg.handle)
        self.table[key] = value

    def delete(self, key: bytes, msg: Message) -> None:
        _bind(msg.handle)
        self.table.pop(key, None)  # a tombstone on the changelog


def create_app(conf: Settings, partitions: int) -> faust.App:
    names = TopicNames(conf.topic_prefix)
    # one changelog record per touched site per batch: let the producer batch them
    group = group_timeouts(conf)
    broker_opts: dict[str, Any] = {
        "broker_session_timeout": group["session_timeout_ms"] / 1000,
        "broker_heartbeat_interval": group["heartbeat_interval_ms"] / 1000,
    }
    if not conf.is_tansu:
        broker_opts |= {"producer_linger_ms": 5, "producer_max_batch_size": 256 * 1024}
    else:
        broker_opts |= {
            # Tansu under-reports a changelog's end offset when its last batch holds
            # several records, so a RocksDB store that is ahead of it looks corrupt to
            # Faust; the local store is authoritative there (keep SITEWATCH_STATE_DIR).
            # For the same reason the producer keeps Faust's default (unlingered) batching.
            "recovery_consistency_check": False,
        }
    app = faust.App(
        f"{conf.topic_prefix}worker",
        broker=[f"kafka://{hp}" for hp in conf.bootstrap_servers],
        store="rocksdb://",
        datadir=str(Path(conf.state_dir) / "worker"),
        topic_partitions=partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=BATCH_MAX * 2,
        **broker_opts,
    )
    raw: dict[str, Any] = {
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }
    # One stream over both topics: a site's settings and results share a partition
    # number, so one agent sees both in order per topic and never waits on the other.
    inputs_topic = app.topic(names.check_results, names.sites, partitions=partitions, **raw)
    # key/value type `bytes` makes Faust tables use the raw codec: we encode ourselves
    state_table = app.Table("site-state", partitions=partitions, key_type=bytes, value_type=bytes)
    settings_table = app.Table(
        "site-settings", partitions=partitions, key_type=bytes, value_type=bytes
    )

    processor = Processor(
        Config(verifiers=conf.verifier_names, auto_timeout_ms=conf.auto_timeout_s * 1000),
        TableStore(state_table),
        TableStore(settings_table),
        results_topic=names.check_results,
        sites_topic=names.sites,
        consumer=f"{conf.topic_prefix}worker",
    )
    #: partition -> (stream time, monotonic seconds when it was seen): the tick anchor
    anchors: dict[int, tuple[int, float]] = {}
    indexed: set[int] = set()

    def now_ms() -> int:
        return time.time_ns() // 1_000_000

    def refresh_index() -> None:
        """After a rebalance, refill the timer index from the recovered table."""
        assigned = {
            tp.partition for tp in app.consumer.assignment() if tp.topic == names.check_results
        }
        if assigned == indexed:
            return
        processor.forget_partitions(indexed - assigned)
        new = assigned - indexed
        items = []
        for key, value in state_table.items():
            part = partition_of(key, partitions)
            if part in new and value:
                items.append((key, part, value))
        processor.rebuild_deadlines(items)
        indexed.clear()
        indexed.update(assigned)
        log.info(
            "timer index rebuilt", partitions=sorted(assigned), pending=len(processor.deadlines)
        )

    async def send_letter(key: bytes | None, letter: records.DeadLetter) -> Any:
        """The send's future, or None if it could not even be queued (logged, skipped)."""
        log_dead_letter(letter)
        try:
            return await app.producer.send(
                names.dead_letter(letter.topic),
                message_key(key),
                records.encode(letter),
                None,
                None,
                None,
            )
        except Exception as exc:
            log_unsent(letter, exc)
            return None

    async def publish(out_topic: str, rows: Sequence[tuple[bytes, bytes]]) -> list[Any]:
        return [
            await app.producer.send(out_topic, key, value, None, None, None) for key, value in rows
        ]

    async def crash_on_error(body: Any, stream: Any) -> None:
        """A failing agent must stop the worker (and so be restarted), not idle."""
        try:
            await body(stream)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("agent failed; stopping the worker")
            await app.crash(exc)
            raise

    @app.agent(inputs_topic)
    async def lifecycle_agent(stream: Any) -> None:
        await crash_on_error(run_lifecycle, stream)

    async def run_lifecycle(stream: Any) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            refresh_index()
            batch = [
                Message(m.topic, m.partition, m.offset, m.key, m.value, e)
                for e in events
                for m in (e.message,)
            ]
            out = processor.process(batch, now_ms())
            pending = await publish(names.site_events, out.transitions)
            pending += await publish(names.verify_requests, out.verify_requests)
            letters = [(letter, await send_letter(key, letter)) for key, letter in out.dead_letters]
            # Offsets are acked (and later committed) only once outputs are durable.
            if pending:
                await asyncio.gather(*pending)
            # a dead letter that fails is logged and skipped: it must not stop the worker
            sent = [(letter, fut) for letter, fut in letters if fut is not None]
            outcomes = await asyncio.gather(*(fut for _, fut in sent), return_exceptions=True)
            for (letter, _), outcome in zip(sent, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    log_unsent(letter, outcome)
            mono = time.monotonic()
            for part, stream_ms in processor.stream_time.items():
                if part not in anchors or anchors[part][0] != stream_ms:
                    anchors[part] = (stream_ms, mono)

    @app.timer(interval=conf.tick_interval_s)  # type: ignore[untyped-decorator]
    async def tick() -> None:
        """Stream clock: one tick per owned partition, anchored on its stream time."""
        mono = time.monotonic()
        for tp in app.consumer.assignment():
            if tp.topic != names.check_results or tp.partition not in anchors:
                continue
            stream_ms, seen = anchors[tp.partition]
            at = stream_ms + int((mono - seen) * 1000)
            rec = records.Tick(
                tick_id=uuid.uuid4().hex, partition=tp.partition, at=timefmt.from_ms(at)
            )
            await app.producer.send(
                names.check_results, None, records.encode(rec), tp.partition, None, None
            )

    @app.timer(interval=10.0)  # type: ignore[untyped-decorator]
    async def report() -> None:
        s = processor.stats
        log.info(
            "worker stats",
            inputs=s.inputs,
            ticks=s.ticks,
            transitions=s.transitions,
            verify_requests=s.verify_requests,
            dead_letters=s.dead_letters,
            redelivered=s.redelivered,
            sites=s.sites,
            parked=s.parked,
            dropped_parked=s.dropped_parked,
            purged=s.purged,
            pending_timers=len(processor.deadlines),
        )

    return app


class _Worker(faust.Worker):  # type: ignore[misc]
    """Faust's worker, keeping sitewatch's structured logs instead of its own format."""

    conf: Settings

    def _setup_logging(self) -> None:
        logs.configure(self.conf.log_level, self.conf.log_format)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loglevel", default="warning", help="Faust's own log level")


def run(args: argparse.Namespace, conf: Settings) -> int:
    # Until Faust installs its own handlers, a stop request simply ends the process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    names = TopicNames(conf.topic_prefix)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    counts = loop.run_until_complete(ensure_topics(conf.bootstrap_servers, names, conf.partitions))
    partitions = counts.get(names.name(Topic.CHECK_RESULTS), conf.partitions)
    if counts.get(names.sites, partitions) != partitions:
        log.error(
            "sites and check-results must have the same partition count",
            sites=counts.get(names.sites),
            check_results=partitions,
        )
        return 2
    (Path(conf.state_dir) / "worker").mkdir(parents=True, exist_ok=True)
    app = create_app(conf, partitions)
    worker = _Worker(app, loglevel=args.loglevel, loop=loop, quiet=True, redirect_stdouts=False)
    worker.conf = conf
    worker.execute_from_commandline()
    return 0
