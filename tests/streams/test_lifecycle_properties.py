"""Property tests: random input sequences through the pure core."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sitewatch.streams import records
from sitewatch.streams.enums import SEVERITY_OF, CheckType, EventState, Role
from sitewatch.streams.state import Config, SiteConfig

from .scenario import Run, close_cmd, result, tick

CHECKS = [CheckType.HTTP, CheckType.TCP, CheckType.DNS, CheckType.TLS_EXPIRY]


@st.composite
def inputs(draw: st.DrawFn) -> list[object]:
    """A plausible, messy stream: failures, recoveries, answers, ticks, dups, late."""
    n = draw(st.integers(1, 60))
    t = 0.0
    out: list[object] = []
    for _ in range(n):
        t += draw(st.sampled_from([0, 1, 5, 30, 300, 90_000]))
        kind = draw(
            st.sampled_from(["fail", "ok", "answer", "tick", "dup", "late", "tls", "close"])
        )
        check = draw(st.sampled_from(CHECKS[:3]))
        if kind in ("fail", "ok"):
            out.append(
                result(
                    kind == "ok", t, check_type=check, endpoint_id=draw(st.sampled_from([None, 2]))
                )
            )
        elif kind == "answer":
            out.append(
                ("answer", t, draw(st.sampled_from(["eu", "us", "ap"])), draw(st.booleans()))
            )
        elif kind == "tick":
            out.append(tick(t))
        elif kind == "dup" and out and isinstance(out[-1], records.CheckResult):
            out.append(out[-1])
        elif kind == "late":
            out.append(result(False, max(0.0, t - 100), check_type=check))
        elif kind == "tls":
            out.append(
                result(
                    True,
                    t,
                    check_type=CheckType.TLS_EXPIRY,
                    tls_days=draw(st.sampled_from([-1, 3, 10, 29, 45])),
                )
            )
        elif kind == "close":
            out.append(("close", t))
    return out


def drive(seq: list[object], config: Config, site: SiteConfig) -> Run:
    run = Run(config=config, site=site)
    for index, item in enumerate(seq):
        if isinstance(item, tuple) and item[0] == "answer":
            _, t, name, ok = item
            rid = run.requests[-1].request_id if run.requests else "none"
            run.feed(result(ok, t, role=Role.VERIFIER, probe=name, request_id=rid))
        elif isinstance(item, tuple) and item[0] == "close":
            if run.state and run.state.open:
                ev = sorted(run.state.open.values(), key=lambda e: e.event_id)[0]
                run.feed(close_cmd(ev.event_id, item[1], command_id=f"cmd{index}"))
        else:
            run.feed(item)  # type: ignore[arg-type]
    return run


CONFIGS = st.sampled_from([Config(), Config(verifiers=("eu", "us", "ap"))])
SITES = st.builds(
    lambda n, limit: SiteConfig(
        site_id=1, url="https://x.test/", num_of_checks=n, peer_offline_limit=limit
    ),
    st.integers(1, 4),
    st.integers(1, 3),
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(inputs(), CONFIGS, SITES)
def test_property_never_two_open_events_per_tuple(
    seq: list[object], config: Config, site: SiteConfig
) -> None:
    run = drive(seq, config, site)
    open_by_tuple: dict[tuple[object, ...], str] = {}
    for tr in run.transitions:
        key = (tr.endpoint_id or 0, tr.check_type, tr.discriminator)
        if tr.seq == 1:
            assert key not in open_by_tuple, "opened while another is open"
            open_by_tuple[key] = tr.event_id
        else:
            assert open_by_tuple.get(key) == tr.event_id, "change to a non-open event"
        if tr.state_after is EventState.RESOLVED:
            del open_by_tuple[key]


@SETTINGS
@given(inputs(), CONFIGS, SITES)
def test_property_closed_events_have_a_resolution_reason(
    seq: list[object], config: Config, site: SiteConfig
) -> None:
    for tr in drive(seq, config, site).transitions:
        closing = tr.state_after is EventState.RESOLVED
        assert (tr.resolution_reason is not None) == closing == (tr.ended_at is not None)
        if closing:
            assert tr.resolution_reason is tr.reason and tr.reason.closes
            assert tr.severity_after is None


@SETTINGS
@given(inputs(), CONFIGS, SITES)
def test_property_severity_consistent_with_state(
    seq: list[object], config: Config, site: SiteConfig
) -> None:
    for tr in drive(seq, config, site).transitions:
        assert SEVERITY_OF[tr.state_before] == tr.severity_before
        if tr.state_after is not EventState.RESOLVED:
            assert SEVERITY_OF[tr.state_after] == tr.severity_after
        if tr.check_type is CheckType.TLS_EXPIRY:
            assert tr.state_after in (EventState.WARNING, EventState.DEGRADED, EventState.RESOLVED)


@SETTINGS
@given(inputs(), CONFIGS, SITES)
def test_property_same_inputs_byte_identical_transitions(
    seq: list[object], config: Config, site: SiteConfig
) -> None:
    first = [records.encode(t) for t in drive(seq, config, site).transitions]
    second = [records.encode(t) for t in drive(seq, config, site).transitions]
    assert first == second


@SETTINGS
@given(inputs(), CONFIGS, SITES)
def test_property_seq_contiguous_per_event(
    seq: list[object], config: Config, site: SiteConfig
) -> None:
    seqs: dict[str, list[int]] = {}
    for tr in drive(seq, config, site).transitions:
        seqs.setdefault(tr.event_id, []).append(tr.seq)
    for got in seqs.values():
        assert got == list(range(1, len(got) + 1))
