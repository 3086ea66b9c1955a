"""The lifecycle's rules (docs/lifecycle.md, rules 1-7): what one input does to the open
events of a site, written as transitions and verify requests into `Effects`.

`lifecycle.apply` drives them: it handles redeliveries and rule 8 first, then runs a
`Step` for the input. Pure, like all the core.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from . import records, timefmt
from .enums import CheckType, CommandKind, EventState, Reason, Role, Severity
from .ids import event_id_for, request_id_for, transition_id_for
from .state import MAX_OPEN_EVENTS, Config, LifecycleState, SiteConfig, TrackedEvent, Verification

TLS_WARNING_MS: Final = 30 * 86_400_000
TLS_DEGRADED_MS: Final = 7 * 86_400_000

#: which open check type explains a new event of this type (docs/lifecycle.md)
_CAUSES: Final[dict[CheckType, tuple[CheckType, ...]]] = {
    CheckType.TCP: (CheckType.DNS,),
    CheckType.HTTP: (CheckType.DNS, CheckType.TCP),
}


class Effects(NamedTuple):
    """What an input caused: records for `site-events` and `verify-requests`."""

    transitions: list[records.Transition]
    verify_requests: list[records.VerifyRequest]

    def __bool__(self) -> bool:
        return bool(self.transitions or self.verify_requests)


class Step:
    """One application of `apply`: the rules, writing into `effects`."""

    __slots__ = ("config", "effects", "now", "site", "site_id", "state")

    def __init__(
        self,
        state: LifecycleState,
        site_id: int,
        site: SiteConfig | None,
        config: Config,
        now: int,
    ) -> None:
        self.state = state
        self.site_id = site_id
        self.site = site
        self.config = config
        self.now = now
        self.effects = Effects([], [])

    # -- timers (rule 3 timeout, rule 7) -------------------------------------------

    def fire_timers(self, now: int) -> None:
        due: list[tuple[int, int, str]] = []
        for key, ev in self.state.open.items():
            if ev.verification is not None and ev.verification.deadline <= now:
                due.append((ev.verification.deadline, 0, key))
            idle_deadline = ev.last_input_at + self.config.auto_timeout_ms
            if idle_deadline <= now:
                due.append((idle_deadline, 1, key))
        for at, kind, key in sorted(due):
            ev_or_none = self.state.open.get(key)
            if ev_or_none is None:
                continue
            if kind == 0:
                if ev_or_none.verification is not None:
                    self.decide(key, ev_or_none, at, "system:verify_timeout")
            else:
                self.close(key, ev_or_none, Reason.AUTO_TIMEOUT, at, "system:auto_timeout")

    # -- inputs --------------------------------------------------------------------

    def result(self, res: records.CheckResult, now: int, key: str | None) -> None:
        """`key`: the tuple of a primary result, marked by `apply` (rule 8)."""
        site = self.site
        if site is None or not site.active:
            return  # paused or deleted sites: results change nothing
        if res.role is Role.VERIFIER:
            self.verifier_answer(res, now)
            return
        assert key is not None
        ev = self.state.open.get(key)
        if ev is not None:
            ev.last_input_at = now
        if res.check_type is CheckType.TLS_EXPIRY:
            self.tls(key, ev, res, now, site)
        elif res.ok:
            if ev is not None:
                if ev.state is EventState.DOWN:
                    self.close(key, ev, Reason.VERIFIER_CLEARED, now, "local")  # rule 5
                else:
                    self.close(key, ev, Reason.PROBE_CLEARED, now, "local")  # rule 4
        elif ev is None:
            if not site.in_maintenance(now) and len(self.state.open) < MAX_OPEN_EVENTS:
                self.open_seems_down(key, res, now, site)  # rule 1
        elif ev.state is EventState.SEEMS_DOWN:
            ev.fail_count += 1  # rule 2
            self.maybe_verify(key, ev, now, site)

    def verifier_answer(self, res: records.CheckResult, now: int) -> None:
        for key, ev in self.state.open.items():
            ver = ev.verification
            if ver is None or ver.request_id != res.request_id:
                continue
            if res.probe in ver.answers:
                return  # one answer per verifier location
            ver.answers[res.probe] = res.ok
            ev.last_input_at = max(ev.last_input_at, now)
            confirmations = sum(1 for ok in ver.answers.values() if not ok)
            site = self.site
            limit = site.peer_offline_limit if site is not None else 1
            if confirmations >= limit or len(ver.answers) >= ver.asked:
                self.decide(key, ev, now, f"verifier:{res.probe}")
            return

    def command(self, cmd: records.Command, now: int) -> None:
        if cmd.command is CommandKind.CLOSE_EVENT:
            for key, ev in self.state.open.items():
                if ev.event_id == cmd.event_id:
                    meta: dict[str, object] = {"command_id": cmd.command_id}
                    if cmd.note:
                        meta["note"] = cmd.note
                    self.close(key, ev, Reason.MANUAL_OVERRIDE, now, f"operator:{cmd.actor}", meta)
                    return

    # -- rules ---------------------------------------------------------------------

    def open_seems_down(
        self, key: str, res: records.CheckResult, now: int, site: SiteConfig
    ) -> None:
        ev = self.open_event(key, res, now, EventState.SEEMS_DOWN)
        ev.fail_count = 1
        self.maybe_verify(key, ev, now, site)

    def open_event(
        self,
        key: str,
        res: records.CheckResult,
        now: int,
        state: EventState,
        meta: dict[str, object] | None = None,
    ) -> TrackedEvent:
        ev = TrackedEvent(
            event_id=event_id_for(self.site_id, key, now, res.result_id),
            endpoint_id=res.endpoint_id,
            check_type=res.check_type,
            discriminator="",
            state=state,
            severity=Severity[state.name],
            started_at=now,
            seq=0,
            last_input_at=now,
        )
        self.state.open[key] = ev
        base: dict[str, object] = {
            "result_id": res.result_id,
            "probe": res.probe,
            "error": res.error.value,
        }
        if res.http_status is not None:
            base["http_status"] = res.http_status
        if res.error_cause is not None:
            base["error_cause"] = res.error_cause
        self.emit(
            ev, Reason.OPENED, EventState.UP, Severity.UP, now, "local", {**base, **(meta or {})}
        )
        cause = self.find_cause(res.check_type)
        if cause is not None:
            ev.cause_event_id = cause.event_id
            self.emit(
                ev,
                Reason.CAUSE_LINKED,
                ev.state,
                ev.severity,
                now,
                "local",
                {"cause_check_type": cause.check_type.value},
            )
        return ev

    def find_cause(self, check_type: CheckType) -> TrackedEvent | None:
        for cause_type in _CAUSES.get(check_type, ()):
            for ev in self.state.open.values():
                if ev.check_type is cause_type:
                    return ev
        return None

    def maybe_verify(self, key: str, ev: TrackedEvent, now: int, site: SiteConfig) -> None:
        if ev.fail_count < site.num_of_checks or ev.verification is not None or ev.verified:
            return
        if site.in_maintenance(now):
            return  # invariant 10: no verify request, no promotion in maintenance
        if not self.config.verifiers:
            self.promote(ev, now, "local", {"unverified": True, "fail_count": ev.fail_count})
            return
        ev.verified = True  # ask once per event
        request_id = request_id_for(ev.event_id)
        ev.verification = Verification(
            request_id=request_id,
            requested_at=now,
            deadline=now + site.verify_timeout_ms,
            asked=len(self.config.verifiers),
        )
        self.effects.verify_requests.append(
            records.VerifyRequest(
                request_id=request_id,
                site_id=self.site_id,
                endpoint_id=ev.endpoint_id,
                check_type=ev.check_type,
                event_id=ev.event_id,
                url=site.url,
                timeout_s=site.timeout_s,
                keyword=site.keyword,
                redirect_policy=site.redirect_policy,
                headers_ref=records.headers_ref(self.site_id) if site.has_custom_headers else None,
                requested_at=timefmt.from_ms(now),
            )
        )

    def decide(self, key: str, ev: TrackedEvent, at: int, source: str) -> None:
        """Rule 3: promote on quorum, else false alarm."""
        ver = ev.verification
        assert ver is not None
        ev.verification = None
        answered = len(ver.answers)
        confirming = sorted(name for name, ok in ver.answers.items() if not ok)
        site = self.site
        limit = site.peer_offline_limit if site is not None else 1
        quorum = max(1, min(limit, answered))
        meta: dict[str, object] = {
            "request_id": ver.request_id,
            "answers": {name: ver.answers[name] for name in sorted(ver.answers)},
            "asked": ver.asked,
            "quorum": quorum,
            "confirmations": len(confirming),
        }
        if answered == 0:
            meta["no_verifier_answered"] = True
            self.close(key, ev, Reason.FALSE_ALARM, at, source, meta)
        elif len(confirming) >= quorum:
            if site is not None and site.in_maintenance(at):
                # invariant 10: never promoted inside a window; stays seems_down and asks
                # again on the next failure after the window
                ev.verified = False
                return
            self.promote(ev, at, source, meta)
        else:
            self.close(key, ev, Reason.FALSE_ALARM, at, source, meta)

    def promote(self, ev: TrackedEvent, at: int, source: str, meta: dict[str, object]) -> None:
        before_state, before_sev = ev.state, ev.severity
        ev.state, ev.severity = EventState.DOWN, Severity.DOWN
        self.emit(ev, Reason.VERIFIER_CONFIRMED, before_state, before_sev, at, source, meta)

    def tls(
        self,
        key: str,
        ev: TrackedEvent | None,
        res: records.CheckResult,
        now: int,
        site: SiteConfig,
    ) -> None:
        if res.tls_not_after is None:
            return  # no certificate seen: availability checks report that failure
        left = timefmt.to_ms(res.tls_not_after) - now
        meta: dict[str, object] = {
            "tls_not_after": res.tls_not_after,
            "days_left": left // 86_400_000,
        }
        if left > TLS_WARNING_MS:
            if ev is not None:
                self.close(key, ev, Reason.PROBE_CLEARED, now, "local", meta)
            return
        target = EventState.WARNING if left > TLS_DEGRADED_MS else EventState.DEGRADED
        if ev is None:
            if not site.in_maintenance(now) and len(self.state.open) < MAX_OPEN_EVENTS:
                self.open_event(key, res, now, target, meta)
            return
        if ev.state is target:
            return
        before_state, before_sev = ev.state, ev.severity
        ev.state, ev.severity = target, Severity[target.name]
        reason = (
            Reason.SEVERITY_ESCALATION if ev.severity > before_sev else Reason.SEVERITY_DEESCALATION
        )
        self.emit(ev, reason, before_state, before_sev, now, "local", meta)

    def close(
        self,
        key: str,
        ev: TrackedEvent,
        reason: Reason,
        at: int,
        source: str,
        meta: dict[str, object] | None = None,
    ) -> None:
        del self.state.open[key]
        self.emit(ev, reason, ev.state, ev.severity, at, source, meta or {}, closing=True)

    def emit(
        self,
        ev: TrackedEvent,
        reason: Reason,
        state_before: EventState,
        severity_before: Severity,
        at: int,
        source: str,
        meta: dict[str, object],
        closing: bool = False,
    ) -> None:
        ev.seq += 1
        at_wire = timefmt.from_ms(at)
        self.effects.transitions.append(
            records.Transition(
                transition_id=transition_id_for(ev.event_id, ev.seq),
                event_id=ev.event_id,
                site_id=self.site_id,
                endpoint_id=ev.endpoint_id,
                check_type=ev.check_type,
                discriminator=ev.discriminator,
                seq=ev.seq,
                reason=reason,
                state_before=state_before,
                state_after=EventState.RESOLVED if closing else ev.state,
                severity_before=int(severity_before),
                severity_after=None if closing else int(ev.severity),
                started_at=ev.started_at_wire,
                ended_at=at_wire if closing else None,
                resolution_reason=reason if closing else None,
                cause_event_id=ev.cause_event_id,
                at=at_wire,
                source=source,
                metadata=meta,
            )
        )
