"""Batch driver around the pure core, shared by the Faust worker and `replay`.

It decodes `check-results` messages, runs `lifecycle.apply` in offset order with each
site's state loaded once per batch, keeps the index of pending timers that ticks fire,
and returns what to publish. No Faust, no Kafka client: state and settings come
through two small protocols, so the worker backs them with Faust tables and replay
with dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import structlog

from . import lifecycle, records
from .deadletter import make_dead_letter
from .state import Config, SiteConfig, SiteState, dump_state, load_state

log = structlog.get_logger(__name__)


class Message(NamedTuple):
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: the shell's own handle on the message (a Faust event), passed back to stores
    handle: object = None


class StateStore(Protocol):
    def get(self, key: bytes, msg: Message) -> bytes | None: ...

    def put(self, key: bytes, value: bytes, msg: Message) -> None: ...


class SettingsSource(Protocol):
    def get(self, key: bytes, msg: Message) -> SiteConfig | None:
        """The site's settings; None when deleted or unknown."""


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
    transitions: int = 0
    verify_requests: int = 0
    dead_letters: int = 0
    redelivered: int = 0


class Processor:
    def __init__(
        self,
        config: Config,
        states: StateStore,
        sites: SettingsSource,
        topic: str,
        consumer: str,
    ) -> None:
        self.config = config
        self.states = states
        self.sites = sites
        self.topic = topic
        self.consumer = consumer
        #: site key -> (partition, stream time at which its next timer fires)
        self.deadlines: dict[bytes, tuple[int, int]] = {}
        #: partition -> newest input time seen on it (anchors the worker's ticks)
        self.stream_time: dict[int, int] = {}
        self.stats = Stats()

    def process(self, batch: Sequence[Message], now_ms: int) -> Output:
        """Apply a batch in order; `now_ms` only stamps dead letters."""
        out = Output()
        cache: dict[bytes, tuple[SiteState | None, Message]] = {}
        dirty: dict[bytes, Message] = {}
        newest: dict[int, lifecycle.Input] = {}
        decode = records.input_decoder.decode
        for msg in batch:
            try:
                inp = decode(msg.value or b"")
            except (records.DecodeError, records.ValidationError) as exc:
                self._dead_letter(out, msg, str(exc), now_ms)
                continue
            if type(inp) is records.Tick:
                self.stats.ticks += 1
                at = lifecycle.input_time(inp)
                if at > self.stream_time.get(msg.partition, -1):
                    self.stream_time[msg.partition] = at
                due = [
                    key
                    for key, (part, deadline) in self.deadlines.items()
                    if part == msg.partition and deadline <= at
                ]
                for key in sorted(due):
                    self._apply(key, int(key), inp, msg, cache, dirty, out)
                continue
            key = records.site_key(inp.site_id)
            if msg.key != key:
                self._dead_letter(
                    out, msg, f"key {msg.key!r} does not match site_id {inp.site_id}", now_ms
                )
                continue
            self.stats.inputs += 1
            newest[msg.partition] = inp
            self._apply(key, inp.site_id, inp, msg, cache, dirty, out)
        for part, inp in newest.items():  # inputs are nearly in time order: last is enough
            at = lifecycle.input_time(inp)
            if at > self.stream_time.get(part, -1):
                self.stream_time[part] = at
        for key, msg in dirty.items():
            state = cache[key][0]
            assert state is not None
            self.states.put(key, dump_state(state), msg)
        return out

    def _apply(
        self,
        key: bytes,
        site_id: int,
        inp: lifecycle.Input,
        msg: Message,
        cache: dict[bytes, tuple[SiteState | None, Message]],
        dirty: dict[bytes, Message],
        out: Output,
    ) -> None:
        if key in cache:
            state = cache[key][0]
        else:
            raw = self.states.get(key, msg)
            state = load_state(raw) if raw else None
        settings = lifecycle.SiteSettings(site_id, self.sites.get(key, msg), self.config)
        before = state.position if state is not None else -1
        state, effects = lifecycle.apply(state, inp, settings, msg.offset)
        cache[key] = (state, msg)
        if state.position != before:
            dirty[key] = msg
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

    def _dead_letter(self, out: Output, msg: Message, error: str, now_ms: int) -> None:
        self.stats.dead_letters += 1
        letter = make_dead_letter(
            topic=self.topic,
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            value=msg.value,
            error=error,
            consumer=self.consumer,
            now_ms=now_ms,
        )
        out.dead_letters.append((msg.key, letter))

    def rebuild_deadlines(self, items: Iterable[tuple[bytes, int, bytes]]) -> None:
        """Refill the timer index from stored states: (key, partition, state bytes)."""
        for key, partition, raw in items:
            deadline = lifecycle.next_deadline(load_state(raw), self.config)
            if deadline is not None:
                self.deadlines[key] = (partition, deadline)

    def forget_partitions(self, partitions: set[int]) -> None:
        self.deadlines = {k: v for k, v in self.deadlines.items() if v[0] not in partitions}
