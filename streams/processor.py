"""Batch driver around the pure core, shared by the Faust worker and `replay`.

It takes messages of `check-results` and `sites` in their partition order, runs
`lifecycle.apply` with each site's state loaded once per batch, keeps the index of
pending timers that ticks fire, and returns what to publish. No Faust, no Kafka
client: lifecycle states, raw `sites` records and parked results come through three small
store protocols, so the worker backs them with Faust tables and replay with dicts.

Nothing orders records across the two topics, so a result can overtake the first
`sites` record of its site. Such a result is parked (durably, with its offset, in the
driver's own store: the core's state never holds it) and applied when its `sites`
record arrives, never dropped or misapplied.

Nothing a record holds can stop the batch or grow a site's state without bound: any
failure to decode (or to apply) a record dead-letters it; parked results are capped in
count and bytes and expire after `retention.PARKED_TTL_MS` of stream time; a deleted site
is purged from the tables and the timer index once its events are closed and its outbox
has aged out; the site-record cache is bounded; and a tick looks only at what is due.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import structlog

from . import lifecycle, records, retention
from .deadletter import dead_letter_for, error_of
from .enums import CheckType, Role
from .message import ConsumedRecord, Record
from .outputs import Keyed, Output, Stats
from .parking import BatchParked, Parking
from .retention import TIME_UNKNOWN
from .site_records import SiteRecords
from .site_states import BatchStates, SiteStates
from .state import (
    Config,
    LifecycleState,
    Parked,
    dump_state,
    load_state,
)
from .stores import DELETED, ParkedStore, SiteRecordStore, StateStore
from .timers import Timers

log = structlog.get_logger(__name__)

#: decoded site records kept; past this the oldest half goes (cheap, and bounded)
MAX_CACHED_SETTINGS: Final = 8_192
#: states kept between batches, encoded (what the store holds: decoding one is half the
#: cost of reading it back, in a tenth of the memory of a decoded one); past this the
#: oldest half goes
MAX_CACHED_STATES: Final = 8_192
#: decoded parked lists kept between batches (a backlog parks a site's results batch
#: after batch); as many as states, which held them before they had their own store
MAX_CACHED_PARKED: Final = MAX_CACHED_STATES


class _Batch(BatchStates):
    """Per-batch view: each site's state and parked results are read and written once."""

    __slots__ = ("out", "parked")

    def __init__(self) -> None:
        super().__init__()
        self.parked = BatchParked()
        self.out = Output()


_CheckResult: Final = records.CheckResult
_PRIMARY: Final = Role.PRIMARY
_TLS: Final = CheckType.TLS_EXPIRY


