"""`sitewatch probe`: check the sites this process owns and publish what it saw
(`sitewatch.probes.probe`)."""

from __future__ import annotations

import argparse
import asyncio

import structlog

from sitewatch import metrics
from sitewatch.probes.checks import Checker
from sitewatch.probes.names import default_name
from sitewatch.probes.probe import STATS_METRICS, Probe
from sitewatch.probes.runner import supervise
from sitewatch.probes.schedule import SiteTable
from sitewatch.settings import Settings
from sitewatch.streams.enums import Role
from sitewatch.streams.topics import Topic, TopicNames

from . import probing

#: the probe's own logger: its start and stop lines keep the name they always had
log = structlog.get_logger("sitewatch.probes.probe")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default=default_name(), help="probe name (hostname)")
    parser.add_argument("--jitter", type=float, default=0.1, help="interval jitter, fraction")
    parser.add_argument(
        "--max-initial-delay",
        type=float,
        default=10.0,
        help="first check of a newly owned site within this many seconds (spreads bursts)",
    )
    probing.add_check_arguments(parser)


def run(args: argparse.Namespace, conf: Settings) -> int:
    return probing.run_loop(_main(args, conf))


async def _main(args: argparse.Namespace, conf: Settings) -> int:
    ready = await probing.prepare(args, conf, log, [Topic.SITES, Topic.CHECK_RESULTS])
    if ready is None:
        return 2
    conf = ready
    names = TopicNames(conf.topic_prefix)
    stop = probing.stop_event()
    group = f"{conf.topic_prefix}probes"
    consumer = probing.group_consumer(args, conf, group)
    producer = probing.results_producer(conf)
    checker = Checker(probing.checker_config(args, conf, Role.PRIMARY))
    table = SiteTable(args.jitter, args.max_initial_delay)
    probe = Probe(conf, consumer, producer, checker, args.name, args.concurrency, table)
    owned = metrics.Stat(
        "sitewatch_probe_owned_sites",
        "Sites of the partitions this probe owns",
        lambda: float(len(table)),
        gauge=True,
    )
    served = await metrics.start(
        conf,
        metrics.Process.PROBE,
        [metrics.counts_stats(probe.stats, STATS_METRICS), metrics.StatsCollector([owned])],
        metrics.consumer_lag(lambda: consumer),
    )
    consumer.subscribe([names.sites], listener=probe.rebalance_listener())
    await producer.start()
    await consumer.start()
    await checker.start()
    log.info("probe started", name=args.name, group=group)
    tasks = [
        asyncio.create_task(probe.consume(stop)),
        asyncio.create_task(probe.schedule(stop)),
        asyncio.create_task(probe.report(stop)),
    ]
    code = 1
    try:
        code = await supervise(tasks, stop, log, "probe task died")
    finally:
        await probe.drain()
        # leave the group now: the others take over at once
        await probing.shut_down([consumer], producer, checker, served)
        log.info("probe stopped", name=args.name, **dict(probe.stats))
    return code
