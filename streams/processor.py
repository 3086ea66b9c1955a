"""Batch driver around the pure core, shared by the Faust worker and `replay`.

It takes messages of `check-results` and `sites` in their partition order, runs
`lifecycle.apply` with each site's state loaded once per batch, keeps the index of
pending timers that ticks fire, and returns what to publish. No Faust, no Kafka
client: state and settings come through two small protocols, so the worker backs
them with Faust tables and replay with dicts.

Nothing orders records across the two topics, so a result can overtake the first
`sites` record of its site. Such a result is parked in the site's state (durably, with
its offset) and applied when the settings arrive, never dropped or misapplied.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Protocol

import structlog

from . import lifecycle, records
from .deadletter import ConsumedRecord, dead_letter_for
from .state import Config, Parked, SiteConfig, SiteState, dump_state, load_state

log = structlog.get_logger(__name__)

#: settings value of a deleted site (a tombstone on `sites`)
DELETED: Final = b""
#: results parked per site while its settings are unknown; older ones are dropped
MAX_PARKED: Final = 1000


class Message(NamedTuple):
    """A consumed record as replay and the tests build them (the worker passes Faust's
    own messages: anything with these attributes is a `ConsumedRecord`)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class StateStore(Protocol):
    def get(self, key: bytes, msg: ConsumedRecord) -> bytes | None: ...

    def put(self, key: bytes, value: bytes, msg: ConsumedRecord) -> None: ...


class SettingsStore(Protocol):
    """Raw `sites` values by key: None never seen, DELETED after a tombstone."""

    def get(self, key: bytes, msg: ConsumedRecord) -> bytes | None: ...

    def put(self, key: bytes, value: bytes, msg: ConsumedRecord) -> None: ...


class Keyed(NamedTuple):
    key: bytes
    value: bytes


@dataclass
class Output:
    transitions: list[Keyed] = field(default_factory=list)
    verify_requests: list[Keyed] = field(default_factory=list)
    dead_letters: list[tuple[bytes | None, records.DeadLetter]] = field(default_factory=list)
    applied: int = 0


@dataclass
class Stats:
    inputs: int = 0
    ticks: int = 0
    sites: int = 0
    transitions: int = 0
    verify_requests: int = 0
    dead_letters: int = 0
    redelivered: int = 0
    parked: int = 0
    dropped_parked: int = 0


class _Batch:
    """Per-batch cache: each site's state is read and written once per batch."""

    __slots__ = ("dirty", "out", "states")

    def __init__(self) -> None:
        self.states: dict[bytes, SiteState | None] = {}
        self.dirty: dict[bytes, ConsumedRecord] = {}
        self.out = Output()


