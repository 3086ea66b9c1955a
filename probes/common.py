"""What the probe and the verifier share: options, Kafka clients, results, shutdown."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import socket
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from sitewatch.settings import Settings
from sitewatch.streams import records, timefmt
from sitewatch.streams.broker import group_timeouts
from sitewatch.streams.enums import Role

from .checks import CheckerConfig, CheckSpec, Observation, parse_nameserver

T = TypeVar("T")
MAX_DETAIL = 2048

#: read through `sitewatch.settings` (validated there); named here for the help texts
EXTRA_CA_ENV = "SITEWATCH_PROBE_EXTRA_CA"
NAMESERVERS_ENV = "SITEWATCH_PROBE_NAMESERVERS"
#: probe and verifier names end up in `probe`, `source` (`verifier:<name>`) and metadata
NAME_RULE = f"a probe or verifier name is 1 to {records.MAX_NAME} letters, digits, '.', '_' or '-'"
_NAME = re.compile(rf"[A-Za-z0-9_.\-]{{1,{records.MAX_NAME}}}")


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def deadletter_error(exc: BaseException) -> str:
    """The error a dead letter carries: the validator's own words, else the exception."""
    text = str(exc)
    if isinstance(exc, ValueError) and text:  # msgspec's errors are ValueErrors too
        return text
    return f"{type(exc).__name__}: {text}"


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
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


def checker_config(args: argparse.Namespace, conf: Settings, role: Role) -> CheckerConfig:
    names: list[str] = list(args.nameserver or conf.nameserver_list)
    extra_ca = args.extra_ca or (str(conf.probe_extra_ca) if conf.probe_extra_ca else None)
    return CheckerConfig(
        allow_private=conf.probe_allow_private,
        extra_ca_file=extra_ca,
        nameservers=tuple(parse_nameserver(n) for n in names),
        role=role,
    )


def default_name() -> str:
    name = socket.gethostname()[: records.MAX_NAME]
    return name if valid_name(name) else "probe"


def consumer(
    args: argparse.Namespace, conf: Settings, group_id: str, **kwargs: Any
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=conf.bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **group_timeouts(conf, args.session_timeout_ms, args.heartbeat_ms),
        **kwargs,
    )


def producer(conf: Settings) -> AIOKafkaProducer:
    # acks=all, no idempotence: idempotent producers do not work against Tansu
    return AIOKafkaProducer(bootstrap_servers=conf.bootstrap_servers, acks="all", linger_ms=5)


def to_result(
    spec: CheckSpec,
    obs: Observation,
    *,
    role: Role,
    probe: str,
    observed_at_ms: int,
    request_id: str | None = None,
) -> records.CheckResult:
    return records.CheckResult(
        result_id=str(uuid.uuid4()),
        site_id=spec.site_id,
        endpoint_id=spec.endpoint_id,
        check_type=obs.check_type,
        role=role,
        probe=probe,
        request_id=request_id,
        ok=obs.ok,
        observed_at=timefmt.from_ms(observed_at_ms),
        http_status=obs.http_status,
        error=obs.error,
        timings_ms=obs.timings,
        tls_not_after=None
        if obs.tls_not_after is None
        else timefmt.from_datetime(obs.tls_not_after),
        # a redirect target or an error text can be long; the wire holds 2048
        detail=None if obs.detail is None else obs.detail[:MAX_DETAIL],
        error_cause=None if obs.error_cause is None else obs.error_cause.value,
    )


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
