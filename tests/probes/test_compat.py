"""The probe's `sites` reader and the verifier's `verify-requests` reader are liberal:
absent or null optional fields take their defaults, unknown fields are ignored."""

from __future__ import annotations

import time
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from sitewatch.probes.checks import Checker
from sitewatch.probes.fleet import Fleet
from sitewatch.probes.probe import Probe
from sitewatch.probes.schedule import SiteTable
from sitewatch.probes.verifier import Verifier
from sitewatch.settings import Settings
from sitewatch.streams import records, timefmt
from sitewatch.streams.enums import RedirectPolicy, Role
from sitewatch.streams.topics import TopicNames
from tests.wire_samples import Variant, variant, wire


class Sent:
    """Stands in for the producer: keeps what would have been published."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes | None]] = []

    async def send_and_wait(
        self, topic: str, value: bytes | None = None, key: bytes | None = None
    ) -> None:
        self.records.append((topic, value, key))


def consumed(topic: str, key: bytes, value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=topic,
        partition=0,
        offset=0,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=(),
    )


@pytest.mark.parametrize("which", list(Variant))
async def test_probe_schedules_sites_record_with_null_or_unknown_fields(which: Variant) -> None:
    sent = Sent()
    table = SiteTable(max_initial_delay_s=0)
    probe = Probe(
        Settings(),
        cast(AIOKafkaConsumer, None),  # apply() reads no topic itself
        cast(AIOKafkaProducer, sent),
        cast(Checker, None),
        "compat",
        1,
        table,
    )
    await probe.apply(consumed("sitewatch.sites", b"7", wire(variant(records.SiteRecord, which))))
    assert sent.records == []  # nothing dead-lettered
    owned = table.get(7)
    assert owned is not None
    if which is not Variant.EXTRA:
        site = owned.site
        assert (site.active, site.timeout_s, site.redirect_policy) == (
            True,
            10,
            RedirectPolicy.FOLLOW,
        )


@pytest.mark.parametrize("which", list(Variant))
async def test_verifier_answers_request_with_null_or_unknown_fields(
    which: Variant, checker: Checker, fleet: Fleet
) -> None:
    sent = Sent()
    verifier = Verifier(
        Settings(),
        cast(AIOKafkaConsumer, None),
        cast(AIOKafkaProducer, sent),
        checker,
        "eu",
        4,
        300.0,
    )
    now = timefmt.from_ms(time.time_ns() // 1_000_000)  # a fresh request, not a stale one
    request: dict[str, Any] = variant(
        records.VerifyRequest, which, url=fleet.sites["up"].url, requested_at=now
    )
    await verifier.handle(consumed("sitewatch.verify-requests", b"7", wire(request)))
    [(topic, value, key)] = sent.records
    assert (topic, key) == (TopicNames().check_results, b"7")
    answer = records.input_decoder.decode(value or b"")
    assert isinstance(answer, records.CheckResult)
    assert (answer.role, answer.probe, answer.request_id, answer.ok) == (
        Role.VERIFIER,
        "eu",
        "q-1",
        True,
    )
