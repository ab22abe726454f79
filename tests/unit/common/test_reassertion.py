"""The writer of a compacted topic re-asserts its state over forged records
(services.common.kafka.Reassertion), shown with ReplicatedMap, the state of device_auth,
access_log and retention, over an in-memory topic (tests.unit.kafka_fakes).

A forged record is skipped by every replica, but compaction keeps only the newest record
of a key: without the re-assertion a replica started after compaction loses the entry."""

from __future__ import annotations

import asyncio

import pytest

from services.common import topics
from services.common.metrics import STATE_RECORDS_REASSERTED
from services.common.replicated_map import ReplicatedMap
from services.common.settings import KafkaSettings
from tests.unit.kafka_fakes import PARTITIONS, FakeProducer, FakeTopic, follow

SETTINGS = KafkaSettings(bootstrap_servers="unused:9092", security_protocol="PLAINTEXT")
TOPIC = topics.IDENTITY_STATE


async def replica(topic: FakeTopic) -> ReplicatedMap:
    """A writer's replica of the map, started: the whole topic replayed."""
    entries = ReplicatedMap(SETTINGS, TOPIC, FakeProducer(topic))  # type: ignore[arg-type]
    await follow(entries._replica, topic)
    return entries


@pytest.fixture
def topic() -> FakeTopic:
    return FakeTopic()


def written(topic: FakeTopic) -> tuple[int, bytes]:
    """(partition, record key) of the one record written so far."""
    ((partition, key),) = [
        (p, key) for p, records in enumerate(topic.partitions) for key, _ in records
    ]
    return partition, key


def reasserted() -> float:
    return float(STATE_RECORDS_REASSERTED.labels(TOPIC.name, "ok")._value.get())


@pytest.mark.parametrize("forged_value", [None, b"forged"], ids=["tombstone", "value"])
async def test_the_writer_writes_an_entry_again_over_a_forged_record(
    topic: FakeTopic, forged_value: bytes | None
) -> None:
    entries = await replica(topic)
    assert await entries.create("account/a", b"v1", group="tenant-a")
    partition, key = written(topic)
    before = reasserted()

    topic.forge(partition, key, forged_value)
    erased = topic.compacted()  # what compaction would make of it without a re-assertion
    topic.forge(partition, key, None)  # forged again before the writer got to it
    await entries.catch_up()
    await entries._replica.wait_reasserted()

    assert topic.latest(partition, key) == (b"v1", True)  # newest: genuine, signed
    assert [value for k, value in topic.partitions[partition] if k == key] == [
        b"v1",
        forged_value,
        None,
        b"v1",  # once for both forgeries
    ]
    assert reasserted() == before + 1
    assert entries.get("account/a") == b"v1"
    # A writer's replica started before compaction replays the forgeries and the answer:
    # the newest record is genuine already, so it writes nothing.
    restarted = await replica(topic)
    await restarted._replica.wait_reasserted()
    assert len(topic.partitions[partition]) == 4
    await restarted.stop()
    # A replica started after compaction still has the entry; without it, it would not.
    assert (await replica(topic.compacted())).get("account/a") == b"v1"
    assert (await replica(erased)).get("account/a") is None
    await entries.stop()


async def test_forgeries_that_shadow_nothing_are_not_answered(topic: FakeTopic) -> None:
    entries = await replica(topic)
    assert await entries.create("account/a", b"v1", group="tenant-a")
    partition, key = written(topic)
    elsewhere = (partition + 1) % PARTITIONS
    topic.forge(elsewhere, key, None)  # another partition: no copy there to outlive a delete
    topic.forge(partition, f"account/b#{'0' * 16}".encode(), None)  # a key it never held
    await entries.delete("account/a", group="tenant-a")
    topic.forge(partition, key, None)  # a deleted entry stays deleted
    await entries.catch_up()
    await entries._replica.wait_reasserted()
    assert sorted(len(records) for records in topic.partitions) == [0, 1, 4]
    assert (await replica(topic.compacted())).get("account/a") is None
    await entries.stop()


@pytest.mark.parametrize("newer", [None, b"v2"], ids=["deleted", "updated"])
async def test_a_reassertion_never_undoes_a_newer_genuine_write(
    topic: FakeTopic, newer: bytes | None
) -> None:
    # Another replica of the writer deletes or updates the entry between the forgery and
    # this replica's re-assertion: the re-assertion must not bring back the older value.
    entries = await replica(topic)
    assert await entries.create("account/a", b"v1", group="tenant-a")
    partition, key = written(topic)
    producer = entries._producer
    assert isinstance(producer, FakeProducer)
    producer.hold = asyncio.Event()
    topic.forge(partition, key, None)
    await entries.catch_up()  # forgery seen, re-assertion waiting for the broker
    topic.append(partition, key, newer)  # the other replica's write
    await entries.catch_up()
    producer.hold.set()
    await entries._replica.wait_reasserted()

    assert topic.latest(partition, key) == (newer, True)
    assert [value for k, value in topic.partitions[partition] if k == key] == [
        b"v1",
        None,  # forged
        newer,
        b"v1",  # the re-assertion, already stale when it landed
        newer,  # so the newer write again
    ]
    assert entries.get("account/a") == newer
    assert (await replica(topic.compacted())).get("account/a") == newer
    await entries.stop()
