"""A producer whose sender stopped for good (a broker restarted without its sequence state)
is replaced, once, by the first call that sees it; the next call goes through."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import grpc
import pytest
from aiokafka.errors import OutOfOrderSequenceNumber

from privacam.diagnostics.v1.events_pb2 import DiagnosticsEvent, ProbeSent
from services.common import kafka, metrics
from services.common.errors import status_for
from services.common.settings import KafkaSettings

TOPIC = kafka.Topic("privacam.test.v1", DiagnosticsEvent)


class BrokenThenFine:
    """Stands in for AIOKafkaProducer: the first one made fails every send as aiokafka's
    does once its sender died; later ones deliver."""

    made: ClassVar[list[BrokenThenFine]] = []

    def __init__(self, **options: Any) -> None:
        self.broken = not BrokenThenFine.made
        self.sent = 0
        self.stopped = False
        BrokenThenFine.made.append(self)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped = True

    async def send_and_wait(self, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)
        if self.broken:
            raise OutOfOrderSequenceNumber()
        self.sent += 1
        return None


async def test_a_lost_producer_is_renewed_once_and_the_retry_goes_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    BrokenThenFine.made = []
    monkeypatch.setattr(kafka, "AIOKafkaProducer", BrokenThenFine)
    settings = KafkaSettings(bootstrap_servers="unused:9092", security_protocol="PLAINTEXT")
    producer = kafka.EventProducer(settings, "test")
    await producer.start()
    renewed = metrics.KAFKA_PRODUCERS_RENEWED._value.get()
    event = DiagnosticsEvent(probe_sent=ProbeSent(probe_id="p"))
    failures = await asyncio.gather(
        *(producer.publish(TOPIC, "k", event) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(f, OutOfOrderSequenceNumber) for f in failures)
    assert isinstance(failures[0], BaseException)
    assert status_for(failures[0])[0] is grpc.StatusCode.UNAVAILABLE  # the caller retries
    assert len(BrokenThenFine.made) == 2  # five calls saw it; one renewed it
    assert BrokenThenFine.made[0].stopped
    assert metrics.KAFKA_PRODUCERS_RENEWED._value.get() == renewed + 1
    await producer.publish(TOPIC, "k", event)
    assert BrokenThenFine.made[1].sent == 1
