"""The publisher's background connect: retried with the back-off policy while the broker
is away (0.5 s doubling), each failed producer stopped, ready once one starts."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError

from sitewatch.api import publisher as pub
from sitewatch.streams.topics import TopicNames


class FakeProducer:
    def __init__(self, made: list[FakeProducer], **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.stopped = False
        made.append(self)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))

    info = warning


async def test_publisher_retries_until_the_broker_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[FakeProducer] = []
    failures = [KafkaConnectionError("away"), OSError("refused")]

    async def ensure_topics(*args: Any, **kwargs: Any) -> None:
        if failures:
            raise failures.pop(0)

    def producer(bootstrap: list[str], **kwargs: Any) -> FakeProducer:
        return FakeProducer(made, bootstrap=bootstrap, **kwargs)

    log = Log()
    monkeypatch.setattr(pub, "ensure_topics", ensure_topics)
    monkeypatch.setattr(pub.broker, "producer", producer)
    monkeypatch.setattr(pub, "log", log)

    publisher = pub.Publisher(["127.0.0.1:1"], TopicNames("t."), 1)
    publisher.start()
    assert await publisher.wait_ready(10)
    assert [p.stopped for p in made] == [True, True, False]
    assert made[-1].kwargs == {
        "bootstrap": ["127.0.0.1:1"],
        "acks": "all",
        "request_timeout_ms": 10_000,
    }
    retries = [kw for event, kw in log.events if event == "broker not reachable, retrying"]
    assert [kw["delay_s"] for kw in retries] == [0.5, 1.0]
    assert log.events[-1][0] == "publisher connected"
    await publisher.stop()


async def test_publisher_stop_cancels_a_connect_that_never_succeeds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def ensure_topics(*args: Any, **kwargs: Any) -> None:
        raise KafkaConnectionError("away")

    monkeypatch.setattr(pub, "ensure_topics", ensure_topics)
    monkeypatch.setattr(pub.broker, "producer", lambda b, **kw: FakeProducer([], **kw))
    monkeypatch.setattr(pub, "log", Log())
    publisher = pub.Publisher(["127.0.0.1:1"], TopicNames("t."), 1)
    publisher.start()
    assert not await publisher.wait_ready(0.1)
    await publisher.stop()
    assert not publisher.ready
