"""Feeding recorded records through a fresh `Processor` (no Kafka here: the reader, the
tests and the bench hand it `Record`s in offset order, one partition at a time)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sitewatch.streams import records, timefmt
from sitewatch.streams.message import Record
from sitewatch.streams.processor import Processor
from sitewatch.streams.state import Config
from sitewatch.streams.stores import MemoryStore
from sitewatch.streams.topics import TopicNames

from .whatif import WhatIf
from .window import Window, record_stamp


class _Partition:
    __slots__ = ("done", "fed", "next_site", "sites", "started")

    def __init__(self, sites: list[Record]) -> None:
        self.sites = sites
        self.next_site = 0
        self.started = False
        self.done = False
        self.fed = 0


class Replay:
    """Feeds recorded partitions through a fresh `Processor` and keeps the transitions."""

    def __init__(
        self, config: Config, names: TopicNames, window: Window, what_if: WhatIf | None = None
    ) -> None:
        self.what_if = what_if or WhatIf()
        self.names = names
        self.window = window
        self.processor = Processor(
            self.what_if.config(config),
            MemoryStore(),
            MemoryStore(),
            MemoryStore(),
            results_topic=names.check_results,
            sites_topic=names.sites,
            consumer="replay",
        )
        self.parts: dict[int, _Partition] = {}
        self.transitions: dict[str, bytes] = {}
        self.inputs = 0
        self.dead_letters = 0

    def add_sites(self, partition: int, rows: Iterable[Record]) -> None:
        """The whole `sites` partition (offset order), before any result of it."""
        keys = self.window.keys
        wanted = [r for r in rows if keys is None or r.key in keys]
        if not self.what_if.empty:
            wanted = [r._replace(value=self._rewrite(r.value)) for r in wanted]
        self.parts[partition] = _Partition(wanted)

    def _rewrite(self, value: bytes | None) -> bytes | None:
        if value is None:
            return None
        try:
            return self.what_if.rewrite(value)
        except Exception:  # e.g. a RecursionError from a deeply nested value
            return value  # poison stays poison: the processor dead-letters it

    def feed(self, partition: int, rows: Sequence[Record]) -> bool:
        """Feed consecutive `check-results` records of one partition; False once past the
        range. Only their offsets, keys, values and (broker) timestamps are read."""
        part = self.parts.get(partition)
        if part is None:
            part = self.parts[partition] = _Partition([])
        if part.done:
            return False
        w = self.window
        keys = w.keys
        sites_topic, results_topic = self.names.sites, self.names.check_results
        batch: list[Record] = []
        for row in rows:
            if not part.started:
                stamp = record_stamp(row.value)
                if stamp is None or w.feed_from.before(stamp):
                    continue  # before the lookback start
                part.started = True
            elif row.key is None:
                # A tick (the only keyless input) at or after to+grace ends the range: the
                # worker's stream clock has passed every timer due before `to`. Only ticks
                # are looked at, so results pay no extra parsing.
                stamp = record_stamp(row.value)
                if stamp is not None and not w.feed_until.before(stamp):
                    part.done = True
                    break
            # settings in force: every sites record written before this result
            sites = part.sites
            while part.next_site < len(sites) and sites[part.next_site].timestamp <= row.timestamp:
                s = sites[part.next_site]
                batch.append(Record(sites_topic, partition, s.offset, s.key, s.value))
                part.next_site += 1
            if keys is not None and row.key is not None and row.key not in keys:
                continue  # another site of the partition (ticks have no key)
            batch.append(Record(results_topic, partition, row.offset, row.key, row.value))
        if batch:
            self._process(batch)
        return not part.done

    def _process(self, batch: list[Record]) -> None:
        # `now_ms` only stamps dead letters, which replay does not publish: it counts them
        out = self.processor.process(batch, 0)
        self.inputs += len(batch)
        self.dead_letters += len(out.dead_letters)
        for keyed in out.transitions:
            tr = records.transition_decoder.decode(keyed.value)
            if self.window.wants(tr):
                self.transitions.setdefault(tr.transition_id, keyed.value)

    def finish(self) -> None:
        """Apply sites records that no result followed (only matters for parked ones)."""
        for partition, part in self.parts.items():
            rest = part.sites[part.next_site :]
            part.next_site = len(part.sites)
            if rest and not part.done:
                self._process(
                    [Record(self.names.sites, partition, s.offset, s.key, s.value) for s in rest]
                )

    def result(self) -> list[records.Transition]:
        return sort_transitions(
            records.transition_decoder.decode(v) for v in self.transitions.values()
        )


def sort_transitions(items: Iterable[records.Transition]) -> list[records.Transition]:
    """The replay's output order: (at, site, event, seq)."""
    return sorted(items, key=lambda t: (timefmt.to_ms(t.at), t.site_id, t.event_id, t.seq))
