"""Prometheus metrics of the long-running processes, served on `SITEWATCH_METRICS_LISTEN`.

Every metric name lives here (the README's "Metrics" section lists them). Cheap by design:

- Counters a process already keeps (`Processor.stats`, the sink's totals, the probe's,
  verifier's and notifier's counters) are read by collectors at scrape time, so the hot
  paths pay nothing per record for them.
- The rest are observed once per batch, check or webhook request, never per record.
- Consumer lag is computed at scrape time from what the consumer already knows (the
  partition's end offset and the consumer's position or committed offset).

The endpoint is an aiohttp server on the process's own event loop: collectors read
loop-owned state without locks, and the lag reader can await the consumer.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Final

import structlog
from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sitewatch.settings import Settings, SettingsError

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

    from sitewatch.probes.checks import Observation
    from sitewatch.streams.processor import Processor

log = structlog.get_logger(__name__)

#: a scrape never waits longer than this for the consumer to say where it is
LAG_TIMEOUT_S: Final = 5.0


class Process(enum.StrEnum):
    """The processes that serve metrics."""

    WORKER = "worker"
    SINK = "sink"
    PROBE = "probe"
    VERIFIER = "verifier"
    NOTIFIER = "notifier"


class CheckOutcome(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"


class DeliveryOutcome(enum.StrEnum):
    """One webhook attempt: delivered (2xx), failed and retried later, or the last one failed."""

    SENT = "sent"
    RETRY = "retry"
    GAVE_UP = "gave_up"


# -- instruments observed by the processes (registered only where they are served) --------

_SECONDS_FAST: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_SECONDS_NET: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_RECORDS: Final = (1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10_000)


def _histogram(
    name: str, text: str, buckets: Sequence[float], labels: Sequence[str] = ()
) -> Histogram:
    """Unregistered: `start` registers it with the process that serves it (`INSTRUMENTS`)."""
    return Histogram(name, text, labels, buckets=buckets, registry=None)


def _counter(name: str, text: str, labels: Sequence[str] = ()) -> Counter:
    """Unregistered, like `_histogram`'s."""
    return Counter(name, text, labels, registry=None)


WORKER_BATCH_RECORDS: Final = _histogram(
    "sitewatch_worker_batch_records", "Records (check-results and sites) per worker batch", _RECORDS
)
WORKER_BATCH_SECONDS: Final = _histogram(
    "sitewatch_worker_batch_duration_seconds",
    "Time to process one worker batch: the lifecycle plus awaiting its outputs",
    _SECONDS_FAST,
)
SINK_BATCH_RECORDS: Final = _histogram(
    "sitewatch_sink_batch_records", "Records (site-events and sites) per sink batch", _RECORDS
)
SINK_BATCH_SECONDS: Final = _histogram(
    "sitewatch_sink_batch_duration_seconds",
    "Time from a polled batch to its committed transaction, retries and splits included",
    _SECONDS_FAST,
)
SINK_COMMIT_SECONDS: Final = _histogram(
    "sitewatch_sink_commit_duration_seconds",
    "Time of the database COMMIT of one batch (not observed in shadow mode)",
    _SECONDS_FAST,
)
SINK_RETRIES: Final = _counter(
    "sitewatch_sink_database_retries_total",
    "Database operations retried because the database was unavailable",
)
CHECKS: Final = _counter(
    "sitewatch_checks_total",
    "Checks run, by check type, outcome and error class (tls_expiry can fail with error none)",
    labels=("check_type", "outcome", "error"),
)
CHECK_SECONDS: Final = _histogram(
    "sitewatch_check_duration_seconds",
    "Duration of one check (tls_expiry has none: it reads the http check's handshake)",
    _SECONDS_NET,
    labels=("check_type", "outcome"),
)
DELIVERIES: Final = _counter(
    "sitewatch_notifier_deliveries_total", "Webhook delivery attempts by outcome", ["outcome"]
)
DELIVERY_SECONDS: Final = _histogram(
    "sitewatch_notifier_delivery_duration_seconds", "Duration of one webhook request", _SECONDS_NET
)
for _outcome in DeliveryOutcome:  # a closed set: every series exists from the start
    DELIVERIES.labels(_outcome.value)

