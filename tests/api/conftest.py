"""One live API for the module's tests (MariaDB + Apache Kafka); see tests/api/live.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from scripts.apache_kafka import KafkaNode

from .live import LiveApi, live_api


@pytest.fixture(scope="module")
async def api(
    broker: KafkaNode, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[LiveApi]:
    async with live_api(broker.bootstrap, tmp_path_factory.mktemp("api")) as running:
        yield running