class Processor:
    def __init__(
        self,
        config: Config,
        states: StateStore,
        settings: SettingsStore,
        results_topic: str,
        sites_topic: str,
        consumer: str,
    ) -> None:
        self.config = config
        self.states = states
        self.settings = settings
        self.results_topic = results_topic
        self.sites_topic = sites_topic
        self.consumer = consumer
        #: site key -> (partition, stream time at which its next timer fires)
        self.deadlines: dict[bytes, tuple[int, int]] = {}
        #: partition -> newest input time seen on it (anchors the worker's ticks)
        self.stream_time: dict[int, int] = {}
        self.stats = Stats()
        self._decoded: dict[bytes, tuple[bytes, SiteConfig]] = {}

    # -- public ----------------------------------------------------------------------

    def process(self, batch: Sequence[ConsumedRecord], now_ms: int) -> Output:
        """Apply a batch in order; `now_ms` only stamps dead letters."""
        b = _Batch()
        newest: dict[int, lifecycle.Input] = {}
        decode = records.input_decoder.decode
        for msg in batch:
            if msg.topic == self.sites_topic:
                self._site_record(msg, b, now_ms)
                continue
            try:
                inp = decode(msg.value or b"")
            except (records.DecodeError, records.ValidationError) as exc:
                self._dead_letter(b.out, msg, str(exc), now_ms)
                continue
            if isinstance(inp, records.Tick):  # narrows the union for mypy
                self._tick(inp, msg, b)
                continue
            key = records.site_key(inp.site_id)
            if msg.key != key:
                self._dead_letter(
                    b.out, msg, f"key {msg.key!r} does not match site_id {inp.site_id}", now_ms
                )
                continue
            self.stats.inputs += 1
            newest[msg.partition] = inp
            raw = self.settings.get(key, msg)
            if raw is None or self._has_parked(key, msg, b):
                self._park(key, msg, b)
            else:
                self._apply(key, inp.site_id, inp, msg, raw, b)
        for part, inp in newest.items():  # inputs are nearly in time order: last is enough
            at = lifecycle.input_time(inp)
            if at > self.stream_time.get(part, -1):
                self.stream_time[part] = at
        for key, msg in b.dirty.items():
            state = b.states[key]
            assert state is not None
            self.states.put(key, dump_state(state), msg)
        return b.out

    def rebuild_deadlines(self, items: Iterable[tuple[bytes, int, bytes]]) -> None:
        """Refill the timer index from stored states: (key, partition, state bytes)."""
        for key, partition, raw in items:
            deadline = lifecycle.next_deadline(load_state(raw), self.config)
            if deadline is not None:
                self.deadlines[key] = (partition, deadline)

    def forget_partitions(self, partitions: set[int]) -> None:
        self.deadlines = {k: v for k, v in self.deadlines.items() if v[0] not in partitions}

    def site_config(self, key: bytes, raw: bytes) -> SiteConfig | None:
        """Decoded settings, cached per distinct record; None for a deleted site."""
        if raw == DELETED:
            return None
        cached = self._decoded.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        site = SiteConfig.from_record(records.site_decoder.decode(raw))
        self._decoded[key] = (raw, site)
        return site

    # -- steps -----------------------------------------------------------------------

    def _site_record(self, msg: ConsumedRecord, b: _Batch, now_ms: int) -> None:
        key = msg.key
        try:
            if key is None:
                raise ValueError("a sites record needs the site id as its key")
            if msg.value is None:
                value = DELETED
            else:
                rec = records.site_decoder.decode(msg.value)
                if key != records.site_key(rec.site_id):
                    raise ValueError(f"key {key!r} does not match site_id {rec.site_id}")
                value = msg.value
        except (records.DecodeError, records.ValidationError, ValueError) as exc:
            self._dead_letter(b.out, msg, str(exc), now_ms)
            return
        self.stats.sites += 1
        self.settings.put(key, value, msg)
        state = self._load(key, msg, b)
        if state is not None and state.parked:
            parked, state.parked = state.parked, []
            b.dirty[key] = msg
            for item in parked:
                held = Message(self.results_topic, msg.partition, item.position, key, item.value)
                inp = records.input_decoder.decode(item.value)
                assert not isinstance(inp, records.Tick)
                self._apply(key, inp.site_id, inp, held, value, b)

    def _tick(self, tick: records.Tick, msg: ConsumedRecord, b: _Batch) -> None:
        self.stats.ticks += 1
        at = lifecycle.input_time(tick)
        if at > self.stream_time.get(msg.partition, -1):
            self.stream_time[msg.partition] = at
        due = [
            key
            for key, (part, deadline) in self.deadlines.items()
            if part == msg.partition and deadline <= at
        ]
        for key in sorted(due):
            raw = self.settings.get(key, msg)
            self._apply(key, int(key), tick, msg, DELETED if raw is None else raw, b)

    def _load(self, key: bytes, msg: ConsumedRecord, b: _Batch) -> SiteState | None:
        if key in b.states:
            return b.states[key]
        raw = self.states.get(key, msg)
        state = load_state(raw) if raw else None
        b.states[key] = state
        return state

    def _has_parked(self, key: bytes, msg: ConsumedRecord, b: _Batch) -> bool:
        state = self._load(key, msg, b)
        return state is not None and bool(state.parked)

    def _park(self, key: bytes, msg: ConsumedRecord, b: _Batch) -> None:
        state = self._load(key, msg, b)
        if state is None:
            state = b.states[key] = SiteState()
        if any(p.position == msg.offset for p in state.parked):
            return  # redelivered while still parked
        assert msg.value is not None
        state.parked.append(Parked(position=msg.offset, value=msg.value))
        if len(state.parked) > MAX_PARKED:
            del state.parked[0]
            self.stats.dropped_parked += 1
            log.warning("dropped a parked result: its site never got settings", key=key)
        b.dirty[key] = msg
        self.stats.parked += 1

    def _apply(
        self,
        key: bytes,
        site_id: int,
        inp: lifecycle.Input,
        msg: ConsumedRecord,
        raw_settings: bytes,
        b: _Batch,
    ) -> None:
        state = self._load(key, msg, b)
        settings = lifecycle.SiteSettings(site_id, self.site_config(key, raw_settings), self.config)
        before = state.position if state is not None else -1
        state, effects = lifecycle.apply(state, inp, settings, msg.offset)
        b.states[key] = state
        out = b.out
        if state.position != before:
            b.dirty[key] = msg
        elif effects:
            self.stats.redelivered += 1
        out.applied += 1
        if effects:
            for tr in effects.transitions:
                out.transitions.append(Keyed(key, records.encode(tr)))
            for req in effects.verify_requests:
                out.verify_requests.append(Keyed(key, records.encode(req)))
            self.stats.transitions += len(effects.transitions)
            self.stats.verify_requests += len(effects.verify_requests)
        if state.open:
            deadline = lifecycle.next_deadline(state, self.config)
            assert deadline is not None
            self.deadlines[key] = (msg.partition, deadline)
        elif key in self.deadlines:
            del self.deadlines[key]

    def _dead_letter(self, out: Output, msg: ConsumedRecord, error: str, now_ms: int) -> None:
        self.stats.dead_letters += 1
        out.dead_letters.append((msg.key, dead_letter_for(msg, error, self.consumer, now_ms)))


class MemoryStore:
    """A dict behind the store protocols: replay, tests and benchmarks."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes, msg: ConsumedRecord) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes, msg: ConsumedRecord) -> None:
        self.data[key] = value
