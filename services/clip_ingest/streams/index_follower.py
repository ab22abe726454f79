"""Keeps the Redis clip index in step with the clip topic, and rebuilds it when lost.

The consumer group's name carries the index's generation, a random id stored in
Redis. When Redis loses the index (the generation key with it), the next start
draws a new generation: a new group, which reads the topic from its beginning
and so rebuilds every entry. Applying an event twice changes nothing.
"""

from __future__ import annotations

import secrets

from privacam.clips.v1 import events_pb2 as events
from services.clip_ingest.adapters.events import record_from_ingested
from services.clip_ingest.adapters.index import RedisClipIndex
from services.clip_ingest.domain.service import ClipService
from services.common import topics
from services.common.kafka import Delivery, EventConsumer
from services.common.settings import KafkaSettings


class IndexFollower:
    """A late component: starts the consumer once Redis says which generation it is."""

    def __init__(self, kafka: KafkaSettings, index: RedisClipIndex, clips: ClipService) -> None:
        self._kafka = kafka
        self._index = index
        self._clips = clips
        self._consumer: EventConsumer[events.ClipEvent] | None = None

    async def start(self) -> None:
        generation = await self._index.generation(self._kafka.namespace, secrets.token_hex(8))
        self._consumer = EventConsumer(
            self._kafka, topics.CLIPS, f"clip_ingest.index.{generation}", self.on_event
        )
        await self._consumer.start()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def on_event(self, event: events.ClipEvent, delivery: Delivery) -> None:
        kind = event.WhichOneof("event")
        if kind == "clip_ingested":
            await self._clips.on_ingested(record_from_ingested(event.clip_ingested))
        elif kind == "clip_deleted":
            deleted = event.clip_deleted
            await self._clips.on_deleted(
                event.metadata.tenant_id, deleted.device_id, deleted.clip_id
            )
