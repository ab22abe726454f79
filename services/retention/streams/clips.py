"""The clips topic feeds the schedule: ClipIngested schedules, ClipDeleted and ClipsDeleted
unschedule.

Applied by a consumer group (committed after the effect) and, when the Redis view is
missing, by a full replay of the topic from the beginning first. Both paths are
idempotent, so an event applied twice changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from privacam.clips.v1 import events_pb2
from privacam_core.timestamps import to_datetime
from services.common import topics
from services.common.clip_events import clip_deletions
from services.common.kafka import Delivery, EventProducer, client_options
from services.common.settings import KafkaSettings
from services.retention import NAME
from services.retention.adapters.schedule import RedisSchedule
from services.retention.domain.model import RetentionBounds, ScheduledClip

log = logging.getLogger("privacam.retention.clips")

_EPOCH = datetime.fromtimestamp(0, UTC)
_DELETIONS = ("clip_deleted", "clips_deleted")


class ClipFeed:
    def __init__(self, schedule: RedisSchedule, bounds: RetentionBounds) -> None:
        self._schedule = schedule
        self._bounds = bounds

    async def on_event(self, event: events_pb2.ClipEvent, delivery: Delivery) -> None:
        """The live feed. This service's own deletions are skipped: the sweep unschedules those
        clips itself right after publishing (or repeats them under the same event id)."""
        if event.metadata.producer == NAME and event.WhichOneof("event") in _DELETIONS:
            return
        await self.apply(event, delivery)

    async def apply(self, event: events_pb2.ClipEvent, delivery: Delivery) -> None:
        kind = event.WhichOneof("event")
        tenant = event.metadata.tenant_id
        if kind == "clip_ingested":
            ingested = event.clip_ingested
            tenant = ingested.tenant_id or tenant
            if not (tenant and ingested.device_id and ingested.clip_id and ingested.object_name):
                log.error("ClipIngested without ids skipped", extra={"offset": delivery.offset})
                return
            at = (
                to_datetime(ingested.ingested_at)
                if ingested.HasField("ingested_at")
                else to_datetime(event.metadata.occurred_at)
            )
            due = self._bounds.due_at(
                at,
                to_datetime(ingested.delete_after) if ingested.HasField("delete_after") else None,
                None,
            )
            await self._schedule.add(
                ScheduledClip(
                    tenant,
                    ingested.device_id,
                    ingested.clip_id,
                    ingested.object_name,
                    ingested.key_version,
                    due,
                ),
                to_datetime(ingested.key_period_start)
                if ingested.HasField("key_period_start")
                else None,
            )
        elif tenant and (gone := clip_deletions(event)):
            # Whoever deleted them (an owner through clip_ingest, or this service), the
            # entries go and a replayed ClipIngested cannot bring them back.
            await self._schedule.remove(
                [
                    ScheduledClip(tenant, d.device_id, d.clip_id, "", d.key_version, _EPOCH)
                    for d in gone
                ]
            )

    async def rebuild(self, settings: KafkaSettings, producer: EventProducer) -> int:
        """Replay the clips topic from its beginning up to now into the view, then mark it
        complete; returns how many events were applied."""
        name = settings.namespace + topics.CLIPS.name
        consumer = AIOKafkaConsumer(
            **client_options(settings),
            enable_auto_commit=False,
            isolation_level="read_committed",
            request_timeout_ms=settings.request_timeout_ms,
        )
        await consumer.start()
        applied = 0
        try:
            count = await producer.partition_count(topics.CLIPS)
            partitions = [TopicPartition(name, p) for p in range(count)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            ends = await consumer.end_offsets(partitions)
            remaining = {tp for tp, end in ends.items() if end > 0}
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=1000)
                for tp, records in batches.items():
                    for record in records:
                        if record.offset < ends[tp]:
                            event = topics.CLIPS.decode(record.value or b"")
                            delivery = Delivery(record.topic, record.partition, record.offset, "")
                            await self.apply(event, delivery)
                            applied += 1
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
                await asyncio.sleep(0)
        finally:
            await consumer.stop()
        await self._schedule.mark_complete()
        log.info("retention schedule rebuilt from the clips topic", extra={"events": applied})
        return applied
