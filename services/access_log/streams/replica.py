"""The access topic, applied to the in-memory logs, and the logs' segments in MinIO.

Every replica reads every partition of the access topic (no consumer group, like
services.common.kafka.TopicReplica) and applies the records in partition order, so all
replicas build the same trees. It starts from the stored segments and the checkpoint,
then replays Kafka from the checkpoint's offsets: the topic's retention only has to
cover the time between two checkpoints (plus any downtime), not the life of a log.

The fetch wait is a few milliseconds so that Append, which waits until this replica has
applied its own record, answers in milliseconds rather than after a 500 ms long poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from google.protobuf.message import DecodeError

from privacam.accesslog.v1 import events_pb2, log_pb2
from privacam.types.v1 import types_pb2
from privacam_core.timestamps import to_datetime, to_timestamp
from services.access_log.adapters import metrics
from services.access_log.adapters.segments import Checkpoint, SegmentStore
from services.access_log.domain.log import Access, LogBook, PrincipalRef
from services.common import metrics as common_metrics
from services.common import topics
from services.common.clock import Clock
from services.common.errors import Unavailable
from services.common.kafka import EventProducer, client_options
from services.common.settings import KafkaSettings

log = logging.getLogger("privacam.access_log.replica")

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
PRODUCER = "access_log"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InvalidRecord(ValueError):
    pass


def access_of(data: bytes) -> Access:
    """The facts the log indexes, from a record's bytes; InvalidRecord if it cannot be a
    log entry (records published straight to the topic are checked here, not by Append)."""
    try:
        record = log_pb2.AccessRecord.FromString(data)
    except DecodeError:
        raise InvalidRecord("undecodable") from None
    if not _ID.fullmatch(record.tenant_id) or not record.access_id:
        raise InvalidRecord("no tenant or access id")
    if not record.HasField("occurred_at"):
        raise InvalidRecord("no time")
    return Access(
        access_id=record.access_id,
        tenant_id=record.tenant_id,
        device_id=record.resource.device_id,
        occurred_at=to_datetime(record.occurred_at),
        principal=PrincipalRef(
            record.principal.kind, record.principal.tenant_id, record.principal.id
        ),
    )


class AccessReplica:
    """Applies the access topic to a LogBook and persists it as segments (a component)."""

    def __init__(
        self,
        settings: KafkaSettings,
        producer: EventProducer,
        book: LogBook,
        store: SegmentStore,
        segment_max_entries: int,
        segment_interval_seconds: float,
    ) -> None:
        self._settings = settings
        self._producer = producer
        self._book = book
        self._store = store
        self._max_entries = segment_max_entries
        self._interval = segment_interval_seconds
        self.name = settings.namespace + topics.ACCESS.name
        self._consumer: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._applied: dict[int, int] = {}
        self._progress = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._flush_now = asyncio.Event()
        self._deletions: set[str] = set()
        self._flush_lock = asyncio.Lock()

    # --- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        checkpoint = await self._store.read_checkpoint() or Checkpoint()
        self._book.deleted.update(checkpoint.deleted)
        self._book.endings.update(checkpoint.endings)
        for tenant_id, records in (await self._store.load_all()).items():
            if tenant_id in self._book.deleted:
                self._deletions.add(tenant_id)  # a deletion that did not finish
                continue
            self._book.restore(tenant_id, list(self._parsed(tenant_id, records)))
        consumer = AIOKafkaConsumer(
            **client_options(self._settings),
            enable_auto_commit=False,
            isolation_level="read_committed",
            request_timeout_ms=self._settings.request_timeout_ms,
            fetch_max_wait_ms=5,
        )
        await consumer.start()
        count = await self._producer.partition_count(topics.ACCESS)
        self._partitions = [TopicPartition(self.name, p) for p in range(count)]
        consumer.assign(self._partitions)
        beginnings = await consumer.beginning_offsets(self._partitions)
        for tp in self._partitions:
            wanted = checkpoint.offsets.get(tp.partition, 0)
            if wanted < beginnings[tp]:
                # Kafka dropped records the segments do not hold: they are lost, and the
                # owners' consistency checks will say so. Retention must exceed the
                # checkpoint interval plus downtime.
                log.error(
                    "access topic retention passed the checkpoint; records were lost",
                    extra={"partition": tp.partition},
                )
                wanted = beginnings[tp]
            consumer.seek(tp, wanted)
            self._applied[tp.partition] = wanted
        self._consumer = consumer
        self._tasks = [
            asyncio.create_task(self._follow(), name="access log replica"),
            asyncio.create_task(self._persist_loop(), name="access log segments"),
        ]
        await self.catch_up()
        metrics.TENANTS.set(len(self._book))
        log.info("access logs loaded", extra={"tenants": len(self._book)})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
            # What was applied is written before the process ends, so a restart replays
            # little; if this fails, Kafka still holds it.
            with contextlib.suppress(Exception):
                await self.flush()

    def _parsed(self, tenant_id: str, records: list[bytes]) -> Iterable[tuple[bytes, Access]]:
        for data in records:
            try:
                access = access_of(data)
            except InvalidRecord:
                metrics.LOAD_ERRORS.inc()
                access = None
            if access is None or access.tenant_id != tenant_id:
                # Kept as a leaf: dropping it would hide the tampering from the owner.
                access = Access("", tenant_id, "", _EPOCH, PrincipalRef(0, "", ""))
            yield data, access

    # --- applying ---------------------------------------------------------------------

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=1000)
            for tp, records in batches.items():
                for record in records:
                    self._apply(record.key or b"", record.value or b"")
                self._applied[tp.partition] = records[-1].offset + 1
            lag = 0
            for tp in self._partitions:
                position = await self._consumer.position(tp)
                self._applied[tp.partition] = max(self._applied[tp.partition], position)
                end = self._consumer.highwater(tp)
                lag += max(0, (end or 0) - self._applied[tp.partition])
            metrics.CONSUMER_LAG.set(lag)
            async with self._progress:
                self._progress.notify_all()

    def _apply(self, key: bytes, value: bytes) -> None:
        try:
            event = topics.ACCESS.decode(value)
        except DecodeError:
            metrics.ENTRIES_APPLIED.labels("invalid").inc()
            return
        kind = event.WhichOneof("event")
        if kind == "log_deleted":
            tenant_id = event.metadata.tenant_id
            if _ID.fullmatch(tenant_id) and tenant_id == key.decode(errors="replace"):
                # The time of the deletion is the event's, so every replica states the
                # same end of the log.
                at = (
                    to_datetime(event.metadata.occurred_at)
                    if event.metadata.HasField("occurred_at")
                    else _EPOCH
                )
                self._book.delete(tenant_id, at)
                self._deletions.add(tenant_id)
                self._flush_now.set()
                metrics.TENANTS.set(len(self._book))
            return
        if kind != "access_recorded":
            return  # notifications for the household, not log entries
        data = event.access_recorded.record.SerializeToString(deterministic=True)
        try:
            access = access_of(data)
        except InvalidRecord:
            metrics.ENTRIES_APPLIED.labels("invalid").inc()
            return
        if access.tenant_id != key.decode(errors="replace"):
            metrics.ENTRIES_APPLIED.labels("invalid").inc()  # off its tenant's partition
            return
        if access.tenant_id in self._book.deleted:
            metrics.ENTRIES_APPLIED.labels("deleted_log").inc()
            return
        new_tenant = self._book.get(access.tenant_id) is None
        index = self._book.apply(data, access)
        if index is None:
            metrics.ENTRIES_APPLIED.labels("duplicate").inc()
            return
        metrics.ENTRIES_APPLIED.labels("appended").inc()
        metrics.UNPERSISTED_ENTRIES.inc()
        if new_tenant:
            metrics.TENANTS.set(len(self._book))
        tenant = self._book.get(access.tenant_id)
        if tenant is not None and tenant.size - tenant.persisted >= self._max_entries:
            self._flush_now.set()

    async def wait_applied(self, partition: int, offset: int) -> None:
        """Return once the record at ``offset`` of ``partition`` is applied (callers bound
        the wait with asyncio.timeout)."""
        async with self._progress:
            await self._progress.wait_for(lambda: self._applied.get(partition, 0) > offset)

    async def catch_up(self) -> None:
        """Return once every record written before the call is applied."""
        assert self._consumer is not None
        ends = await self._consumer.end_offsets(self._partitions)
        async with asyncio.timeout(300), self._progress:
            await self._progress.wait_for(
                lambda: all(self._applied[tp.partition] >= end for tp, end in ends.items())
            )

    # --- persisting -------------------------------------------------------------------

    async def _persist_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), timeout=self._interval)
            self._flush_now.clear()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("writing log segments failed; retrying at the next interval")

    async def flush(self) -> None:
        """Write every tenant's new entries as segments, erase deleted tenants' segments,
        then move the checkpoint past what is stored."""
        async with self._flush_lock:
            # A consistent snapshot: nothing is applied between these lines (no await).
            offsets = dict(self._applied)
            deletions = set(self._deletions)
            pending = []
            for tenant in self._book.tenants():
                first, end = tenant.pending()
                if end > first:
                    pending.append((tenant, first, end, tenant.records[first:end]))
            for tenant_id in deletions:
                await self._store.delete_tenant(tenant_id)
            for tenant, first, end, records in pending:
                await self._store.write_segment(tenant.tenant_id, first, records)
                tenant.persisted = max(tenant.persisted, end)
                metrics.UNPERSISTED_ENTRIES.dec(end - first)
            if pending or deletions or offsets:
                await self._store.write_checkpoint(
                    Checkpoint(offsets, set(self._book.deleted), dict(self._book.endings))
                )
            self._deletions -= deletions


class KafkaJournal:
    """Appends through the access topic and waits until this replica applied them."""

    def __init__(
        self, producer: EventProducer, replica: AccessReplica, clock: Clock, timeout: float
    ) -> None:
        self._producer = producer
        self._replica = replica
        self._clock = clock
        self._timeout = timeout

    def _metadata(self, tenant_id: str) -> types_pb2.EventMetadata:
        return types_pb2.EventMetadata(
            event_id=str(uuid.uuid4()),
            occurred_at=to_timestamp(self._clock.now()),
            tenant_id=tenant_id,
            producer=PRODUCER,
        )

    async def _send_and_wait(self, tenant_id: str, event: events_pb2.AccessEvent) -> None:
        try:
            partition, offset = await self._producer.send_raw(
                topics.ACCESS, tenant_id.encode(), topics.ACCESS.encode(event)
            )
        except Exception:
            common_metrics.KAFKA_PRODUCED.labels(topics.ACCESS.name, "error").inc()
            raise
        common_metrics.KAFKA_PRODUCED.labels(topics.ACCESS.name, "ok").inc()
        try:
            async with asyncio.timeout(self._timeout):
                await self._replica.wait_applied(partition, offset)
        except TimeoutError:
            raise Unavailable("the access log is behind; try again") from None

    async def record(self, record: log_pb2.AccessRecord) -> None:
        event = events_pb2.AccessEvent(
            metadata=self._metadata(record.tenant_id),
            access_recorded=events_pb2.AccessRecorded(record=record),
        )
        await self._send_and_wait(record.tenant_id, event)

    async def delete_log(self, tenant_id: str, cancellation_id: str) -> None:
        event = events_pb2.AccessEvent(
            metadata=self._metadata(tenant_id),
            log_deleted=events_pb2.LogDeleted(cancellation_id=cancellation_id),
        )
        await self._send_and_wait(tenant_id, event)

    async def notify(self, tenant_id: str, event: events_pb2.AccessEvent) -> None:
        event.metadata.CopyFrom(self._metadata(tenant_id))
        key = tenant_id or event.metadata.event_id
        await self._producer.publish(topics.ACCESS, key, event)
