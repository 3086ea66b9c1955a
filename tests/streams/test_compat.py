"""Liberal readers (docs/contract.md): absent or null optional fields take their defaults and
unknown fields are ignored, through every in-process reader of each topic.

Each record type is sent as a minimal record, with every optional field null, and
with unknown extra fields (`tests/wire_samples.py`); the readers: the decoders, the
batch driver of the worker and replay, replay's `--what-if` rewrite, the notifier's
decision and the `sitewatch dev` view. The sink, probe and verifier have theirs in
their own folders.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from sitewatch.notify.decide import Kind, kind_of
from sitewatch.streams import records
from sitewatch.streams.enums import ErrorKind, EventState, Reason, RedirectPolicy, Role
from sitewatch.streams.message import ConsumedRecord, Record
from sitewatch.streams.processor import Processor
from sitewatch.streams.replay import parse_what_if
from sitewatch.streams.state import Config
from sitewatch.streams.stores import MemoryStore
from tests.wire_samples import FULL, UNKNOWN, Variant, variant, wire

VARIANTS = list(Variant)
READERS: dict[type[msgspec.Struct], records.Reader[Any]] = {
    records.SiteRecord: records.site_decoder,
    records.CheckResult: records.input_decoder,
    records.Command: records.input_decoder,
    records.VerifyRequest: records.verify_request_decoder,
    records.Transition: records.transition_decoder,
}


@pytest.mark.parametrize("cls", list(READERS), ids=lambda c: c.__name__)
def test_null_optional_fields_read_as_absent_ones(cls: type[msgspec.Struct]) -> None:
    reader = READERS[cls]
    minimal = reader.decode(wire(variant(cls, Variant.MINIMAL)))
    nulls = reader.decode(wire(variant(cls, Variant.NULLS)))
    assert type(minimal) is cls
    assert nulls == minimal


@pytest.mark.parametrize("cls", list(READERS), ids=lambda c: c.__name__)
def test_unknown_extra_fields_are_ignored(cls: type[msgspec.Struct]) -> None:
    reader = READERS[cls]
    assert reader.decode(wire({**FULL[cls], **UNKNOWN})) == reader.decode(wire(FULL[cls]))


def test_sites_record_with_null_settings_takes_the_spec_defaults() -> None:
    site = records.site_decoder.decode(wire(variant(records.SiteRecord, Variant.NULLS)))
    assert (site.active, site.check_interval_s, site.num_of_checks, site.peer_offline_limit) == (
        True,
        300,
        3,
        3,
    )
    assert (site.redirect_policy, site.maintenance, [c.value for c in site.checks]) == (
        RedirectPolicy.FOLLOW,
        [],
        ["http"],
    )
    assert site.effective_verify_timeout_s == 15


def test_result_with_null_role_and_probe_is_a_primary_result() -> None:
    res = records.input_decoder.decode(wire(variant(records.CheckResult, Variant.NULLS)))
    assert isinstance(res, records.CheckResult)
    assert (res.role, res.probe, res.error, res.endpoint_id) == (
        Role.PRIMARY,
        "",
        ErrorKind.NONE,
        None,
    )


def test_endpoint_id_zero_reads_as_the_site_itself() -> None:
    res = records.input_decoder.decode(
        wire(variant(records.CheckResult, Variant.EXTRA, endpoint_id=0))
    )
    assert isinstance(res, records.CheckResult) and res.endpoint_id is None


@pytest.mark.parametrize(
    ("legacy", "kind", "cause"),
    [
        ("refused", "connect", "refused"),
        ("reset", "connect", "reset"),
        ("internal", "connect", "internal"),
        ("nxdomain", "dns", "nxdomain"),
        ("servfail", "dns", "servfail"),
        ("dns_refused", "dns", "dns_refused"),
    ],
)
def test_legacy_error_kind_reads_as_its_class_with_the_cause(
    legacy: str, kind: str, cause: str
) -> None:
    """Records older probes wrote (`error: "refused"`) still apply, as the class."""
    raw = variant(records.CheckResult, Variant.MINIMAL, error=legacy)
    res = records.input_decoder.decode(wire(raw))
    assert isinstance(res, records.CheckResult)
    assert (res.error.value, res.error_cause) == (kind, cause)


def test_unknown_error_class_is_still_refused() -> None:
    raw = variant(records.CheckResult, Variant.MINIMAL, error="gremlins")
    with pytest.raises(records.ValidationError, match="error"):
        records.input_decoder.decode(wire(raw))


def test_transition_without_severities_takes_those_of_its_states() -> None:
    raw = variant(records.Transition, Variant.MINIMAL)
    del raw["severity_before"], raw["severity_after"]
    opened = records.transition_decoder.decode(wire(raw))
    assert (opened.severity_before, opened.severity_after, opened.discriminator) == (0, 3, "")
    closing = {**raw, "seq": 2, "reason": "probe_cleared", "state_before": "seems_down"}
    closing["state_after"] = "resolved"
    closed = records.transition_decoder.decode(wire(closing))
    assert (closed.severity_before, closed.severity_after) == (3, None)
    live_null = records.transition_decoder.decode(wire({**raw, "severity_after": None}))
    assert live_null.severity_after == 3


# -- the batch driver (worker and replay) ----------------------------------------------


SITE_KEY = b"7"


def _processor() -> Processor:
    return Processor(Config(), MemoryStore(), MemoryStore(), MemoryStore(), "r", "s", "compat")


def _reasons(proc: Processor, batch: list[ConsumedRecord]) -> list[tuple[str, str]]:
    out = proc.process(batch, 0)
    assert out.dead_letters == [], [d.error for _, d in out.dead_letters]
    decoded = [records.transition_decoder.decode(t.value) for t in out.transitions]
    return [(t.reason.value, t.state_after.value) for t in decoded]


@pytest.mark.parametrize("site_variant", VARIANTS)
@pytest.mark.parametrize("result_variant", VARIANTS)
def test_worker_applies_records_with_null_or_unknown_fields(
    site_variant: Variant, result_variant: Variant
) -> None:
    proc = _processor()
    site = variant(records.SiteRecord, site_variant, num_of_checks=1, maintenance=[])
    failing = variant(records.CheckResult, result_variant, ok=False)
    recovered = variant(
        records.CheckResult,
        result_variant,
        ok=True,
        result_id="r-2",
        observed_at="2026-11-26T10:00:30.000Z",
    )
    batch = [
        Record("s", 0, 0, SITE_KEY, wire(site)),
        Record("r", 0, 0, SITE_KEY, wire(failing)),
        Record("r", 0, 1, SITE_KEY, wire(recovered)),
    ]
    # no verifiers configured: promoted (unverified) at the first of num_of_checks=1
    assert _reasons(proc, batch) == [
        ("opened", "seems_down"),
        ("verifier_confirmed", "down"),
        ("verifier_cleared", "resolved"),
    ]


@pytest.mark.parametrize("command_variant", VARIANTS)
def test_worker_applies_close_command_with_null_or_unknown_fields(
    command_variant: Variant,
) -> None:
    proc = _processor()
    site = variant(records.SiteRecord, Variant.MINIMAL)
    failing = variant(records.CheckResult, Variant.MINIMAL, ok=False)
    out = proc.process(
        [Record("s", 0, 0, SITE_KEY, wire(site)), Record("r", 0, 0, SITE_KEY, wire(failing))], 0
    )
    [opened] = [records.transition_decoder.decode(t.value) for t in out.transitions]
    close = variant(
        records.Command,
        command_variant,
        event_id=opened.event_id,
        issued_at="2026-11-26T10:01:00.000Z",
    )
    got = _reasons(proc, [Record("r", 0, 1, SITE_KEY, wire(close))])
    assert got == [("manual_override", "resolved")]


@pytest.mark.parametrize("site_variant", VARIANTS)
def test_replay_what_if_rewrites_sites_with_null_or_unknown_fields(site_variant: Variant) -> None:
    rewritten = parse_what_if(["num_of_checks=5"]).rewrite(
        wire(variant(records.SiteRecord, site_variant))
    )
    site = records.site_decoder.decode(rewritten)
    assert site.num_of_checks == 5 and site.site_id == 7


# -- site-events readers besides the sink ----------------------------------------------


def _promotion(which: Variant) -> records.Transition:
    raw = variant(
        records.Transition,
        which,
        seq=2,
        reason="verifier_confirmed",
        state_before="seems_down",
        state_after="down",
        severity_before=3,
        severity_after=4,
    )
    return records.transition_decoder.decode(wire(raw))


@pytest.mark.parametrize("which", VARIANTS)
def test_notifier_decides_on_transitions_with_null_or_unknown_fields(which: Variant) -> None:
    assert kind_of(_promotion(which)) is Kind.DOWN
    recovery = records.transition_decoder.decode(
        wire(
            variant(
                records.Transition,
                which,
                seq=3,
                reason="verifier_cleared",
                state_before="down",
                state_after="resolved",
                severity_before=4,
                severity_after=None,
            )
        )
    )
    assert kind_of(recovery) is Kind.RECOVERY


@pytest.mark.parametrize("which", VARIANTS)
def test_dev_view_shows_transitions_with_null_or_unknown_fields(which: Variant) -> None:
    from sitewatch.dev.sites import DevSite
    from sitewatch.dev.view import SiteView, View

    site = DevSite(site_id=7, name="seven", url="http://127.0.0.1:9/")
    view = View({7: SiteView(site)}, [])
    tr = _promotion(which)
    view.apply(tr)
    assert view.sites[7].open[tr.event_id].state == EventState.DOWN.value
    assert "verifier_confirmed" in view.line(tr) and "seven" in view.line(tr)
    assert tr.reason is Reason.VERIFIER_CONFIRMED
