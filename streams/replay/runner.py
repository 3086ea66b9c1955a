"""One replay run: the `sites` partitions first, then `check-results` through `Replay`,
and for `--diff` what `site-events` recorded over the same range."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from aiokafka import TopicPartition

from sitewatch import gcpolicy
from sitewatch.settings import Settings
from sitewatch.streams import records
from sitewatch.streams.message import Record
from sitewatch.streams.state import Config
from sitewatch.streams.topics import TopicNames

from .feed import Replay, sort_transitions
from .reader import TopicReader, partition_of
from .whatif import WhatIf
from .window import DEFAULT_SLACK, Bound, ReplayError, Window, parse_duration_ms, record_stamp


class Progress:
    """One stderr line per second on long runs (nothing on short ones)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.began = time.monotonic()
        self.last = self.began
        self.count = 0

    def tick(self, label: str, n: int, stamp: str | None) -> None:
        self.count += n
        now = time.monotonic()
        if self.enabled and now - self.last >= 1.0:
            self.last = now
            rate = self.count / max(now - self.began, 1e-9)
            print(
                f"replay: {label}: {self.count:,} records read ({rate:,.0f}/s), at {stamp or '?'}",
                file=sys.stderr,
                flush=True,
            )


@dataclass
class ReplayRun:
    transitions: list[records.Transition]
    recorded: list[records.Transition] | None
    inputs: int
    elapsed_s: float
    #: records that did not decode: skipped, as every consumer does
    poison: int = 0


async def run_replay(
    conf: Settings,
    window: Window,
    what_if: WhatIf,
    *,
    with_recorded: bool = False,
    slack_ms: int | None = None,
    progress: bool = True,
) -> ReplayRun:
    names = TopicNames(conf.topic_prefix)
    config = Config(verifiers=conf.verifier_names, auto_timeout_ms=conf.auto_timeout_s * 1000)
    slack = parse_duration_ms(DEFAULT_SLACK) if slack_ms is None else slack_ms
    replay = Replay(config, names, window, what_if)
    meter = Progress(progress)
    began = time.monotonic()
    with gcpolicy.rare():
        async with TopicReader(conf.bootstrap_servers) as reader:
            parts = await reader.partitions(names.check_results)
            if not parts:
                raise ReplayError(f"topic {names.check_results} not found")
            wanted = sorted(parts)
            if window.sites is not None:
                wanted = sorted({partition_of(s, len(parts)) for s in window.sites})
            site_parts = set(await reader.partitions(names.sites))
            for p in wanted:
                rows: list[Record] = []
                if p in site_parts:
                    tp = TopicPartition(names.sites, p)
                    begin, end = await reader.bounds(tp)

                    def keep(batch: list[Record], rows: list[Record] = rows) -> bool:
                        rows.extend(batch)
                        return True

                    await reader.read(tp, begin, end, keep)
                replay.add_sites(p, rows)
                tp = TopicPartition(names.check_results, p)
                begin, end = await reader.bounds(tp)
                start = await reader.find_start(tp, begin, end, window.feed_from, slack)

                def feed(batch: list[Record], p: int = p) -> bool:
                    meter.tick(f"partition {p}", len(batch), record_stamp(batch[-1].value))
                    return replay.feed(p, batch)

                await reader.read(tp, start, end, feed, threaded=True)
            replay.finish()
            recorded = None
            if with_recorded:
                recorded = await read_recorded(reader, names, window, wanted, slack, meter)
    return ReplayRun(
        replay.result(), recorded, replay.inputs, time.monotonic() - began, replay.dead_letters
    )


async def read_recorded(
    reader: TopicReader,
    names: TopicNames,
    window: Window,
    partitions: list[int],
    slack_ms: int,
    meter: Progress,
) -> list[records.Transition]:
    """What `site-events` recorded for the range, deduplicated by transition_id."""
    found: dict[str, records.Transition] = {}
    available = set(await reader.partitions(names.site_events))
    start = Bound(window.start_ms)
    stop = Bound(window.end_ms + window.grace_ms)
    for p in partitions:
        if p not in available:
            continue
        tp = TopicPartition(names.site_events, p)
        begin, end = await reader.bounds(tp)
        first = await reader.find_start(tp, begin, end, start, slack_ms)

        def take(batch: list[Record], p: int = p) -> bool:
            meter.tick(f"site-events {p}", len(batch), None)
            for row in batch:
                try:
                    tr = records.decode_transition(row.value or b"")
                except Exception:
                    continue  # a malformed record is the sink's dead letter, not a transition
                if window.wants(tr):
                    found.setdefault(tr.transition_id, tr)
                elif not stop.before(tr.at):
                    return False
            return True

        await reader.read(tp, first, end, take)
    return sort_transitions(found.values())
