"""The sweeper's loop: one replica at a time (a Redis lease), every sweep interval."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from google.protobuf.duration_pb2 import Duration

from privacam.retention.v1 import events_pb2 as pb
from privacam.types.v1 import types_pb2
from privacam_core.timestamps import to_timestamp
from services.common.clock import Clock
from services.common.kafka import EventProducer
from services.common.settings import KafkaSettings
from services.retention import NAME
from services.retention.adapters.events import KafkaRetentionEvents
from services.retention.adapters.lease import RedisLease
from services.retention.adapters.schedule import RedisSchedule
from services.retention.domain.sweeper import Sweeper
from services.retention.streams.clips import ClipFeed

log = logging.getLogger("privacam.retention.sweep")


class SweepLoop:
    def __init__(
        self,
        sweeper: Sweeper,
        schedule: RedisSchedule,
        feed: ClipFeed,
        lease: RedisLease,
        events: KafkaRetentionEvents,
        kafka: KafkaSettings,
        producer: EventProducer,
        clock: Clock,
        *,
        interval_seconds: float,
        after_sweep: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._after = after_sweep
        self._sweeper = sweeper
        self._schedule = schedule
        self._feed = feed
        self._events = events
        self._kafka = kafka
        self._producer = producer
        self._clock = clock
        self._interval = interval_seconds
        self._lease = lease
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Rebuild a missing view before the consumers and the API start."""
        await self.ensure_view()
        self._task = asyncio.create_task(self._run(), name="retention sweep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._lease.release()

    async def ensure_view(self) -> None:
        if not await self._schedule.is_complete():
            await self._feed.rebuild(self._kafka, self._producer)

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed; retrying at the next interval")
            await asyncio.sleep(self._interval)

    async def sweep_once(self) -> bool:
        """One sweep if this replica holds the lease; False if another replica does."""
        if not await self._lease.try_acquire():
            return False
        try:
            await self.ensure_view()
            result = await self._sweeper.sweep(self._lease.extend)
            if self._after is not None:
                await self._after()
        finally:
            await self._lease.release()
        if result.clips_deleted or result.periods_destroyed:
            log.info(
                "sweep done",
                extra={"clips": result.clips_deleted, "periods": result.periods_destroyed},
            )
            now = self._clock.now()
            waiting = await self._schedule.due(now, 1)
            lag = Duration()
            if waiting:
                lag.FromTimedelta(now - waiting[0].due_at)
            await self._events.publish(
                "",
                pb.RetentionEvent(
                    metadata=types_pb2.EventMetadata(
                        event_id=str(uuid.uuid4()),
                        occurred_at=to_timestamp(now),
                        producer=NAME,
                    ),
                    retention_sweep_progress=pb.RetentionSweepProgress(
                        sweep_id=str(uuid.uuid4()),
                        due_before=to_timestamp(now),
                        clips_deleted=result.clips_deleted,
                        clips_remaining=len(waiting),
                        periods_destroyed=result.periods_destroyed,
                        max_lag=lag,
                    ),
                ),
            )
        return True
