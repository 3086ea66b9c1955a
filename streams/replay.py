"""`sitewatch replay`: run the worker's lifecycle again over recorded `check-results`.

Replay feeds the recorded inputs through the very `Processor` the worker uses (same
pure core, same Kafka offsets as input positions, same ticks), so what it prints is
byte for byte what the worker published, and `--diff` can hold the two side by side.

How the range is read, per partition of `check-results`, in offset order:

- start: the first record whose own time (`observed_at`, a tick's `at`, a command's
  `issued_at`) is at or after `--from` minus `--lookback`. `offsets_for_times` is only
  a hint (Tansu answers with the broker's write time, docs/contract.md): from the hint we step
  back until a record is older than the start by `--slack`, then scan forward.
- end: just before the first tick whose `at` is at or after `--to` plus `--grace` (or
  the end of the partition), so the ticks that fire timers due before `--to` are
  applied. The stop point depends on record contents only, never on fetch batch
  sizes, which keeps two runs identical.
- settings: all `sites` records of the partition are loaded first; each is applied
  just before the first result whose broker timestamp is not older than its own
  (the worker saw both topics interleaved as delivered; settings rarely change during
  an incident). `--what-if key=value` rewrites every site record before it is applied.

Printed: the transitions whose `at` lies in [from, to), sorted by (at, site, event,
seq), as the encoded wire records (`jsonl`) or a table.
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple

import msgspec
import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from sitewatch import gcpolicy
from sitewatch.settings import Settings

from . import records, timefmt, topics
from .kafka_admin import partitions_of
from .message import Record
from .processor import MemoryStore, Processor
from .state import Config
from .topics import TopicNames

log = structlog.get_logger(__name__)

DEFAULT_LOOKBACK: Final = "48h"
DEFAULT_GRACE: Final = "2m"
DEFAULT_SLACK: Final = "10m"
FETCH_RECORDS: Final = 20_000
IDLE_POLL_MS: Final = 150
#: what-if keys that are not fields of a `sites` record
WHAT_IF_ALIASES: Final = {"quorum": "peer_offline_limit"}
WHAT_IF_CONFIG_KEYS: Final = frozenset({"verifiers", "auto_timeout_s"})


class OutputFormat(enum.StrEnum):
    JSONL = "jsonl"
    TABLE = "table"


class ReplayError(ValueError):
    """Bad options: the CLI prints it and exits 2."""


# -- parsing -------------------------------------------------------------------------


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_MS = {"": 1000, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration_ms(text: str) -> int:
    """`90`, `90s`, `30m`, `48h`, `2d` -> milliseconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ReplayError(f"bad duration {text!r} (use e.g. 90s, 30m, 48h, 2d)")
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