#: what each process registers besides its own collectors
INSTRUMENTS: Final[Mapping[Process, tuple[Collector, ...]]] = {
    Process.WORKER: (WORKER_BATCH_RECORDS, WORKER_BATCH_SECONDS),
    Process.SINK: (SINK_BATCH_RECORDS, SINK_BATCH_SECONDS, SINK_COMMIT_SECONDS, SINK_RETRIES),
    Process.PROBE: (CHECKS, CHECK_SECONDS),
    Process.VERIFIER: (CHECKS, CHECK_SECONDS),
    Process.NOTIFIER: (DELIVERIES, DELIVERY_SECONDS),
}


def observe_batch(records: Histogram, seconds: Histogram, size: int, started: float) -> None:
    """One batch of `size` records that began at `started` (`time.perf_counter()`)."""
    records.observe(size)
    seconds.observe(time.perf_counter() - started)


#: label children by (check type, ok, error): `labels()` costs more than the check's
#: own bookkeeping on the probe's hot path (P3)
_CHECK_CHILDREN: dict[tuple[str, bool, str], tuple[Counter, Histogram]] = {}


def observe_checks(observations: Iterable[Observation]) -> None:
    """Count each observation by type and outcome; its `timings.total` (ms) as duration."""
    for obs in observations:
        key = (obs.check_type.value, obs.ok, obs.error.value)
        children = _CHECK_CHILDREN.get(key)
        if children is None:
            outcome = (CheckOutcome.OK if obs.ok else CheckOutcome.FAILED).value
            children = _CHECK_CHILDREN[key] = (
                CHECKS.labels(key[0], outcome, key[2]),
                CHECK_SECONDS.labels(key[0], outcome),
            )
        children[0].inc()
        if obs.timings is not None and obs.timings.total is not None:
            children[1].observe(obs.timings.total / 1000)


# -- collectors over the processes' own counters ---------------------------------------


@dataclass(frozen=True, slots=True)
class Stat:
    """One metric read at scrape time: a number, or label value -> number with `label`."""

    name: str
    help: str
    read: Callable[[], float | Mapping[str, float]]
    label: str | None = None
    gauge: bool = False


@dataclass(frozen=True, eq=False)  # hashed by identity: the registry keys collectors
class StatsCollector(Collector):
    stats: Sequence[Stat]

    def collect(self) -> Iterator[Metric]:
        for stat in self.stats:
            family_type = GaugeMetricFamily if stat.gauge else CounterMetricFamily
            value = stat.read()
            if stat.label is None:
                assert not isinstance(value, Mapping)
                yield family_type(stat.name, stat.help, value=value)
                continue
            assert isinstance(value, Mapping)
            family = family_type(stat.name, stat.help, labels=[stat.label])
            for label_value, number in sorted(value.items()):
                family.add_metric([label_value], number)
            yield family


#: `Processor.stats` field -> (metric, help)
_WORKER_STATS: Final = {
    "inputs": ("sitewatch_worker_inputs_total", "Check results and commands consumed"),
    "ticks": ("sitewatch_worker_ticks_total", "Clock ticks consumed"),
    "sites": ("sitewatch_worker_site_records_total", "Records of sites consumed"),
    "transitions": ("sitewatch_worker_transitions_total", "Transitions emitted to site-events"),
    "verify_requests": ("sitewatch_worker_verify_requests_total", "Verify requests emitted"),
    "dead_letters": ("sitewatch_worker_dead_letters_total", "Records sent to a dead-letter topic"),
    "redelivered": (
        "sitewatch_worker_redeliveries_total",
        "Redelivered inputs whose recorded effects were emitted again",
    ),
    "parked": ("sitewatch_worker_parked_total", "Results parked until their site has settings"),
    "dropped_parked": (
        "sitewatch_worker_parked_dropped_total",
        "Parked results dropped (their site never got settings)",
    ),
}


def _stats(read: Callable[[str], float], names: Mapping[str, tuple[str, str]]) -> list[Stat]:
    """A counter for each key of `names` (key -> (metric, help)): `read(key)` at scrape time."""
    return [Stat(name, text, partial(read, key)) for key, (name, text) in names.items()]


def worker_stats(processor: Processor) -> StatsCollector:
    """`Processor.stats` (and its timer index), read at scrape time."""
    pending = Stat(
        "sitewatch_worker_pending_timers",
        "Sites with a pending timer (verify timeout, auto_timeout)",
        lambda: float(len(processor.deadlines)),
        gauge=True,
    )
    return StatsCollector(
        [*_stats(lambda key: float(getattr(processor.stats, key)), _WORKER_STATS), pending]
    )


