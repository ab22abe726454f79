"""An in-memory compacted topic for unit tests of its writers and replicas.

FakeTopic holds each partition's records in order; FakeProducer appends to it. A record
written with `forge` stands for one its topic's writer did not sign (a broker or Kafka's
super user past the ACLs). `follow` runs a real TopicReplica over the fake topic, with a
verifier that refuses exactly the forged records, and `compacted` is what Kafka's
compaction leaves of the topic for a replica started later.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from services.common.kafka import TopicReplica

PARTITIONS = 3
_SIGNED = [("fake-signature", b"")]

Record = tuple[bytes, bytes | None]


class FakeTopic:
    def __init__(self) -> None:
        self.partitions: list[list[Record]] = [[] for _ in range(PARTITIONS)]
        self.forged: set[tuple[int, int]] = set()  # (partition, offset)

    def append(self, partition: int, key: bytes, value: bytes | None) -> int:
        """A record signed by the topic's writer (another of its replicas, say)."""
        self.partitions[partition].append((key, value))
        return len(self.partitions[partition]) - 1

    def forge(self, partition: int, key: bytes, value: bytes | None) -> int:
        offset = self.append(partition, key, value)
        self.forged.add((partition, offset))
        return offset

    def latest(self, partition: int, key: bytes) -> tuple[bytes | None, bool]:
        """The newest record of `key` on `partition` (what compaction keeps): its value
        and whether its writer signed it."""
        records = self.partitions[partition]
        offset = max(o for o, (k, _) in enumerate(records) if k == key)
        return records[offset][1], (partition, offset) not in self.forged

    def compacted(self) -> FakeTopic:
        """The topic once compaction has run and dropped the tombstones: the newest record
        of each key only, signed or not (Kafka does not look at signatures)."""
        after = FakeTopic()
        for partition, records in enumerate(self.partitions):
            newest = {key: offset for offset, (key, _) in enumerate(records)}
            for offset, (key, value) in enumerate(records):
                if newest[key] == offset and value is not None:
                    if (partition, offset) in self.forged:
                        after.forge(partition, key, value)
                    else:
                        after.append(partition, key, value)
        return after


class FakeProducer:
    def __init__(self, topic: FakeTopic) -> None:
        self.topic = topic
        self.signing = None
        self.hold: asyncio.Event | None = None
        """While set to an unset Event, sends wait for it (a slow broker round trip)."""

    async def send_raw(
        self, topic: Any, key: bytes, value: bytes | None, partition: int | None = None
    ) -> tuple[int, int]:
        assert partition is not None
        if self.hold is not None:
            await self.hold.wait()
        offset = self.topic.append(partition, key, value)
        await asyncio.sleep(0)  # the broker's round trip: another replica may write meanwhile
        return partition, offset


class FakeVerifier:
    """Accepts what FakeProducer wrote, refuses what was forged."""

    def __init__(self) -> None:
        self.rejected = 0

    def accepts(
        self, topic: str, key: bytes, value: bytes | None, headers: Sequence[tuple[str, bytes]]
    ) -> bool:
        if list(headers) == _SIGNED:
            return True
        self.rejected += 1
        return False


class FakeConsumer:
    """What TopicReplica._follow and catch_up ask of AIOKafkaConsumer."""

    def __init__(self, topic: FakeTopic, name: str) -> None:
        self.topic = topic
        self.name = name
        self.positions = [0] * PARTITIONS

    async def getmany(
        self, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for partition, records in enumerate(self.topic.partitions):
            start = self.positions[partition]
            if start < len(records):
                batches[TopicPartition(self.name, partition)] = [
                    self._record(partition, offset, key, value)
                    for offset, (key, value) in enumerate(records[start:], start)
                ]
                self.positions[partition] = len(records)
        await asyncio.sleep(0 if batches else 0.001)
        return batches

    def _record(
        self, partition: int, offset: int, key: bytes, value: bytes | None
    ) -> ConsumerRecord[bytes, bytes]:
        headers = [] if (partition, offset) in self.topic.forged else _SIGNED
        return ConsumerRecord(
            self.name, partition, offset, 0, 0, key, value, None, len(key), 0, headers
        )

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[int(tp.partition)]

    async def end_offsets(self, tps: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.topic.partitions[tp.partition]) for tp in tps}

    async def stop(self) -> None:
        pass


async def follow(replica: TopicReplica, topic: FakeTopic) -> FakeVerifier:
    """What TopicReplica.start does with Kafka, over the fake topic: replay, then follow."""
    verifier = FakeVerifier()
    replica._verifier = verifier  # type: ignore[assignment]
    replica._consumer = FakeConsumer(topic, replica.name)
    replica.partitions = [TopicPartition(replica.name, p) for p in range(PARTITIONS)]
    replica._applied = dict.fromkeys(range(PARTITIONS), 0)
    replica._task = asyncio.create_task(replica._follow())
    await replica.catch_up()
    return verifier
