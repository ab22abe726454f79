"""The key manager's durable state: a compacted Kafka topic, materialized in memory.

Why Kafka and not a database: the platform already runs it with replication,
compaction gives exactly "latest record per key, tombstones remove", and every
replica rebuilds the same keyring by replaying it. Records are sealed under the
root key, so the topic (and its backups) hold nothing readable without it.

Every record of a tenant goes to one partition (crc32 of the tenant id), so
partition order settles races between replicas: the first proposal of a
version wins everywhere. A destroyed version's sealed records are tombstoned;
compaction removes them within `segment.ms + max.compaction.lag.ms` plus the
cleaner's back-off, and a periodic tick record makes the active segment roll
so that bound holds even when nothing else is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.timestamp_pb2 import Timestamp

from privacam.keys.v1 import state_pb2 as pb
from services.common.clock import Clock
from services.common.kafka import EventProducer, Topic
from services.common.settings import KafkaSettings
from services.key_manager.domain.keyring import Keyring, SealedKek

log = logging.getLogger("privacam.key_manager.state")


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _datetime(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def kek_key(tenant_id: str, version: int, proposal_id: str) -> bytes:
    return f"kek/{tenant_id}/{version}/{proposal_id}".encode()


def destroyed_key(tenant_id: str, version: int) -> bytes:
    return f"destroyed/{tenant_id}/{version}".encode()


class KafkaStateLog:
    """StateLog port over a compacted topic, and the component that materializes it."""

    def __init__(
        self,
        settings: KafkaSettings,
        topic: Topic[pb.KeyStateRecord],
        producer: EventProducer,
        keyring: Keyring,
        clock: Clock,
        segment_seconds: float,
    ) -> None:
        self._settings = settings
        self._topic = topic
        self._name = settings.namespace + topic.name
        self._producer = producer
        self._keyring = keyring
        self._clock = clock
        self._segment_seconds = segment_seconds
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._applied: dict[int, int] = {}  # partition -> next offset to apply
        self._progress = asyncio.Condition()
        # partition -> monotonic time of its last tombstone not yet followed by a tick
        self._dirty: dict[int, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.records_applied = 0

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Replay the whole topic before the service takes calls."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_servers.split(","),
            enable_auto_commit=False,
            isolation_level="read_committed",
            request_timeout_ms=self._settings.request_timeout_ms,
        )
        await consumer.start()
        count = await self._producer.partition_count(self._topic)
        self._partitions = [TopicPartition(self._name, p) for p in range(count)]
        consumer.assign(self._partitions)
        await consumer.seek_to_beginning(*self._partitions)
        for tp in self._partitions:
            self._applied[tp.partition] = await consumer.position(tp)
        self._consumer = consumer
        self._tasks = [
            asyncio.create_task(self._materialize(), name="materialize key state"),
            asyncio.create_task(self._tick(), name="roll key state segments"),
        ]
        await self.catch_up()
        log.info(
            "key state replayed",
            extra={"records": self.records_applied, "tenants": self._keyring.tenant_count()},
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    # --- reading --------------------------------------------------------------------

    async def _materialize(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=500)
            for tp, records in batches.items():
                for record in records:
                    self._apply(record.key or b"", record.value)
                    self.records_applied += 1
                self._applied[tp.partition] = records[-1].offset + 1
            # Positions advance past transaction markers too, so read them after each poll.
            for tp in self._partitions:
                self._applied[tp.partition] = max(
                    self._applied[tp.partition], await self._consumer.position(tp)
                )
            async with self._progress:
                self._progress.notify_all()

    def _apply(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            return  # a tombstone: its key's record was already applied and superseded
        record = pb.KeyStateRecord.FromString(value)
        kind = record.WhichOneof("record")
        if kind == "kek":
            kek = record.kek
            self._keyring.apply_kek(
                SealedKek(
                    tenant_id=kek.tenant_id,
                    version=kek.version,
                    period_start=_datetime(kek.period_start),
                    created_at=_datetime(kek.created_at),
                    proposal_id=kek.proposal_id,
                    root_key_id=kek.root_key_id,
                    sealed_key=kek.sealed_key,
                )
            )
        elif kind == "destroyed":
            gone = record.destroyed
            self._keyring.apply_destroyed(
                gone.tenant_id,
                gone.version,
                _datetime(gone.destroyed_at),
                _datetime(gone.period_start) if gone.HasField("period_start") else None,
            )

    async def _wait_applied(self, partition: int, offset: int) -> None:
        async with self._progress:
            await asyncio.wait_for(
                self._progress.wait_for(lambda: self._applied.get(partition, 0) > offset),
                timeout=30,
            )

    async def catch_up(self) -> None:
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(self._partitions)
        async with self._progress:
            await asyncio.wait_for(
                self._progress.wait_for(
                    lambda: all(self._applied[tp.partition] >= end for tp, end in ends.items())
                ),
                timeout=60,
            )

    # --- writing --------------------------------------------------------------------

    def _partition(self, tenant_id: str) -> int:
        return zlib.crc32(tenant_id.encode()) % len(self._partitions)

    async def _send(self, tenant_id: str, key: bytes, record: pb.KeyStateRecord | None) -> int:
        value = None if record is None else record.SerializeToString(deterministic=True)
        _, offset = await self._producer.send_raw(
            self._topic, key, value, partition=self._partition(tenant_id)
        )
        return offset

    async def propose(self, kek: SealedKek) -> None:
        record = pb.KeyStateRecord(
            kek=pb.SealedKek(
                tenant_id=kek.tenant_id,
                version=kek.version,
                period_start=_timestamp(kek.period_start),
                created_at=_timestamp(kek.created_at),
                proposal_id=kek.proposal_id,
                root_key_id=kek.root_key_id,
                sealed_key=kek.sealed_key,
            )
        )
        offset = await self._send(
            kek.tenant_id, kek_key(kek.tenant_id, kek.version, kek.proposal_id), record
        )
        await self._wait_applied(self._partition(kek.tenant_id), offset)

    async def discard(self, kek: SealedKek) -> None:
        await self._send(kek.tenant_id, kek_key(kek.tenant_id, kek.version, kek.proposal_id), None)
        self._dirty[self._partition(kek.tenant_id)] = time.monotonic()

    async def destroy(
        self,
        tenant_id: str,
        version: int,
        destroyed_at: datetime,
        period_start: datetime | None,
        proposal_ids: list[str],
    ) -> None:
        marker = pb.DestroyedVersion(
            tenant_id=tenant_id, version=version, destroyed_at=_timestamp(destroyed_at)
        )
        if period_start is not None:
            marker.period_start.CopyFrom(_timestamp(period_start))
        # The marker first: from here on, no replica can use or recreate the version.
        offset = await self._send(
            tenant_id, destroyed_key(tenant_id, version), pb.KeyStateRecord(destroyed=marker)
        )
        # Gone from live state at once, not when the consumer gets there.
        self._keyring.apply_destroyed(tenant_id, version, destroyed_at, period_start)
        for proposal_id in proposal_ids:
            await self._send(tenant_id, kek_key(tenant_id, version, proposal_id), None)
        self._dirty[self._partition(tenant_id)] = time.monotonic()
        await self._wait_applied(self._partition(tenant_id), offset)

    async def _tick(self) -> None:
        """One append to a partition `segment.ms` after its last tombstone rolls the segment
        holding the tombstone, so compaction can reach it."""
        while True:
            await asyncio.sleep(self._segment_seconds / 4)
            due = [
                (p, at)
                for p, at in self._dirty.items()
                if time.monotonic() - at > self._segment_seconds
            ]
            for partition, at in due:
                record = pb.KeyStateRecord(tick=pb.Tick(at=_timestamp(self._clock.now())))
                with contextlib.suppress(Exception):  # retried on the next round
                    await self._producer.send_raw(
                        self._topic,
                        f"tick/{partition}".encode(),
                        record.SerializeToString(),
                        partition=partition,
                    )
                    if self._dirty.get(partition) == at:  # no newer tombstone meanwhile
                        del self._dirty[partition]