def parse_time_ms(text: str) -> int:
    """ISO-8601; a time without an offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ReplayError(f"bad time {text!r} (ISO-8601, e.g. 2026-11-26T10:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return timefmt.to_ms(timefmt.from_datetime(moment))


@dataclass(frozen=True)
class WhatIf:
    """Setting overrides: per-site fields of `sites` records, and deployment config."""

    site: dict[str, Any] = field(default_factory=dict)
    verifiers: tuple[str, ...] | None = None
    auto_timeout_s: int | None = None

    @property
    def empty(self) -> bool:
        return not self.site and self.verifiers is None and self.auto_timeout_s is None

    def config(self, base: Config) -> Config:
        return Config(
            verifiers=base.verifiers if self.verifiers is None else self.verifiers,
            auto_timeout_ms=(
                base.auto_timeout_ms if self.auto_timeout_s is None else self.auto_timeout_s * 1000
            ),
        )

    def rewrite(self, value: bytes) -> bytes:
        """A `sites` value with the overrides applied (re-validated, re-encoded)."""
        if not self.site:
            return value
        raw = msgspec.json.decode(value)
        if not isinstance(raw, dict):
            raise msgspec.ValidationError("a sites record is a JSON object")
        raw.update(self.site)
        return records.encode(records.site_decoder.convert(raw))


def parse_what_if(items: Sequence[str]) -> WhatIf:
    site: dict[str, Any] = {}
    verifiers: tuple[str, ...] | None = None
    auto_timeout_s: int | None = None
    fields = set(records.SiteRecord.__struct_fields__) - {"site_id", "schema_version"}
    for item in items:
        key, sep, text = item.partition("=")
        key = WHAT_IF_ALIASES.get(key.strip(), key.strip())
        if not sep:
            raise ReplayError(f"--what-if wants key=value, got {item!r}")
        if key == "verifiers":
            verifiers = tuple(v.strip() for v in text.split(",") if v.strip())
            continue
        if key == "auto_timeout_s":
            auto_timeout_s = int(parse_duration_ms(text) // 1000)
            continue
        if key not in fields:
            known = ", ".join(sorted(fields | WHAT_IF_CONFIG_KEYS | set(WHAT_IF_ALIASES)))
            raise ReplayError(f"--what-if: unknown setting {key!r} (known: {known})")
        try:
            value: Any = msgspec.json.decode(text)
        except msgspec.DecodeError:
            value = text  # a bare string, e.g. redirect_policy=fail
        site[key] = value
    what_if = WhatIf(site=site, verifiers=verifiers, auto_timeout_s=auto_timeout_s)
    try:  # fail at start, not on the first site record
        what_if.rewrite(records.encode(records.SiteRecord(site_id=1, url="http://x/")))
    except msgspec.ValidationError as exc:
        raise ReplayError(f"--what-if: {exc}") from None
    return what_if


# -- record times without a full decode ----------------------------------------------

_STAMP_FIELDS: Final = (b'"observed_at":"', b'"issued_at":"', b'"at":"')


class _Stamps(msgspec.Struct):
    observed_at: str | None = None
    issued_at: str | None = None
    at: str | None = None


_stamps_decoder: Final = msgspec.json.Decoder(_Stamps)


def record_stamp(value: bytes | None) -> str | None:
    """The wire time of an input (or a transition's `at`), None if it has none.

    A byte search finds it in the project's own compact JSON (sorted keys, no spaces);
    anything else falls back to a small decoder. Runs once per record replayed.
    """
    if not value:
        return None
    for name in _STAMP_FIELDS:
        i = value.find(name)
        if i >= 0:
            j = i + len(name)
            stamp = value[j : j + 24]
            if len(stamp) == 24 and stamp[23:] == b"Z" and value[j + 24 : j + 25] == b'"':
                return stamp.decode()
            break
    try:
        found = _stamps_decoder.decode(value)
    except Exception:  # any poison, a RecursionError from deep nesting included
        return None
    return found.observed_at or found.issued_at or found.at


def stamp_ms(stamp: str) -> int | None:
    try:
        return timefmt.to_ms(stamp)
    except ValueError:
        return None


class Bound:
    """A time bound compared against wire stamps, cheaply (canonical stamps as strings)."""

    __slots__ = ("ms", "stamp")

    def __init__(self, ms: int) -> None:
        self.ms = ms
        self.stamp = timefmt.from_ms(ms)

    def before(self, stamp: str) -> bool:
        """Is `stamp` earlier than this bound?"""
        if len(stamp) == 24 and stamp[23] == "Z":
            return stamp < self.stamp
        ms = stamp_ms(stamp)
        return ms is not None and ms < self.ms


# -- the replay itself (no Kafka: fed by the reader below, or by tests and the bench) --


class Raw(NamedTuple):
    """One Kafka record as read."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


@dataclass
class Window:
    start_ms: int  # --from
    end_ms: int  # --to (exclusive)
    lookback_ms: int
    grace_ms: int
    sites: frozenset[int] | None = None

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise ReplayError("--to must be after --from")
        self.feed_from = Bound(self.start_ms - self.lookback_ms)
        self.feed_until = Bound(self.end_ms + self.grace_ms)
        self.keys = None if self.sites is None else {records.site_key(s) for s in self.sites}

    def wants(self, tr: records.Transition) -> bool:
        at = timefmt.to_ms(tr.at)
        in_range = self.start_ms <= at < self.end_ms
        return in_range and (self.sites is None or tr.site_id in self.sites)


class _Partition:
    __slots__ = ("done", "fed", "next_site", "sites", "started")

    def __init__(self, sites: list[Raw]) -> None:
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
            results_topic=names.check_results,
            sites_topic=names.sites,
            consumer="replay",
        )
        self.parts: dict[int, _Partition] = {}
        self.transitions: dict[str, bytes] = {}
        self.inputs = 0
        self.dead_letters = 0

    def add_sites(self, partition: int, rows: Iterable[Raw]) -> None:
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

    def feed(self, partition: int, rows: Sequence[Raw]) -> bool:
        """Feed consecutive records of one partition; False once past the range."""
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
    return sorted(items, key=lambda t: (timefmt.to_ms(t.at), t.site_id, t.event_id, t.seq))


# -- diff ----------------------------------------------------------------------------


class Mismatch(enum.StrEnum):
    MISSING = "missing"  # recorded, not reproduced
    EXTRA = "extra"  # reproduced, never recorded
    DIFFERENT = "different"


@dataclass
class DiffLine:
    kind: Mismatch
    transition_id: str
    text: str