class Processor:
    def __init__(
        self,
        config: Config,
        states: StateStore,
        site_records: SiteRecordStore,
        parked: ParkedStore,
        results_topic: str,
        sites_topic: str,
        consumer: str,
    ) -> None:
        self.config = config
        self.site_states = SiteStates(states, MAX_CACHED_STATES)
        self.site_records = SiteRecords(site_records, MAX_CACHED_SETTINGS)
        self.parking = Parking(parked, MAX_CACHED_PARKED)
        self.results_topic = results_topic
        self.sites_topic = sites_topic
        self.consumer = consumer
        self.timers = Timers()
        #: partition -> newest input time seen on it (anchors the worker's ticks)
        self.stream_time: dict[int, int] = {}
        self.stats = Stats()

    @property
    def deadlines(self) -> dict[bytes, tuple[int, int]]:
        """Site key -> (partition, stream time at which its next timer fires)."""
        return self.timers.due

    # -- public ----------------------------------------------------------------------

    def process(self, batch: Sequence[ConsumedRecord], now_ms: int) -> Output:
        """Apply a batch in order; `now_ms` only stamps dead letters."""
        b = _Batch()
        newest: dict[int, lifecycle.Input] = {}
        decode = records.decode_input
        parking = self.parking
        for msg in batch:
            if msg.topic == self.sites_topic:
                self._site_record(msg, b, now_ms)
                continue
            try:
                inp = decode(msg.value or b"")
            except Exception as exc:  # any failure to decode is poison, even a RecursionError
                self._dead_letter(b.out, msg, error_of(exc), now_ms)
                continue
            if isinstance(inp, records.Tick):  # narrows the union for mypy
                self._tick(inp, msg, b, now_ms)
                continue
            key = records.site_key(inp.site_id)
            if msg.key != key:
                shown = msg.key if msg.key is None or len(msg.key) <= 40 else msg.key[:40]
                self._dead_letter(
                    b.out, msg, f"key {shown!r} does not match site_id {inp.site_id}", now_ms
                )
                continue
            self.stats.inputs += 1
            newest[msg.partition] = inp
            raw = self.site_records.raw(key, msg)
            if raw is None:
                self._park(key, inp, msg, b)
                continue
            # Settings known => nothing parked: results park only while a site has no
            # settings, and its `sites` record settles them as it is stored. So the hot
            # path asks a dict, never the parked store. A crash can break it for a while
            # (the settings row of a batch landed on its changelog, the parked row's
            # delete not); the index is rebuilt from the stored rows, so what waited is
            # still applied first, in order, before the redelivered `sites` record.
            if key in parking:
                self._settle(key, raw, msg, b, now_ms)
            self._apply(key, inp.site_id, inp, msg, raw, b, now_ms)
        for part, inp in newest.items():  # inputs are nearly in time order: last is enough
            at = lifecycle.input_time(inp)
            if at > self.stream_time.get(part, -1):
                self.stream_time[part] = at
        self.site_states.write(b)
        parking.write(b.parked)
        return b.out

    def rebuild_deadlines(
        self,
        states: Iterable[tuple[bytes, int, bytes]],
        parked: Iterable[tuple[bytes, int, bytes]] = (),
    ) -> None:
        """Refill the timer index and the index of parked results from stored rows of
        states and of parked results: (key, partition, bytes). A processor over stores
        it did not fill needs this before its first batch, as the worker after each
        assignment."""
        expiry: dict[bytes, tuple[int, int | None]] = dict(self.parking.rebuild(parked))
        for key, partition, raw in states:
            decoded = self.site_states.decode(key, raw)
            if decoded is None:
                continue
            state, older = decoded
            until = expiry.pop(key, (partition, None))[1]
            if older:  # moved to the parked store when the site is next touched (`_load`)
                self.parking.index[key] = partition
                until = retention.earliest(until, retention.parked_expiry(older))
            self.timers.schedule(key, partition, retention.next_deadline(state, self.config, until))
        for key, (partition, until) in expiry.items():  # kept only by parked results
            self.timers.schedule(key, partition, until)

    def forget_partitions(self, partitions: set[int]) -> None:
        self.timers.forget(partitions)
        self.site_states.forget(partitions)
        self.site_records.forget(partitions)
        self.parking.forget(partitions)

    # -- steps -----------------------------------------------------------------------

    def _site_record(self, msg: ConsumedRecord, b: _Batch, now_ms: int) -> None:
        try:
            site_id, rec = records.keyed_site(msg.key, msg.value)
            key = records.site_key(site_id)
            if rec is None or msg.value is None:  # a tombstone (both None)
                self.stats.sites += 1
                self._delete_site(key, msg, b)
                return
        except Exception as exc:
            self._dead_letter(b.out, msg, error_of(exc), now_ms)
            return
        self.stats.sites += 1
        value = self.site_records.put(key, rec, msg)
        state = self._load(key, msg, b)
        if state is not None and state.deleted_at is not None:
            state.deleted_at = None  # the site is back: its state lives on
            b.dirty[key] = msg
            self._schedule(key, msg.partition, state, msg, b)
        if key in self.parking:
            self._settle(key, value, msg, b, now_ms)

    def _settle(self, key: bytes, raw: bytes, msg: ConsumedRecord, b: _Batch, now_ms: int) -> None:
        """The site's settings are known (`raw`): apply what was parked for them, oldest
        first, each at its own offset; a deleted site's are dropped."""
        if raw == DELETED:
            self._drop_parked(key, msg, b)
            return
        for item in self._take_parked(key, msg, b):
            rec = Record(self.results_topic, msg.partition, item.position, key, item.value)
            try:
                inp = records.decode_input(item.value)
                assert not isinstance(inp, records.Tick)
            except Exception as exc:  # parked under older, looser limits
                self._dead_letter(b.out, rec, error_of(exc), now_ms)
                continue
            self._apply(key, inp.site_id, inp, rec, raw, b, now_ms)

    def _take_parked(self, key: bytes, msg: ConsumedRecord, b: _Batch) -> list[Parked]:
        """Hand over the site's parked results, oldest first, and keep none."""
        self._load(key, msg, b)  # first: a state an older version stored may hold some
        return self.parking.take(key, msg, b.parked)

    def _drop_parked(self, key: bytes, msg: ConsumedRecord, b: _Batch) -> None:
        self.stats.dropped_parked += len(self._take_parked(key, msg, b))

    def _delete_site(self, key: bytes, msg: ConsumedRecord, b: _Batch) -> None:
        """A tombstone: the site is marked deleted; `_housekeep` purges it once its events
        are closed (rule 7's auto_timeout) and no redelivery can need its outbox."""
        state = self._load(key, msg, b)
        if state is None:
            # kept briefly all the same, so that its late results change nothing rather
            # than wait parked for settings
            state = b.states[key] = LifecycleState()
        if key in self.parking:
            self._drop_parked(key, msg, b)
        self.site_records.mark_deleted(key, msg)
        if state.deleted_at is None:
            state.deleted_at = self.stream_time.get(msg.partition, TIME_UNKNOWN)
        b.dirty[key] = msg
        self._schedule(key, msg.partition, state, msg, b)

    def _purge(self, key: bytes, msg: ConsumedRecord, b: _Batch) -> None:
        """Forget a site everywhere: state, settings, parked results, timers, caches."""
        if key in self.parking:  # only after a crash between a batch's rows (`process`)
            self._drop_parked(key, msg, b)
        self.site_records.delete(key, msg)
        b.states[key] = None
        b.dirty.pop(key, None)
        b.purged[key] = msg
        self.timers.schedule(key, msg.partition, None)
        self.site_states.pop(key)
        self.stats.purged += 1

    def _tick(self, tick: records.Tick, msg: ConsumedRecord, b: _Batch, now_ms: int) -> None:
        self.stats.ticks += 1
        at = lifecycle.input_time(tick)
        if at > self.stream_time.get(msg.partition, -1):
            self.stream_time[msg.partition] = at
        for key in self.timers.pop_due(msg.partition, at):
            state = self._load(key, msg, b)
            if state is not None and state.open:
                raw = self.site_records.raw(key, msg)
                self._apply(key, int(key), tick, msg, DELETED if raw is None else raw, b, now_ms)
                state = b.states[key]
            if state is not None or key in self.parking:
                self._housekeep(key, state, at, msg, b)

    def _housekeep(
        self, key: bytes, state: LifecycleState | None, at: int, msg: ConsumedRecord, b: _Batch
    ) -> None:
        """Expire parked results and purge a site whose time has come: a deleted one, or
        one that only its parked results kept."""
        expired = 0
        parking = self.parking
        if key in parking:
            expired = retention.expire_parked(parking.of(key, msg, b.parked), at)
            if expired:
                self.stats.dropped_parked += expired
                log.warning("dropped parked results: their site never got settings", key=key)
                parking.changed(key, msg, b.parked)
        if state is not None and state.deleted_at is not None and not state.open:
            if state.deleted_at == TIME_UNKNOWN:
                state.deleted_at = at
                b.dirty[key] = msg
            elif at >= retention.purge_at(state):
                self._purge(key, msg, b)
                return
        if (
            key not in parking
            and (
                (state is None and expired)
                or (state is not None and not state.open and state.deleted_at is None)
            )
            and self.site_records.raw(key, msg) is None
        ):
            self._purge(key, msg, b)  # only parked results kept it: they are gone
            return
        self._schedule(key, msg.partition, state, msg, b)

    def _schedule(
        self,
        key: bytes,
        partition: int,
        state: LifecycleState | None,
        msg: ConsumedRecord,
        b: _Batch,
    ) -> None:
        until = self.parking.expiry(key, msg, b.parked)
        self.timers.schedule(key, partition, retention.next_deadline(state, self.config, until))

    def _load(self, key: bytes, msg: ConsumedRecord, b: _Batch) -> LifecycleState | None:
        if key in b.states:
            return b.states[key]
        state, older = self.site_states.load(key, msg, b)
        if older:
            # stored by a version that parked results in the state: they move to the
            # parked store, and the state is written without them
            b.dirty[key] = msg
            self.parking.adopt(key, older, msg, b.parked)
        return state

    def _park(self, key: bytes, inp: lifecycle.Input, msg: ConsumedRecord, b: _Batch) -> None:
        state = self._load(key, msg, b)
        held = self.parking.of(key, msg, b.parked)
        assert msg.value is not None
        dropped = retention.park(held, msg.offset, msg.value, lifecycle.input_time(inp))
        if dropped is None:
            return  # redelivered while still parked
        for _ in range(dropped):
            log.warning("dropped a parked result: its site never got settings", key=key)
        self.stats.dropped_parked += dropped
        self.stats.parked += 1
        self.parking.changed(key, msg, b.parked)
        until = retention.parked_expiry(held)
        self.timers.schedule(key, msg.partition, retention.next_deadline(state, self.config, until))

    def _apply(
        self,
        key: bytes,
        site_id: int,
        inp: lifecycle.Input,
        msg: ConsumedRecord,
        raw_site: bytes,
        b: _Batch,
        now_ms: int,
    ) -> None:
        state = self._load(key, msg, b)
        site = self.site_records.config(key, raw_site, msg.partition)
        context = lifecycle.SiteContext(site_id, site, self.config)
        before = state.position if state is not None else -1
        # the core updates the state in place: keep a copy unless this is its trivial
        # path (a healthy primary result with nothing open), to undo a failed apply
        snapshot = None
        if state is not None and (
            state.open
            or type(inp) is not _CheckResult
            or not inp.ok
            or inp.role is not _PRIMARY
            or inp.check_type is _TLS
        ):
            snapshot = dump_state(state)
        try:
            state, effects = lifecycle.apply(state, inp, context, msg.offset)
        except Exception as exc:
            log.exception("applying a record failed; dead-lettered", key=key, offset=msg.offset)
            if snapshot is not None:
                b.states[key] = load_state(snapshot)
            self._dead_letter(b.out, msg, f"internal error applying it: {error_of(exc)}", now_ms)
            return
        b.states[key] = state
        out = b.out
        # the fields, not `bool(effects)`: a Python-level call for every input otherwise
        produced = effects.transitions or effects.verify_requests
        if state.position != before:
            b.dirty[key] = msg
        elif produced:
            self.stats.redelivered += 1
        out.applied += 1
        if produced:
            for tr in effects.transitions:
                out.transitions.append(Keyed(key, records.encode(tr)))
            for req in effects.verify_requests:
                out.verify_requests.append(Keyed(key, records.encode(req)))
            self.stats.transitions += len(effects.transitions)
            self.stats.verify_requests += len(effects.verify_requests)
        if state.open or key in self.timers.due:
            self._schedule(key, msg.partition, state, msg, b)

    def _dead_letter(self, out: Output, msg: ConsumedRecord, error: str, now_ms: int) -> None:
        self.stats.dead_letters += 1
        out.dead_letters.append((msg.key, dead_letter_for(msg, error, self.consumer, now_ms)))
