"""Which broker we talk to, and the Kafka clients that follow from it.

One detection for every process that talks to Kafka: with `SITEWATCH_BROKER_FLAVOR=auto`
(the default) the broker's cluster id decides. The bundled Tansu broker answers
`tansu_cluster`; anything else is treated as Apache Kafka. The flavor in force is logged.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError

from sitewatch.settings import BrokerFlavor, Settings

log = structlog.get_logger(__name__)

#: the cluster id Tansu reports in its metadata (docs/contract.md, broker facts)
TANSU_CLUSTER_ID = "tansu_cluster"


async def connect_admin(
    bootstrap: list[str] | str, connect_timeout_s: float = 30.0
) -> AIOKafkaAdminClient:
    """A started admin client; waits up to `connect_timeout_s` for the broker to answer."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    deadline = asyncio.get_running_loop().time() + connect_timeout_s
    while True:
        try:
            await admin.start()
            return admin
        except KafkaConnectionError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("broker not reachable yet, retrying", bootstrap=bootstrap)
            await asyncio.sleep(1.0)


def flavor_of_cluster(cluster_id: str | None) -> BrokerFlavor:
    return BrokerFlavor.TANSU if cluster_id == TANSU_CLUSTER_ID else BrokerFlavor.KAFKA


async def detect_flavor(bootstrap: list[str] | str, connect_timeout_s: float = 30.0) -> str | None:
    """The broker's cluster id (None when it reports none)."""
    admin = await connect_admin(bootstrap, connect_timeout_s)
    try:
        cluster = await admin.describe_cluster()
    finally:
        await admin.close()
    cluster_id = cluster.get("cluster_id")
    return str(cluster_id) if cluster_id is not None else None


async def resolve_flavor(conf: Settings, connect_timeout_s: float = 30.0) -> Settings:
    """`conf` with `broker_flavor` resolved (AUTO asks the broker); logs the one in force."""
    if conf.broker_flavor is not BrokerFlavor.AUTO:
        log.info("broker flavor", flavor=conf.broker_flavor.value, detected=False)
        return conf
    cluster_id = await detect_flavor(conf.bootstrap_servers, connect_timeout_s)
    flavor = flavor_of_cluster(cluster_id)
    log.info("broker flavor", flavor=flavor.value, detected=True, cluster_id=cluster_id)
    return conf.model_copy(update={"broker_flavor": flavor})


def group_timeouts(
    conf: Settings, session_ms: int | None = None, heartbeat_ms: int | None = None
) -> dict[str, int]:
    """Consumer-group timeouts for `AIOKafkaConsumer(**...)`.

    Tansu admits a member only after half the session timeout (docs/contract.md): keep it short
    there; on Apache Kafka a 10 s session notices a dead member soon enough.
    """
    session = session_ms or (6000 if conf.is_tansu else 10_000)
    heartbeat = heartbeat_ms or max(300, min(3000, session // 6))
    return {"session_timeout_ms": session, "heartbeat_interval_ms": heartbeat}


# -- the Kafka clients: every process builds its consumers and producers here ---------------


def group_consumer(
    conf: Settings,
    group_id: str,
    *topics: str,
    session_ms: int | None = None,
    heartbeat_ms: int | None = None,
    **kwargs: Any,
) -> AIOKafkaConsumer:
    """A consumer-group member that commits (or stores) its offsets itself, from the
    earliest record when the group has none, with the broker's group timeouts."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=conf.bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **group_timeouts(conf, session_ms, heartbeat_ms),
        **kwargs,
    )


def reader(bootstrap: list[str] | str, **kwargs: Any) -> AIOKafkaConsumer:
    """A group-less consumer (assign and seek): an out-of-range answer restarts at the
    earliest record, so it never skips history."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **kwargs,
    )


def producer(bootstrap: list[str] | str, **kwargs: Any) -> AIOKafkaProducer:
    """A producer. Never idempotent: idempotent producers do not work against Tansu."""
    return AIOKafkaProducer(bootstrap_servers=bootstrap, **kwargs)
