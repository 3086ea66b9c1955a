"""A tiny driver for the pure core: feed inputs, collect transitions."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from sitewatch.streams import lifecycle, records, timefmt
from sitewatch.streams.enums import CheckType, CommandKind, Role
from sitewatch.streams.state import Config, LifecycleState, SiteConfig

T0 = timefmt.to_ms("2026-11-26T10:00:00.000Z")


def at(seconds: float) -> str:
    return timefmt.from_ms(T0 + int(seconds * 1000))


_ids = itertools.count(1)


def result(
    ok: bool,
    t: float,
    site_id: int = 1,
    check_type: CheckType = CheckType.HTTP,
    role: Role = Role.PRIMARY,
    probe: str = "probe-a",
    request_id: str | None = None,
    result_id: str | None = None,
    tls_days: float | None = None,
    endpoint_id: int | None = None,
) -> records.CheckResult:
    not_after = None
    if tls_days is not None:
        not_after = timefmt.from_ms(T0 + int(t * 1000) + int(tls_days * 86_400_000))
    return records.CheckResult(
        result_id=result_id or f"r{next(_ids)}",
        site_id=site_id,
        endpoint_id=endpoint_id,
        check_type=check_type,
        role=role,
        probe=probe,
        request_id=request_id,
        ok=ok,
        observed_at=at(t),
        tls_not_after=not_after,
    )


def close_cmd(
    event_id: str, t: float, site_id: int = 1, command_id: str | None = None
) -> records.Command:
    return records.Command(
        command_id=command_id or f"c{next(_ids)}",
        site_id=site_id,
        command=CommandKind.CLOSE_EVENT,
        event_id=event_id,
        actor="alice",
        issued_at=at(t),
        note="known issue",
    )


def tick(t: float) -> records.Tick:
    return records.Tick(tick_id=f"k{next(_ids)}", partition=0, at=at(t))


@dataclass
class Run:
    """One site fed through `lifecycle.apply`, the way the worker does it."""

    site: SiteConfig | None = field(
        default_factory=lambda: SiteConfig(site_id=1, url="https://example.test/")
    )
    config: Config = field(default_factory=Config)
    site_id: int = 1
    state: LifecycleState | None = None
    position: int = 0
    transitions: list[records.Transition] = field(default_factory=list)
    requests: list[records.VerifyRequest] = field(default_factory=list)

    def feed(self, *inputs: lifecycle.Input) -> list[records.Transition]:
        out: list[records.Transition] = []
        for inp in inputs:
            self.position += 1
            settings = lifecycle.SiteContext(self.site_id, self.site, self.config)
            self.state, effects = lifecycle.apply(self.state, inp, settings, self.position)
            out.extend(effects.transitions)
            self.requests.extend(effects.verify_requests)
        self.transitions.extend(out)
        return out

    def answer(
        self, ok: bool, t: float, probe: str, request_id: str | None = None
    ) -> list[records.Transition]:
        rid = request_id or self.requests[-1].request_id
        return self.feed(result(ok, t, role=Role.VERIFIER, probe=probe, request_id=rid))

    @property
    def reasons(self) -> list[str]:
        return [t.reason.value for t in self.transitions]

    @property
    def open_events(self) -> int:
        return len(self.state.open) if self.state else 0
