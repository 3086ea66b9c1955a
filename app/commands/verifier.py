"""`sitewatch verifier --name LOCATION`: answer verify requests from another location
(`sitewatch.probes.verifier`)."""

from __future__ import annotations

import argparse
import asyncio

import structlog

from sitewatch import metrics
from sitewatch.probes.checks import Checker
from sitewatch.probes.runner import supervise
from sitewatch.probes.verifier import STATS_METRICS, Verifier
from sitewatch.settings import Settings
from sitewatch.streams import broker
from sitewatch.streams.enums import Role
from sitewatch.streams.topics import Topic, TopicNames

from . import probing

#: the verifier's own logger: its start and stop lines keep the name they always had
log = structlog.get_logger("sitewatch.probes.verifier")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", required=True, help="this verifier's location name")
    parser.add_argument(
        "--max-age", type=float, default=300.0, help="ignore requests older than this (s)"
    )
    probing.add_check_arguments(parser)


def run(args: argparse.Namespace, conf: Settings) -> int:
    return probing.run_loop(_main(args, conf))


async def _main(args: argparse.Namespace, conf: Settings) -> int:
    topics = [Topic.VERIFY_REQUESTS, Topic.CHECK_RESULTS, Topic.SITES]
    ready = await probing.prepare(args, conf, log, topics)
    if ready is None:
        return 2
    conf = ready
    names = TopicNames(conf.topic_prefix)
    group = f"{conf.topic_prefix}verifier.{args.name}"
    stop = probing.stop_event()
    consumer = probing.group_consumer(args, conf, group)
    producer = probing.results_producer(conf)
    checker = Checker(probing.checker_config(args, conf, Role.VERIFIER))
    verifier = Verifier(
        conf, consumer, producer, checker, args.name, args.concurrency, args.max_age
    )
    served = await metrics.start(
        conf,
        metrics.Process.VERIFIER,
        [metrics.counts_stats(verifier.stats, STATS_METRICS)],
        metrics.consumer_lag(lambda: consumer),
    )
    # `sites` whole, group-less: every verifier of every location needs every site's headers
    sites_reader = broker.reader(conf.bootstrap_servers)
    consumer.subscribe([names.verify_requests])
    await producer.start()
    await consumer.start()
    await sites_reader.start()
    await checker.start()
    log.info("verifier started", name=args.name, group=group)
    tasks = [
        asyncio.create_task(verifier.consume(stop)),
        asyncio.create_task(verifier.book.run(sites_reader, names.sites, verifier, stop)),
    ]
    code = 1
    try:
        code = await supervise(tasks, stop, log, "verifier died")
    finally:
        await probing.shut_down([sites_reader, consumer], producer, checker, served)
        log.info("verifier stopped", name=args.name, **dict(verifier.stats))
    return code