def diff(
    recorded: Sequence[records.Transition], replayed: Sequence[records.Transition]
) -> list[DiffLine]:
    """Every mismatch by transition_id; field-by-field for ids in both."""
    rec = {t.transition_id: t for t in recorded}
    rep = {t.transition_id: t for t in replayed}
    lines: list[DiffLine] = []

    def brief(t: records.Transition) -> str:
        return f"site={t.site_id} at={t.at} reason={t.reason.value} event={t.event_id} seq={t.seq}"

    for t in sort_transitions(list(rec.values()) + [r for k, r in rep.items() if k not in rec]):
        tid = t.transition_id
        if tid not in rep:
            lines.append(DiffLine(Mismatch.MISSING, tid, f"missing {tid} {brief(t)}"))
        elif tid not in rec:
            lines.append(DiffLine(Mismatch.EXTRA, tid, f"extra {tid} {brief(t)}"))
        else:
            a = msgspec.to_builtins(rec[tid])
            b = msgspec.to_builtins(rep[tid])
            for name in sorted(set(a) | set(b)):
                if a.get(name) != b.get(name):
                    left = msgspec.json.encode(a.get(name), order="deterministic").decode()
                    right = msgspec.json.encode(b.get(name), order="deterministic").decode()
                    lines.append(
                        DiffLine(
                            Mismatch.DIFFERENT,
                            tid,
                            f"different {tid} {name}: recorded={left} replayed={right}",
                        )
                    )
    return lines


# -- output --------------------------------------------------------------------------

_TABLE_COLUMNS: Final = ("at", "site", "check", "seq", "reason", "state", "sev", "source", "event")


def render(items: Sequence[records.Transition], fmt: OutputFormat) -> str:
    if fmt is OutputFormat.JSONL:
        return "".join(records.encode(t).decode() + "\n" for t in items)
    rows = [_TABLE_COLUMNS]
    for t in items:
        sev_after = "-" if t.severity_after is None else str(t.severity_after)
        rows.append(
            (
                t.at,
                str(t.site_id) + (f"/{t.endpoint_id}" if t.endpoint_id else ""),
                t.check_type.value,
                str(t.seq),
                t.reason.value,
                f"{t.state_before.value}->{t.state_after.value}",
                f"{t.severity_before}->{sev_after}",
                t.source,
                t.event_id,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(_TABLE_COLUMNS))]
    return "".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() + "\n"
        for r in rows
    )


# -- Kafka reading -------------------------------------------------------------------


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


def partition_of(site_id: int, partitions: int) -> int:
    """The partition holding a site's records."""
    return topics.partition_of(records.site_key(site_id), partitions)


class TopicReader:
    """Reads one partition at a time, in offset order, with a plain (group-less) consumer."""

    def __init__(self, bootstrap: list[str]) -> None:
        self.bootstrap = bootstrap
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            fetch_max_wait_ms=50,
        )

    async def __aenter__(self) -> TopicReader:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def partitions(self, topic: str) -> list[int]:
        return await partitions_of(self.bootstrap, topic, wait_s=0)

    async def bounds(self, tp: TopicPartition) -> tuple[int, int]:
        begin = (await self.consumer.beginning_offsets([tp]))[tp]
        end = (await self.consumer.end_offsets([tp]))[tp]
        return begin, end

    async def read(
        self,
        tp: TopicPartition,
        start: int,
        end: int,
        on_rows: Callable[[list[Raw]], bool],
        max_records: int = FETCH_RECORDS,
        threaded: bool = False,
    ) -> None:
        """Deliver records from `start` in order until `on_rows` returns False.

        `end` (the end offset when asked) is a hint: Tansu under-reports it when the last
        batch holds several records (docs/contract.md), so reading goes on past it until the
        broker has nothing more for two polls in a row.
        """
        if end <= start and start == (await self.bounds(tp))[0]:
            return  # an empty partition (a non-empty one never reports end == begin)
        self.consumer.assign([tp])
        self.consumer.seek(tp, start)
        idle = 0
        got_any = False  # after data, one empty poll (3x the fetch wait) means the end
        #: the previous batch, handled in a thread while the next one is fetched
        handling: asyncio.Future[bool] | None = None
        try:
            while True:
                got = await self.consumer.getmany(
                    tp, timeout_ms=IDLE_POLL_MS, max_records=max_records
                )
                if handling is not None:
                    going_on = await handling
                    handling = None
                    if not going_on:
                        return
                msgs = got.get(tp, [])
                if not msgs:
                    if await self.consumer.position(tp) >= end:
                        idle += 1
                        if idle >= 2 or (idle and got_any):
                            return  # past the reported end and the broker has nothing more
                    continue
                idle = 0
                got_any = True
                rows = [Raw(m.offset, m.timestamp, m.key, m.value) for m in msgs]
                if not threaded:
                    if not on_rows(rows):
                        return
                    continue
                # Batches stay strictly in order (one at a time); the thread only lets
                # the event loop fetch the next batch while this one is applied.
                handling = asyncio.ensure_future(asyncio.to_thread(on_rows, rows))
        finally:
            if handling is not None:
                await handling

    async def first_stamp_at(self, tp: TopicPartition, offset: int, end: int) -> str | None:
        found: list[str | None] = []

        def take(rows: list[Raw]) -> bool:
            found.append(record_stamp(rows[0].value))
            return False

        await self.read(tp, offset, end, take, max_records=1)
        return found[0] if found else None

    async def find_start(
        self, tp: TopicPartition, begin: int, end: int, bound: Bound, slack_ms: int
    ) -> int:
        """An offset at or before the first record at or after `bound`.

        `offsets_for_times` gives a hint only (broker write time, not the record's own
        time): step back from it until a record is older than the bound by `slack_ms`.
        """
        if begin >= end:
            return begin
        hint = (await self.consumer.offsets_for_times({tp: bound.ms}))[tp]
        guess = hint.offset if hint is not None else end
        older = Bound(bound.ms - slack_ms)
        step = 64
        offset = guess
        while offset > begin:
            offset = max(begin, guess - step)
            stamp = await self.first_stamp_at(tp, offset, end)
            if stamp is not None and older.before(stamp):
                break
            step *= 8
        return offset


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
                rows: list[Raw] = []
                if p in site_parts:
                    tp = TopicPartition(names.sites, p)
                    begin, end = await reader.bounds(tp)

                    def keep(batch: list[Raw], rows: list[Raw] = rows) -> bool:
                        rows.extend(batch)
                        return True

                    await reader.read(tp, begin, end, keep)
                replay.add_sites(p, rows)
                tp = TopicPartition(names.check_results, p)
                begin, end = await reader.bounds(tp)
                start = await reader.find_start(tp, begin, end, window.feed_from, slack)

                def feed(batch: list[Raw], p: int = p) -> bool:
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

        def take(batch: list[Raw], p: int = p) -> bool:
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


