"""Keeps the Redis clip index in step with the clip topic, and rebuilds it when lost.

The consumer group's name carries the index's generation, a random id stored in
Redis. When Redis loses the index (the generation key with it) a new generation
is drawn: a new group, which reads the topic from its beginning and so rebuilds
every entry. That happens at start, and while running: a watch checks every few
seconds that the generation is still there (a Redis restarted empty under a
running service). Applying an event twice changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets

from privacam.clips.v1 import events_pb2 as events
from services.clip_ingest.adapters.events import record_from_ingested
from services.clip_ingest.adapters.index import RedisClipIndex
from services.clip_ingest.domain.service import ClipService
from services.common import topics
from services.common.clip_events import clip_deletions
from services.common.kafka import Delivery, EventConsumer, EventProducer
from services.common.settings import KafkaSettings

log = logging.getLogger("privacam.clip_ingest.index")


class IndexFollower:
    """A late component: starts the consumer once Redis says which generation it is."""

    def __init__(
        self,
        kafka: KafkaSettings,
        index: RedisClipIndex,
        clips: ClipService,
        producer: EventProducer,
        watch_seconds: float = 2.0,
    ) -> None:
        self._kafka = kafka
        self._index = index
        self._clips = clips
        self._producer = producer
        self._watch_seconds = watch_seconds
        self._consumer: EventConsumer[events.ClipEvent] | None = None
        self._generation = ""
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._follow()
        self._watch = asyncio.create_task(self._watch_generation(), name="clip index watch")

    async def _follow(self) -> None:
        generation = await self._index.generation(self._kafka.namespace, secrets.token_hex(8))
        # The index can be rebuilt, so a dead letter costs one clip's entry (listed after
        # its deletion, or not listed) until it is replayed. Every generation's dead
        # letters share one topic, and a replay reaches whichever generation follows then.
        consumer = EventConsumer(
            self._kafka,
            topics.CLIPS,
            f"clip_ingest.index.{generation}",
            self.on_event,
            producer=self._producer,
            dead_letter_group="clip_ingest.index",
        )
        await consumer.start()
        # Only a consumer that started counts: if Kafka is down now, the watch tries again.
        self._consumer, self._generation = consumer, generation

    async def _watch_generation(self) -> None:
        while True:
            await asyncio.sleep(self._watch_seconds)
            try:
                current = await self._index.generation(self._kafka.namespace, secrets.token_hex(8))
                if current == self._generation and self._consumer is not None:
                    continue
                log.warning("the clip index was lost from Redis: rebuilding it from Kafka")
                # The new generation's consumer starts before the old one is stopped: a
                # stop that hangs (Kafka dying mid-commit, seen in the worst-day suite)
                # must not hold the rebuild up. Both apply the same idempotent events.
                stale = self._consumer
                await self._follow()
                if stale is not None:
                    with contextlib.suppress(Exception):
                        await stale.stop()
            except asyncio.CancelledError:
                raise
            except Exception:  # Redis or Kafka down: the next round tries again
                log.warning("could not check or rebuild the clip index", exc_info=True)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()

    async def on_event(self, event: events.ClipEvent, delivery: Delivery) -> None:
        kind = event.WhichOneof("event")
        if kind == "clip_ingested":
            await self._clips.on_ingested(record_from_ingested(event.clip_ingested))
        elif gone := clip_deletions(event):  # one camera's clips, whichever form
            await self._clips.on_deleted(
                event.metadata.tenant_id, gone[0].device_id, [d.clip_id for d in gone]
            )
