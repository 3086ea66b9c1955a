"""What the `probe` and `verifier` commands share: their check and consumer-group
options, the checker and Kafka clients those configure, and the process start-up
(the event loop, the stop on a signal, the name check)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, Final, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from structlog.typing import FilteringBoundLogger

from sitewatch.metrics import MetricsServer
from sitewatch.probes.checks import Checker, CheckerConfig, parse_nameserver
from sitewatch.probes.names import NAME_RULE, valid_name
from sitewatch.settings import Settings
from sitewatch.streams import broker
from sitewatch.streams.enums import Role
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import Topic, TopicNames

T = TypeVar("T")

#: read through `sitewatch.settings` (validated there); named here for the help texts
EXTRA_CA_ENV: Final = "SITEWATCH_PROBE_EXTRA_CA"
NAMESERVERS_ENV: Final = "SITEWATCH_PROBE_NAMESERVERS"


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency", type=int, default=256, help="checks in flight at most (default 256)"
    )
    parser.add_argument(
        "--extra-ca",
        default=None,
        help=f"PEM file of an extra CA to trust (default: {EXTRA_CA_ENV})",
    )
    parser.add_argument(
        "--nameserver",
        action="append",
        default=None,
        help=f"host[:port] for dns checks, repeatable (env {NAMESERVERS_ENV}; "
        "default /etc/resolv.conf)",
    )
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=None,
        help="consumer group session timeout (default 6000 on Tansu, else 10000)",
    )
    parser.add_argument(
        "--heartbeat-ms",
        type=int,
        default=None,
        help="consumer heartbeat interval (default 1000 on Tansu, else 3000)",
    )


async def prepare(
    args: argparse.Namespace, conf: Settings, log: FilteringBoundLogger, topics: list[Topic]
) -> Settings | None:
    """`conf` with the broker flavor resolved, once `--name` is checked and `topics`
    exist; None when the name breaks the rule (logged; the command exits 2)."""
    if not valid_name(args.name):
        log.error(NAME_RULE, name=args.name[:100])
        return None
    conf = await broker.resolve_flavor(conf)
    names = TopicNames(conf.topic_prefix)
    await ensure_topics(conf.bootstrap_servers, names, conf.partitions, topics=topics)
    return conf


async def shut_down(
    consumers: list[AIOKafkaConsumer],
    producer: AIOKafkaProducer,
    checker: Checker,
    served: MetricsServer | None,
) -> None:
    """Stop the clients in this order: the consumers first, so the group rebalances now."""
    for consumer in consumers:
        await consumer.stop()
    await producer.stop()
    await checker.close()
    if served is not None:
        await served.close()


def checker_config(args: argparse.Namespace, conf: Settings, role: Role) -> CheckerConfig:
    names: list[str] = list(args.nameserver or conf.nameserver_list)
    extra_ca = args.extra_ca or (str(conf.probe_extra_ca) if conf.probe_extra_ca else None)
    return CheckerConfig(
        allow_private=conf.probe_allow_private,
        extra_ca_file=extra_ca,
        nameservers=tuple(parse_nameserver(n) for n in names),
        role=role,
    )


def group_consumer(args: argparse.Namespace, conf: Settings, group_id: str) -> AIOKafkaConsumer:
    """The consumer-group member, with the command's group timeouts."""
    return broker.group_consumer(
        conf, group_id, session_ms=args.session_timeout_ms, heartbeat_ms=args.heartbeat_ms
    )


def results_producer(conf: Settings) -> AIOKafkaProducer:
    """The producer of results and dead letters: every write acknowledged by all."""
    return broker.producer(conf.bootstrap_servers, acks="all", linger_ms=5)


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop when it is installed (a third less CPU per check here)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def stop_event() -> asyncio.Event:
    """Set on SIGTERM/SIGINT, so the process leaves its group and flushes cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
