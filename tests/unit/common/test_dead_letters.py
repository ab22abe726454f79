"""Bounded retries and dead letters of services.common.kafka.EventConsumer, over fakes of
the Kafka consumer and producer: the back-off, which failures count toward the attempts,
what a dead letter carries, that the partition goes on past it, and lag while stuck.
(tests/integration/test_dead_letters.py shows it against the real broker.)"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import (
    KafkaConnectionError,
    NotEnoughReplicasError,
    TopicAuthorizationFailedError,
)
from minio.error import S3Error
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError

from privacam.diagnostics.v1.events_pb2 import DiagnosticsEvent, ProbeSent
from services.common import metrics
from services.common.diagnostics import DIAGNOSTICS_TOPIC
from services.common.errors import Unavailable
from services.common.kafka import (
    DEAD_LETTER_ATTEMPTS_HEADER,
    DEAD_LETTER_ERROR_HEADER,
    DEAD_LETTER_GROUP_HEADER,
    DEAD_LETTER_OFFSET_HEADER,
    DEAD_LETTER_PARTITION_HEADER,
    DEAD_LETTER_TOPIC_HEADER,
    EVENT_TYPE_HEADER,
    REPLAYED_FOR_HEADER,
    Delivery,
    EventConsumer,
    Failure,
    RetryPolicy,
    classify,
    error_class,
)
from services.common.settings import KafkaSettings

TOPIC = DIAGNOSTICS_TOPIC
GROUP = "device_auth.diagnostics"
SETTINGS = KafkaSettings(
    bootstrap_servers="unused:9092",
    security_protocol="PLAINTEXT",
    consumer_max_attempts=3,
    consumer_backoff_seconds=0.5,
    consumer_max_backoff_seconds=4,
)


# --- the policy ---------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_maximum_with_jitter_between_half_and_all() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_seconds=0.5, max_backoff_seconds=4)
    assert [policy.delay(n, jitter=1.0) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]
    assert [policy.delay(n, jitter=0.0) for n in range(1, 5)] == [0.25, 0.5, 1, 2]
    assert all(0.25 <= policy.delay(1) <= 0.5 for _ in range(200))
    assert policy.delay(10**6, jitter=1.0) == 4  # a store away for days: no overflow


def test_only_the_handlers_own_failures_lead_to_a_dead_letter() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert not policy.gives_up(Failure.HANDLER, 2)
    assert policy.gives_up(Failure.HANDLER, 3)
    assert not policy.gives_up(Failure.UNREACHABLE, 1000)
    assert not policy.gives_up(Failure.REFUSED, 1000)


def test_settings_give_the_policy_with_sane_defaults() -> None:
    assert RetryPolicy.of(SETTINGS) == RetryPolicy(3, 0.5, 4)
    defaults = KafkaSettings(bootstrap_servers="unused:9092", security_protocol="PLAINTEXT")
    policy = RetryPolicy.of(defaults)
    assert policy == RetryPolicy(6, 1.0, 30.0)
    # An event that always fails is dead-lettered after the back-offs between its attempts.
    worst = sum(policy.delay(n, jitter=1.0) for n in range(1, policy.max_attempts))
    assert 15 <= worst <= 60


def _rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), "x", None)


def _s3(code: str) -> S3Error:
    return S3Error(None, code, "message", "/bucket/object", "request", "host")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (RedisConnectionError("redis down"), Failure.UNREACHABLE),
        (KafkaConnectionError(), Failure.UNREACHABLE),
        (NotEnoughReplicasError(), Failure.UNREACHABLE),  # Kafka says: retriable
        (Unavailable("the access log is behind; try again"), Failure.UNREACHABLE),
        (ConnectionResetError(), Failure.UNREACHABLE),
        (TimeoutError(), Failure.UNREACHABLE),
        (_rpc_error(grpc.StatusCode.UNAVAILABLE), Failure.UNREACHABLE),
        (_s3("SlowDown"), Failure.UNREACHABLE),
        (NoPermissionError("NOPERM no permissions to run the 'del' command"), Failure.REFUSED),
        (TopicAuthorizationFailedError(), Failure.REFUSED),
        (_s3("AccessDenied"), Failure.REFUSED),
        (ValueError("bad event"), Failure.HANDLER),
        (KeyError("x"), Failure.HANDLER),
        (ResponseError("WRONGTYPE"), Failure.HANDLER),
        (_s3("NoSuchKey"), Failure.HANDLER),
        (_rpc_error(grpc.StatusCode.INVALID_ARGUMENT), Failure.HANDLER),
    ],
)
def test_failures_are_classified(error: BaseException, failure: Failure) -> None:
    assert classify(error) is failure


def test_an_explicit_cause_is_classified_too() -> None:
    error = RuntimeError("could not apply")
    error.__cause__ = RedisConnectionError("down")  # raise ... from
    assert classify(error) is Failure.UNREACHABLE


def test_the_error_is_named_by_its_class_never_its_message() -> None:
    assert error_class(KeyError("t-secret-tenant")) == "KeyError"
    assert error_class(ResponseError("value of t-1")) == "redis.exceptions.ResponseError"


# --- the consumer, over fakes -------------------------------------------------------------


class FakeProducer:
    def __init__(self, fail_first: int = 0) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail_first = fail_first

    async def send_raw(self, topic: Any, key: bytes, value: bytes | None, **options: Any) -> Any:
        if self.fail_first:
            self.fail_first -= 1
            raise KafkaConnectionError()
        self.sent.append({"topic": topic.name, "key": key, "value": value, **options})
        return options["partition"], len(self.sent) - 1


class FakeKafka:
    """What EventConsumer._run asks of AIOKafkaConsumer: one batch, then nothing."""

    def __init__(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        self.batches = batches
        self.commits: list[dict[TopicPartition, int]] = []
        self.committed = asyncio.Event()
        self.ends = {tp: records[-1].offset + 1 for tp, records in batches.items()}
        self.positions = {tp: 0 for tp in batches}

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        batches, self.batches = self.batches, {}
        for tp, records in batches.items():
            self.positions[tp] = records[-1].offset + 1
        await asyncio.sleep(0 if batches else 0.005)
        return batches

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(offsets)
        self.committed.set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    def highwater(self, tp: TopicPartition) -> int:
        return int(self.ends[tp])

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends[tp] for tp in tps}


def _event(probe: str) -> bytes:
    return TOPIC.encode(DiagnosticsEvent(probe_sent=ProbeSent(probe_id=probe)))


def _record(
    offset: int, value: bytes, headers: list[tuple[str, bytes]] | None = None, partition: int = 1
) -> ConsumerRecord[bytes, bytes]:
    headers = headers if headers is not None else [(EVENT_TYPE_HEADER, b"privacam.Diagnostics")]
    return ConsumerRecord(
        "ns." + TOPIC.name, partition, offset, 0, 0, b"t-1", value, None, 3, len(value), headers
    )


Handler = Callable[[DiagnosticsEvent, Delivery], Any]


def _consumer(
    handler: Handler, producer: FakeProducer | None = None
) -> tuple[EventConsumer[DiagnosticsEvent], list[float]]:
    consumer = EventConsumer(
        SETTINGS,
        TOPIC,
        GROUP,
        handler,
        producer=producer or FakeProducer(),  # type: ignore[arg-type]
    )
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    consumer._sleep = sleep
    consumer._consumer = FakeKafka({})
    return consumer, slept


def _count(metric: Any, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())


def _headers(sent: dict[str, Any]) -> dict[str, bytes]:
    return dict(sent["headers"])


async def test_an_event_that_always_fails_is_dead_lettered_after_the_attempts() -> None:
    calls: list[str] = []

    async def handler(event: DiagnosticsEvent, delivery: Delivery) -> None:
        calls.append(event.probe_sent.probe_id)
        raise KeyError("t-secret-tenant")  # a message that must not leave

    producer = FakeProducer()
    consumer, slept = _consumer(handler, producer)
    labels = (TOPIC.name, consumer.group_id)
    dead_before = _count(metrics.KAFKA_DEAD_LETTERS, *labels)
    retries_before = _count(metrics.KAFKA_CONSUMED, *labels, "retry")
    trace = ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    record = _record(7, _event("poison"), [(EVENT_TYPE_HEADER, b"x"), trace])

    await consumer._apply(record)

    assert calls == ["poison"] * 3
    assert len(slept) == 2
    assert 0.25 <= slept[0] <= 0.5
    assert 0.5 <= slept[1] <= 1
    [sent] = producer.sent
    assert sent["topic"] == "privacam.deadletter.device_auth.diagnostics.v1"
    assert (sent["key"], sent["value"], sent["partition"]) == (b"t-1", record.value, 1)
    assert sent["headers"][:2] == [(EVENT_TYPE_HEADER, b"x"), trace]  # its own, as they came
    assert _headers(sent) == {
        EVENT_TYPE_HEADER: b"x",
        "traceparent": trace[1],
        DEAD_LETTER_TOPIC_HEADER: TOPIC.name.encode(),
        DEAD_LETTER_PARTITION_HEADER: b"1",
        DEAD_LETTER_OFFSET_HEADER: b"7",
        DEAD_LETTER_GROUP_HEADER: GROUP.encode(),
        DEAD_LETTER_ERROR_HEADER: b"KeyError",
        DEAD_LETTER_ATTEMPTS_HEADER: b"3",
    }
    assert b"secret" not in b"".join(value for _, value in sent["headers"])
    assert _count(metrics.KAFKA_DEAD_LETTERS, *labels) == dead_before + 1
    assert _count(metrics.KAFKA_CONSUMED, *labels, "retry") == retries_before + 2


async def test_an_unreachable_store_is_waited_for_never_dead_lettered() -> None:
    failures = [RedisConnectionError("down")] * 8 + [Unavailable("behind")] * 2

    async def handler(event: DiagnosticsEvent, delivery: Delivery) -> None:
        if failures:
            raise failures.pop(0)

    producer = FakeProducer()
    consumer, slept = _consumer(handler, producer)
    await consumer._apply(_record(0, _event("p")))
    assert producer.sent == []
    assert failures == []
    assert len(slept) == 10  # far past the 3 attempts
    assert max(slept) <= 4  # at most the maximum back-off


async def test_a_refused_user_is_retried_until_its_grant_is_back() -> None:
    failures = 5

    async def handler(event: DiagnosticsEvent, delivery: Delivery) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise NoPermissionError("NOPERM this user has no permissions to run the 'set' command")

    producer = FakeProducer()
    consumer, _ = _consumer(handler, producer)
    before = _count(metrics.STORE_REFUSALS, "redis")
    await consumer._apply(_record(0, _event("p")))
    assert producer.sent == []
    assert failures == 0
    assert _count(metrics.STORE_REFUSALS, "redis") == before + 5


async def test_store_failures_do_not_count_toward_the_attempts() -> None:
    failures: list[Exception] = [ValueError(), RedisConnectionError(), ValueError()] * 2

    async def handler(event: DiagnosticsEvent, delivery: Delivery) -> None:
        raise failures.pop(0)

    producer = FakeProducer()
    consumer, _ = _consumer(handler, producer)
    await consumer._apply(_record(0, _event("p")))
    # Dead-lettered at the third ValueError, the fourth attempt.
    assert _headers(producer.sent[0])[DEAD_LETTER_ATTEMPTS_HEADER] == b"4"
    assert _headers(producer.sent[0])[DEAD_LETTER_ERROR_HEADER] == b"ValueError"


async def test_a_dead_letter_is_written_even_if_kafka_refuses_it_for_a_while() -> None:
    async def handler(event: DiagnosticsEvent, delivery: Delivery) -> None:
        raise ValueError

    producer = FakeProducer(fail_first=4)
    consumer, slept = _consumer(handler, producer)
    await consumer._apply(_record(0, _event("p")))
    assert len(producer.sent) == 1
    assert len(slept) == 2 + 4


async def test_an_undecodable_event_is_dead_lettered_at_once() -> None:
    calls = 0

    async def handler(event: DiagnosticsEvent, delivery: Delivery) -> None:
        nonlocal calls
        calls += 1

    producer = FakeProducer()
    consumer, slept = _consumer(handler, producer)
    await consumer._apply(_record(3, b"\xff\xff\xff"))
    assert calls == 0
    assert slept == []
    headers = _headers(producer.sent[0])
    assert headers[DEAD_LETTER_ERROR_HEADER] == b"google.protobuf.message.DecodeError"
    assert headers[DEAD_LETTER_ATTEMPTS_HEADER] == b"1"


async def test_a_replay_is_applied_by_its_group_alone() -> None:
    seen: list[str] = []

    async def handler(event: DiagnosticsEvent, delivery: Delivery) -> None:
        seen.append(event.probe_sent.probe_id)

    consumer, _ = _consumer(handler)
    await consumer._apply(_record(0, _event("mine"), [(REPLAYED_FOR_HEADER, GROUP.encode())]))
    await consumer._apply(_record(1, _event("other"), [(REPLAYED_FOR_HEADER, b"access_log")]))
    assert seen == ["mine"]


async def test_a_replay_that_fails_again_is_a_new_dead_letter_with_fresh_headers() -> None:
    async def handler(event: DiagnosticsEvent, delivery: Delivery) -> None:
        raise ValueError

    producer = FakeProducer()
    consumer, _ = _consumer(handler, producer)
    old = [
        (EVENT_TYPE_HEADER, b"x"),
        (DEAD_LETTER_OFFSET_HEADER, b"1"),  # a copy's leftovers are not carried over
        (REPLAYED_FOR_HEADER, GROUP.encode()),
    ]
    await consumer._apply(_record(40, _event("p"), old))
    names = [name for name, _ in producer.sent[0]["headers"]]
    assert len(names) == len(set(names))
    assert _headers(producer.sent[0])[DEAD_LETTER_OFFSET_HEADER] == b"40"


async def test_the_partition_goes_on_past_a_dead_letter_and_commits_past_it() -> None:
    applied: list[str] = []

    async def handler(event: DiagnosticsEvent, delivery: Delivery) -> None:
        if event.probe_sent.probe_id == "poison":
            raise ValueError
        applied.append(event.probe_sent.probe_id)

    producer = FakeProducer()
    consumer, _ = _consumer(handler, producer)
    tp = TopicPartition("ns." + TOPIC.name, 1)
    kafka = FakeKafka(
        {
            tp: [
                _record(0, _event("before")),
                _record(1, _event("poison")),
                _record(2, _event("after")),
            ]
        }
    )
    consumer._consumer = kafka
    task = asyncio.create_task(consumer._run())
    try:
        await asyncio.wait_for(kafka.committed.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert applied == ["before", "after"]
    assert kafka.commits == [{tp: 3}]
    assert len(producer.sent) == 1
    lag = metrics.KAFKA_CONSUMER_LAG.labels(TOPIC.name, consumer.group_id, "1")
    assert lag._value.get() == 0


async def test_a_stuck_partition_reports_its_growing_lag_while_retrying() -> None:
    tp = TopicPartition("ns." + TOPIC.name, 4)
    kafka = FakeKafka({tp: [_record(0, _event("x"), partition=4)]})
    kafka.ends[tp] = 3
    lags: list[float] = []
    consumer: EventConsumer[DiagnosticsEvent]

    async def handler(event: DiagnosticsEvent, delivery: Delivery) -> None:
        lags.append(
            metrics.KAFKA_CONSUMER_LAG.labels(TOPIC.name, consumer.group_id, "4")._value.get()
        )
        if len(lags) < 4:
            kafka.ends[tp] += 10  # events keep arriving behind the stuck one
            raise RedisConnectionError("down")

    consumer, _ = _consumer(handler)
    consumer._consumer = kafka
    await consumer._apply(_record(2, _event("x"), partition=4))
    # No poll while it is retried: the end is asked of the brokers before each retry.
    assert lags == [0, 11, 21, 31]


async def test_a_stopped_consumer_drops_its_lag_series() -> None:
    async def handler(event: DiagnosticsEvent, delivery: Delivery) -> None:
        pass

    consumer, _ = _consumer(handler)
    tp = TopicPartition("ns." + TOPIC.name, 2)
    consumer._set_lag(tp, 5)

    def lags() -> list[float]:
        return [
            s.value
            for s in next(iter(metrics.KAFKA_CONSUMER_LAG.collect())).samples
            if s.labels["group"] == consumer.group_id and s.labels["partition"] == "2"
        ]

    class Stoppable(FakeKafka):
        async def stop(self) -> None:
            pass

    assert lags() == [5]  # the series is there to be dropped
    consumer._consumer = Stoppable({})
    await consumer.stop()
    assert lags() == []
