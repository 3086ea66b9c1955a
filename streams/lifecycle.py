"""The site-event lifecycle (docs/lifecycle.md) as one pure function.

`apply(state, input, context, position)` returns the new state and the effects
(transitions for `site-events`, verify requests). It reads no clock (time is the
input's own timestamp), does no I/O and is deterministic, so the Faust worker, the
replay command and the tests all get the same answer from the same inputs.

`apply` itself handles what comes before the rules: a redelivered input (re-emitted
from the outbox) and rule 8 (an input older than, or a duplicate of, the last one of its
tuple); the rules of the events (1-7) are `rules.Step`'s.

For speed the state passed in is updated in place and returned; callers that need
the old state keep a copy (`state.dump_state`, as the processor does).
"""

from __future__ import annotations

from typing import Final, NamedTuple

from . import records, timefmt
from .enums import CheckType, Role
from .rules import Effects, Step
from .state import (
    MAX_MARK_IDS,
    MAX_MARKS,
    OUTBOX_HORIZON_MS,
    OUTBOX_MAX_BYTES,
    OUTBOX_SIZE,
    Config,
    Emitted,
    LifecycleState,
    SiteConfig,
    TupleMark,
    tuple_key,
)
from .state import PLAIN_KEYS as _PLAIN_KEYS

Input = records.CheckInput

_CheckResult: Final = records.CheckResult
_PRIMARY: Final = Role.PRIMARY
_TLS: Final = CheckType.TLS_EXPIRY
_compare: Final = timefmt.compare


class SiteContext(NamedTuple):
    """Everything `apply` reads besides the state and the input."""

    site_id: int
    #: None: the site is deleted or unknown
    site: SiteConfig | None
    config: Config


NO_EFFECTS: Final = Effects([], [])


def input_time(inp: Input) -> int:
    if isinstance(inp, records.CheckResult):
        return timefmt.to_ms(inp.observed_at)
    if isinstance(inp, records.Command):
        return timefmt.to_ms(inp.issued_at)
    return timefmt.to_ms(inp.at)


def next_deadline(state: LifecycleState, config: Config) -> int | None:
    """Earliest stream time at which a timer of this site fires (None: no timer)."""
    best: int | None = None
    for ev in state.open.values():
        due = ev.last_input_at + config.auto_timeout_ms
        if ev.verification is not None and ev.verification.deadline < due:
            due = ev.verification.deadline
        if best is None or due < best:
            best = due
    return best


def apply(
    state: LifecycleState | None,
    inp: Input,
    context: SiteContext,
    position: int,
) -> tuple[LifecycleState, Effects]:
    """Apply one input at `position` (its offset in the site's ordered input log).

    An input at or before the last applied position is a redelivery (at-least-once
    after a crash): it changes nothing and re-emits exactly what it produced then.
    """
    if state is None:
        state = LifecycleState()
    if position <= state.position:
        for emitted in state.outbox:
            if emitted.position == position:
                return state, Effects(
                    [records.transition_decoder.decode(t) for t in emitted.transitions],
                    [records.verify_request_decoder.decode(r) for r in emitted.verify_requests],
                )
        return state, NO_EFFECTS
    key: str | None = None
    if type(inp) is _CheckResult and inp.role is _PRIMARY:
        site = context.site
        if site is not None and site.active:  # a paused or deleted site marks nothing
            # Rule 8, for every primary result (its only implementation): the newest
            # input time applied per tuple, and the result ids seen at that time.
            key = _PLAIN_KEYS[inp.check_type].get(inp.endpoint_id)  # interned
            if key is None:
                key = tuple_key(inp.endpoint_id, inp.check_type)
            marks = state.marks
            mark = marks.get(key)
            stamp = inp.observed_at
            if mark is None:
                if len(marks) >= MAX_MARKS:
                    _evict_mark(state)
                marks[key] = TupleMark(stamp=stamp, ids=[inp.result_id])
            else:
                last = mark.stamp
                # canonical stamps order as strings: the common case; a wire stamp of 24
                # characters is canonical (`...mmmZ`, the only length-24 form admitted)
                if len(stamp) == 24 == len(last):
                    order = 1 if stamp > last else (0 if stamp == last else -1)
                else:
                    order = _compare(stamp, last)
                if order > 0:
                    mark.stamp = stamp
                    mark.ids = [inp.result_id]
                elif order < 0 or inp.result_id in mark.ids:
                    # older than the last input applied for the tuple, or a duplicate:
                    # changes nothing (every timer due by its time has fired already)
                    state.position = position
                    return state, NO_EFFECTS
                else:
                    if len(mark.ids) >= MAX_MARK_IDS:
                        del mark.ids[0]  # bounded: only a duplicate of a long-gone id slips
                    mark.ids.append(inp.result_id)
            if not state.open and inp.ok and inp.check_type is not _TLS:
                # the common case, a healthy site's check: nothing else moves
                state.position = position
                return state, NO_EFFECTS
    now = input_time(inp)
    step = Step(state, context.site_id, context.site, context.config, now)
    if state.open:
        step.fire_timers(now)
    if isinstance(inp, records.CheckResult):
        step.result(inp, now, key)
    elif isinstance(inp, records.Command):
        step.command(inp, now)
    state.position = position
    effects = step.effects
    if effects.transitions or effects.verify_requests:
        _remember(state, position, now, effects)
    return state, effects


def _evict_mark(state: LifecycleState) -> None:
    """Forget the oldest mark of a tuple with no open event: state stays bounded even
    if a site's results name endless endpoint ids."""
    idle = [(m.stamp, k) for k, m in state.marks.items() if k not in state.open]
    if idle:
        del state.marks[min(idle)[1]]


def _remember(state: LifecycleState, position: int, now: int, effects: Effects) -> None:
    keep = [e for e in state.outbox if e.at >= now - OUTBOX_HORIZON_MS]
    keep.append(
        Emitted(
            position=position,
            at=now,
            transitions=[records.encode(t) for t in effects.transitions],
            verify_requests=[records.encode(r) for r in effects.verify_requests],
        )
    )
    keep = keep[-OUTBOX_SIZE:]
    size = sum(_emitted_bytes(e) for e in keep)
    while len(keep) > 1 and size > OUTBOX_MAX_BYTES:
        size -= _emitted_bytes(keep.pop(0))
    state.outbox = keep


def _emitted_bytes(e: Emitted) -> int:
    return sum(map(len, e.transitions)) + sum(map(len, e.verify_requests))
