"""A poison event steps aside, on the real broker: bounded retries, then the consumer group's
dead-letter topic, written under the group's own Kafka user (Kafka's authorizer lets it write
its own dead letters and nothing else); later events of the partition are applied; the
replay command puts the event back for that group alone. A store that is away is waited
for, never dead-lettered, and the stuck partition's lag grows meanwhile."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import TopicAuthorizationFailedError
from redis.exceptions import ConnectionError as RedisConnectionError

from privacam.identity.v1.events_pb2 import IdentityEvent
from privacam.types.v1.types_pb2 import EventMetadata
from services.common import deadletters, metrics, topics
from services.common.kafka import (
    DEAD_LETTER_ATTEMPTS_HEADER,
    DEAD_LETTER_ERROR_HEADER,
    DEAD_LETTER_GROUP_HEADER,
    DEAD_LETTER_OFFSET_HEADER,
    DEAD_LETTER_PARTITION_HEADER,
    DEAD_LETTER_TOPIC_HEADER,
    EVENT_TYPE_HEADER,
    Delivery,
    EventConsumer,
    EventProducer,
    Topic,
    client_options,
    dead_letter_topic_name,
    ensure_topics,
)
from services.common.settings import KafkaSettings
from tests.harness import (
    ADMIN,
    ROOT,
    cleanup_namespace,
    kafka_admin_login,
    kafka_options,
    kafka_settings,
    new_namespace,
)

ATTEMPTS = 3
RELAY_GROUP = "relay_broker.identity"


class PoisonError(Exception):
    """What the handler raises for the poison event (its message must not leave)."""


@pytest.fixture
def namespace(stack_env: dict[str, str]) -> Iterator[str]:
    name = new_namespace(stack_env, "deadletters")
    yield name
    cleanup_namespace(stack_env, name)


def _settings(stack: dict[str, str], principal: str, namespace: str) -> KafkaSettings:
    return kafka_settings(stack, principal, namespace).model_copy(
        update={
            "consumer_max_attempts": ATTEMPTS,
            "consumer_backoff_seconds": 0.05,
            "consumer_max_backoff_seconds": 0.2,
        }
    )


def _event(tenant: str) -> IdentityEvent:
    return IdentityEvent(metadata=EventMetadata(event_id=secrets.token_hex(8), tenant_id=tenant))


@dataclass
class Recorder:
    """A handler that remembers what it applied (event id, offset) and how often it was
    called per event; `fail(event_id)` says what to raise for an event, if anything."""

    fail: Callable[[str], Exception | None] = lambda event_id: None
    applied: list[tuple[str, int]] = field(default_factory=list)
    calls: dict[str, int] = field(default_factory=dict)

    async def __call__(self, event: IdentityEvent, delivery: Delivery) -> None:
        event_id = event.metadata.event_id
        self.calls[event_id] = self.calls.get(event_id, 0) + 1
        error = self.fail(event_id)
        if error is not None:
            raise error
        self.applied.append((event_id, delivery.offset))

    def ids(self) -> list[str]:
        return [event_id for event_id, _ in self.applied]


async def _until(check: Callable[[], bool | Awaitable[bool]], seconds: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        outcome = check()
        if outcome if isinstance(outcome, bool) else await outcome:
            return
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


@pytest.fixture
async def identity(stack_env: dict[str, str], namespace: str) -> AsyncIterator[EventProducer]:
    """The identity topic's writer (device_auth's own user)."""
    writer_settings = kafka_settings(stack_env, "device_auth", namespace)
    await ensure_topics(writer_settings, [topics.IDENTITY])
    writer = EventProducer(writer_settings, "test-identity-writer")
    await writer.start()
    yield writer
    await writer.stop()


async def _consumer(
    stack_env: dict[str, str], service: str, namespace: str, group: str, handler: Recorder
) -> tuple[EventConsumer[IdentityEvent], EventProducer]:
    settings = _settings(stack_env, service, namespace)
    producer = EventProducer(settings, f"test-{service}")
    await producer.start()
    consumer = EventConsumer(settings, topics.IDENTITY, group, handler, producer=producer)
    await consumer.start()  # makes its dead-letter topic, as the group's own user
    return consumer, producer


async def _committed(stack_env: dict[str, str], group: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(**kafka_options(stack_env))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items()}


def _admin_env(stack_env: dict[str, str], namespace: str) -> dict[str, str]:
    """The replay command's environment: the administrator's login (as for a restore)."""
    login = kafka_admin_login(stack_env)
    return {
        **os.environ,
        "PRIVACAM_KAFKA_BOOTSTRAP_SERVERS": login.bootstrap,
        "PRIVACAM_KAFKA_SECURITY_PROTOCOL": "SSL",
        "PRIVACAM_KAFKA_CA_FILE": str(login.ca_file),
        "PRIVACAM_KAFKA_CERT_FILE": str(login.cert_file),
        "PRIVACAM_KAFKA_KEY_FILE": str(login.key_file),
        "PRIVACAM_KAFKA_NAMESPACE": namespace,
    }


async def _command(stack_env: dict[str, str], namespace: str, *args: str) -> str:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.common.deadletters", *args],
        env=_admin_env(stack_env, namespace),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _metric(metric: object, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())  # type: ignore[attr-defined]


async def test_poison_event_dead_lettered(
    stack_env: dict[str, str], namespace: str, identity: EventProducer
) -> None:
    tenant = "t-" + secrets.token_hex(6)
    poison, *later = [_event(tenant) for _ in range(4)]
    poison_id = poison.metadata.event_id
    fixed = False

    def fails(event_id: str) -> Exception | None:
        if event_id == poison_id and not fixed:
            return PoisonError(f"cannot apply the event of {tenant}")
        return None

    relay = Recorder(fail=fails)
    access_log = Recorder()  # another group of the same topic: applies everything
    consumers = [
        await _consumer(stack_env, "relay_broker", namespace, RELAY_GROUP, relay),
        await _consumer(stack_env, "access_log", namespace, "access_log", access_log),
    ]
    relay_consumer = consumers[0][0]
    labels = (topics.IDENTITY.name, namespace + RELAY_GROUP)
    try:
        trace = ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
        own_headers = [(EVENT_TYPE_HEADER, b"privacam.identity.v1.IdentityEvent"), trace]
        value = topics.IDENTITY.encode(poison)
        partition, offset = await identity.send_raw(
            topics.IDENTITY, tenant.encode(), value, headers=own_headers
        )
        for event in later:
            await identity.publish(topics.IDENTITY, tenant, event)

        # Later events of its partition are applied; the poison event was tried ATTEMPTS
        # times and set aside; the group committed past all of them.
        await _until(lambda: relay.ids() == [e.metadata.event_id for e in later])
        assert relay.calls[poison_id] == ATTEMPTS
        await _until(lambda: len(access_log.applied) == 4)

        async def committed_past() -> bool:
            return (await _committed(stack_env, namespace + RELAY_GROUP)).get(partition) == (
                offset + 4
            )

        await _until(committed_past)
        assert _metric(metrics.KAFKA_DEAD_LETTERS, *labels) == 1
        # Lag is measured after every poll: nothing left behind.
        await _until(lambda: _metric(metrics.KAFKA_CONSUMER_LAG, *labels, str(partition)) == 0)

        # In the group's dead-letter topic: the event as it came, and where it came from.
        admin = kafka_settings(stack_env, ADMIN, namespace)
        [letter] = await deadletters.read(admin, RELAY_GROUP)
        assert (letter.key, letter.value, letter.partition) == (tenant.encode(), value, partition)
        assert letter.headers[:2] == own_headers
        assert dict(letter.headers[2:]) == {
            DEAD_LETTER_TOPIC_HEADER: topics.IDENTITY.name.encode(),
            DEAD_LETTER_PARTITION_HEADER: str(partition).encode(),
            DEAD_LETTER_OFFSET_HEADER: str(offset).encode(),
            DEAD_LETTER_GROUP_HEADER: RELAY_GROUP.encode(),
            DEAD_LETTER_ERROR_HEADER: f"{__name__}.PoisonError".encode(),
            DEAD_LETTER_ATTEMPTS_HEADER: str(ATTEMPTS).encode(),
        }
        assert tenant.encode() not in b"".join(v for _, v in letter.headers)  # no message
        listing = await _command(stack_env, namespace, "list")
        assert f"{RELAY_GROUP}: 1 kept, 1 not replayed" in listing

        # Fixed, and replayed: the relay group applies it, the access_log group (which
        # applied it the first time) skips it.
        fixed = True
        skipped = (topics.IDENTITY.name, namespace + "access_log", "replay_for_other_group")
        skipped_before = _metric(metrics.KAFKA_CONSUMED, *skipped)
        out = await _command(stack_env, namespace, "replay", "--group", RELAY_GROUP)
        assert "replayed 1 dead letter(s) of relay_broker.identity" in out
        await _until(lambda: poison_id in relay.ids())
        [(_, replayed_at)] = [a for a in relay.applied if a[0] == poison_id]
        assert replayed_at == offset + 4  # back on its partition, after the others
        await _until(lambda: _metric(metrics.KAFKA_CONSUMED, *skipped) == skipped_before + 1)
        assert access_log.calls[poison_id] == 1
        assert _metric(metrics.KAFKA_DEAD_LETTERS, *labels) == 1

        # Replayed once: a second replay has nothing to do, the listing says so.
        out = await _command(stack_env, namespace, "replay", "--group", RELAY_GROUP)
        assert "replayed 0 dead letter(s)" in out
        listing = await _command(stack_env, namespace, "list", "--group", RELAY_GROUP)
        assert f"from {topics.IDENTITY.name} {partition}:{offset}" in listing
        assert "(replayed)" in listing
        assert relay_consumer.dead_letters.name == dead_letter_topic_name(RELAY_GROUP)
    finally:
        for consumer, producer in consumers:
            await consumer.stop()
            await producer.stop()


async def test_a_store_away_is_waited_for_and_the_stuck_partition_shows_its_lag(
    stack_env: dict[str, str], namespace: str, identity: EventProducer
) -> None:
    tenant = "t-" + secrets.token_hex(6)
    first, *behind = [_event(tenant) for _ in range(6)]
    away = True

    def fails(event_id: str) -> Exception | None:
        if event_id == first.metadata.event_id and away:
            return RedisConnectionError("Redis is restarting")
        return None

    handler = Recorder(fail=fails)
    consumer, producer = await _consumer(stack_env, "relay_broker", namespace, RELAY_GROUP, handler)
    labels = (topics.IDENTITY.name, namespace + RELAY_GROUP)
    try:
        partition, _ = await identity.send_raw(
            topics.IDENTITY, tenant.encode(), topics.IDENTITY.encode(first)
        )
        for event in behind:
            await identity.publish(topics.IDENTITY, tenant, event)
        # Stuck far past the attempts, and the lag says so while it is.
        await _until(
            lambda: _metric(metrics.KAFKA_CONSUMER_LAG, *labels, str(partition)) >= len(behind)
        )
        await _until(lambda: handler.calls.get(first.metadata.event_id, 0) > 2 * ATTEMPTS)
        assert handler.applied == []
        # The store is back: everything is applied in order, nothing was dead-lettered.
        away = False
        await _until(lambda: len(handler.applied) == 1 + len(behind))
        assert handler.ids() == [e.metadata.event_id for e in (first, *behind)]
        await _until(lambda: _metric(metrics.KAFKA_CONSUMER_LAG, *labels, str(partition)) == 0)
        assert (
            await deadletters.read(kafka_settings(stack_env, ADMIN, namespace), RELAY_GROUP) == []
        )
    finally:
        await consumer.stop()
        await producer.stop()


async def _poll_for_30_seconds(reader: AIOKafkaConsumer) -> None:
    async with asyncio.timeout(30):
        while True:
            await reader.getmany(timeout_ms=500)


async def test_a_group_writes_only_its_own_dead_letters(
    stack_env: dict[str, str], namespace: str
) -> None:
    retention = kafka_settings(stack_env, "retention", namespace)
    others = Topic(dead_letter_topic_name("retention.schedule"), IdentityEvent)
    mine = Topic(dead_letter_topic_name(RELAY_GROUP), IdentityEvent)
    await ensure_topics(retention, [others])
    relay = kafka_settings(stack_env, "relay_broker", namespace)
    await ensure_topics(relay, [mine], {mine.name})  # its own: created, settings set again
    producer = EventProducer(relay, "test-relay")
    await producer.start()
    try:
        await producer.send_raw(mine, b"t-1", b"")
        with pytest.raises(TopicAuthorizationFailedError):
            await producer.send_raw(others, b"t-1", b"")
    finally:
        await producer.stop()
    # Not even its own may it read: replaying is the administrator's.
    reader = AIOKafkaConsumer(**client_options(relay), enable_auto_commit=False)
    await reader.start()
    try:
        reader.assign([TopicPartition(namespace + mine.name, 0)])
        await reader.seek_to_beginning()
        with pytest.raises(TopicAuthorizationFailedError):
            await _poll_for_30_seconds(reader)
    finally:
        await reader.stop()