#: the sink's totals that have a metric of their own; the other keys are rows written
_SINK_OWN: Final = {
    "messages": ("sitewatch_sink_messages_total", "Records (site-events, sites) applied"),
    "transitions": (
        "sitewatch_sink_transitions_total",
        "Transition rows written (or, in shadow mode, that would have been)",
    ),
    "duplicates": (
        "sitewatch_sink_redeliveries_total",
        "Transitions already stored (a redelivery or replay): no-ops",
    ),
    "dead_letters": ("sitewatch_sink_dead_letters_total", "Records sent to a dead-letter topic"),
}


def sink_stats(totals: Mapping[str, int], writes: bool) -> StatsCollector:
    """The sink's running totals (`Sink.totals`), read at scrape time."""

    def rows() -> Mapping[str, float]:
        return {k: float(v) for k, v in totals.items() if k not in _SINK_OWN}

    return StatsCollector(
        [
            *_stats(lambda key: float(totals.get(key, 0)), _SINK_OWN),
            Stat(
                "sitewatch_sink_rows_total",
                "Other rows written (or that would have been), by write: events_inserted, "
                "events_updated, projections, sites_upserted, sites_deleted, offsets",
                rows,
                label="write",
            ),
            Stat(
                "sitewatch_sink_writes_enabled",
                "1 when the sink writes, 0 in shadow mode (SITEWATCH_SINK_WRITES)",
                lambda: float(writes),
                gauge=True,
            ),
        ]
    )


def counts_stats(counts: Mapping[str, int], names: Mapping[str, tuple[str, str]]) -> Collector:
    """Counters kept in a `Counter[str]` (probe, verifier, notifier): key -> (metric, help)."""
    return StatsCollector(_stats(lambda key: float(counts.get(key, 0)), names))


# -- consumer lag ------------------------------------------------------------------------

#: (topic, partition, records behind) for each partition the process owns
LagReader = Callable[[], Awaitable[Iterable[tuple[str, int, int]]]]


def consumer_lag(consumer: Callable[[], AIOKafkaConsumer | None]) -> LagReader:
    """Lag of an aiokafka consumer: the partition's high watermark minus its position.

    Both are what the consumer already knows (the watermark comes with every fetch
    response), so a scrape sends nothing to the broker.
    """

    async def read() -> list[tuple[str, int, int]]:
        running = consumer()
        if running is None:
            return []
        out = []
        for tp in sorted(running.assignment()):
            end = running.highwater(tp)
            if end is None:
                continue  # nothing fetched from it yet
            position = await running.position(tp)
            out.append((tp.topic, tp.partition, max(0, end - position)))
        return out

    return read


class _LagCollector(Collector):
    def __init__(self) -> None:
        self.rows: list[tuple[str, int, int]] = []

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "sitewatch_consumer_lag_records",
            "Records in the partition not yet consumed (end offset minus position or commit)",
            labels=["topic", "partition"],
        )
        for topic, partition, lag in self.rows:
            family.add_metric([topic, str(partition)], lag)
        yield family


# -- the endpoint ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MetricsServer:
    """A running `/metrics` endpoint: its URL, and `close()` to stop it."""

    runner: web.AppRunner
    url: str

    async def close(self) -> None:
        await self.runner.cleanup()


async def start(
    conf: Settings,
    process: Process,
    collectors: Iterable[Collector] = (),
    lag: LagReader | None = None,
) -> MetricsServer | None:
    """Serve `/metrics` on `SITEWATCH_METRICS_LISTEN` (None when it is empty: off)."""
    address = conf.metrics_address
    if address is None:
        return None
    host, port = address
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    for collector in (*INSTRUMENTS[process], *collectors):
        registry.register(collector)
    lag_rows = _LagCollector()
    if lag is not None:
        registry.register(lag_rows)

    async def scrape(request: web.Request) -> web.Response:
        if lag is not None:
            try:
                lag_rows.rows = list(await asyncio.wait_for(lag(), LAG_TIMEOUT_S))
            except Exception as exc:  # a rebalance or a broker away: lag unknown, not fatal
                log.warning("consumer lag unavailable", error=repr(exc))
                lag_rows.rows = []
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(registry), headers={"Content-Type": content_type})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        # a setting that cannot work here: the CLI reports it like any bad setting
        raise SettingsError(
            f"SITEWATCH_METRICS_LISTEN: cannot serve on {conf.metrics_listen}: {exc}"
        ) from exc
    url = f"http://{conf.metrics_listen}/metrics"
    log.info("metrics served", process=process.value, url=url)
    return MetricsServer(runner, url)
