"""`sitewatch worker`: the Faust lifecycle agent (`sitewatch.streams.worker`) started on
its own event loop, once the broker's flavor and the topics are known."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

import faust
import structlog

from sitewatch import metrics
from sitewatch.settings import Settings
from sitewatch.streams.broker import resolve_flavor
from sitewatch.streams.kafka_admin import ensure_topics
from sitewatch.streams.topics import Topic, TopicNames
from sitewatch.streams.worker import Worker

#: the worker's own logger: its start-up events keep the name they always had
log = structlog.get_logger("sitewatch.streams.worker")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loglevel", default="warning", help="Faust's own log level")


def run(args: argparse.Namespace, conf: Settings) -> int:
    # Until Faust installs its own handlers, a stop request simply ends the process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    names = TopicNames(conf.topic_prefix)
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    conf = loop.run_until_complete(resolve_flavor(conf))
    counts = loop.run_until_complete(ensure_topics(conf.bootstrap_servers, names, conf.partitions))
    partitions = counts.get(names.name(Topic.CHECK_RESULTS), conf.partitions)
    if counts.get(names.sites, partitions) != partitions:
        log.error(
            "sites and check-results must have the same partition count",
            sites=counts.get(names.sites),
            check_results=partitions,
        )
        return 2
    (Path(conf.state_dir) / "worker").mkdir(parents=True, exist_ok=True)
    worker = Worker(conf, partitions)
    # on the worker's own loop, before Faust starts: scrapes read the processor in-loop
    loop.run_until_complete(
        metrics.start(
            conf,
            metrics.Process.WORKER,
            [metrics.worker_stats(worker.processor)],
            worker.input_lag(),
        )
    )
    # override_logging=False: sitewatch's structured logs (`sitewatch.cli` configured
    # them), not Faust's own format
    faust.Worker(
        worker.app,
        loglevel=args.loglevel,
        loop=loop,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    ).execute_from_commandline()
    return 0


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed: a cheaper loop for the worker's many small awaits."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