# -- CLI -----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", required=True, help="range start, ISO-8601")
    parser.add_argument("--to", dest="end", required=True, help="range end (exclusive), ISO-8601")
    parser.add_argument(
        "--site", type=int, action="append", metavar="ID", help="only this site (repeatable)"
    )
    parser.add_argument(
        "--output", choices=[f.value for f in OutputFormat], default=OutputFormat.JSONL.value
    )
    parser.add_argument(
        "--diff",
        action="store_true",
        help="compare with what site-events recorded; exit 1 on any mismatch",
    )
    parser.add_argument(
        "--lookback",
        default=DEFAULT_LOOKBACK,
        help=f"inputs before --from used to rebuild state (default {DEFAULT_LOOKBACK})",
    )
    parser.add_argument(
        "--grace",
        default=DEFAULT_GRACE,
        help=f"inputs after --to still applied, for timers due in range (default {DEFAULT_GRACE})",
    )
    parser.add_argument(
        "--slack",
        default=DEFAULT_SLACK,
        help=f"how far records may be out of time order in a partition (default {DEFAULT_SLACK})",
    )
    parser.add_argument(
        "--what-if",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a site setting for the replay (num_of_checks=5, quorum=1, "
        "verifiers=eu,us, maintenance=[] ...); repeatable",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def run(args: argparse.Namespace, conf: Settings) -> int:
    try:
        window = Window(
            start_ms=parse_time_ms(args.start),
            end_ms=parse_time_ms(args.end),
            lookback_ms=parse_duration_ms(args.lookback),
            grace_ms=parse_duration_ms(args.grace),
            sites=frozenset(args.site) if args.site else None,
        )
        what_if = parse_what_if(args.what_if)
        slack = parse_duration_ms(args.slack)
        result = asyncio.run(
            run_replay(
                conf,
                window,
                what_if,
                with_recorded=args.diff,
                slack_ms=slack,
                progress=not args.quiet,
            )
        )
    except ReplayError as exc:
        print(f"sitewatch replay: {exc}", file=sys.stderr)
        return 2
    out = sys.stdout
    if not args.diff:
        out.write(render(result.transitions, OutputFormat(args.output)))
        out.flush()
        print(
            f"replay: {result.inputs:,} records applied, {len(result.transitions)} transitions "
            f"in range, {result.poison} poison records skipped, {result.elapsed_s:.1f}s",
            file=sys.stderr,
        )
        return 0
    assert result.recorded is not None
    lines = diff(result.recorded, result.transitions)
    for line in lines:
        out.write(line.text + "\n")
    counts = {kind: sum(1 for x in lines if x.kind is kind) for kind in Mismatch}
    different_ids = len({x.transition_id for x in lines if x.kind is Mismatch.DIFFERENT})
    out.write(
        f"diff: {len(result.recorded)} recorded, {len(result.transitions)} replayed, "
        f"{counts[Mismatch.MISSING]} missing, {counts[Mismatch.EXTRA]} extra, "
        f"{different_ids} different\n"
    )
    out.flush()
    return 1 if lines else 0
