"""Clip retention and crypto-shredding: delete what is due, then destroy emptied key periods.

Every step is idempotent and the schedule entry is removed last, so a crash anywhere
repeats at most work whose effect is invisible (deleting an absent object) or
recognisable (a ClipDeleted with the same event id), and never loses a deletion.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from services.common.clock import Clock
from services.common.errors import PrivacamError
from services.retention.domain.model import (
    DeletionReason,
    PeriodCount,
    ScheduledClip,
    ShredReason,
    ShredRecord,
    VersionState,
)
from services.retention.domain.ports import (
    ClipEvents,
    KeyPeriods,
    ObjectStore,
    RetentionEvents,
    RetentionMetrics,
    Schedule,
    ShredLog,
)

log = logging.getLogger("privacam.retention.sweeper")


@dataclass
class SweepResult:
    clips_deleted: int = 0
    periods_destroyed: int = 0


class Sweeper:
    def __init__(
        self,
        schedule: Schedule,
        objects: ObjectStore,
        clip_events: ClipEvents,
        keys: KeyPeriods,
        shreds: ShredLog,
        events: RetentionEvents,
        metrics: RetentionMetrics,
        clock: Clock,
        *,
        batch_size: int,
        period_grace: timedelta,
        concurrency: int = 1,
    ) -> None:
        self._schedule = schedule
        self._objects = objects
        self._clip_events = clip_events
        self._keys = keys
        self._shreds = shreds
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._batch_size = batch_size
        self._concurrency = concurrency
        self._grace = period_grace

    async def sweep(self, heartbeat: Callable[[], Awaitable[object]] | None = None) -> SweepResult:
        """Delete every clip due now, then destroy the key periods left empty; `heartbeat`
        runs before each batch (the loop extends its lease there)."""
        started = self._clock.monotonic()
        now = self._clock.now()
        result = SweepResult()
        # Up to `concurrency` batches in flight, a new one starting as soon as one ends: MinIO
        # deletes some while Kafka takes the events of others. Each clip still goes object,
        # event, schedule, in that order.
        window_size = self._batch_size * self._concurrency * 4
        slots = asyncio.Semaphore(self._concurrency)

        async def one(batch: list[ScheduledClip]) -> int:
            async with slots:
                if heartbeat is not None:
                    await heartbeat()
                return await self.delete(batch, DeletionReason.RETENTION_EXPIRED)

        while window := await self._schedule.due(now, window_size):
            outcomes = await asyncio.gather(
                *(
                    one(window[i : i + self._batch_size])
                    for i in range(0, len(window), self._batch_size)
                ),
                return_exceptions=True,
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
                result.clips_deleted += outcome
            if len(window) < window_size:
                break
        result.periods_destroyed = await self.destroy_emptied_periods()
        waiting = await self._schedule.due(self._clock.now(), 1)
        oldest_lag = (self._clock.now() - waiting[0].due_at).total_seconds() if waiting else 0.0
        self._metrics.sweep_finished(self._clock.monotonic() - started, oldest_lag)
        return result

    async def delete(self, clips: list[ScheduledClip], reason: DeletionReason) -> int:
        """Objects first, then events, then the schedule: the entry stays until both are
        done, so a crash in between repeats them rather than forgetting the clip."""
        if not clips:
            return 0
        await self._objects.delete([clip.object_name for clip in clips])
        now = self._clock.now()
        await self._clip_events.clips_deleted(clips, reason, now)
        removed = await self._schedule.remove(clips)
        if reason is DeletionReason.RETENTION_EXPIRED:
            for clip in removed:
                self._metrics.deletion_lag(max(0.0, (now - clip.due_at).total_seconds()))
        self._metrics.clips_deleted(reason, len(removed))
        return len(removed)

    async def destroy_emptied_periods(self) -> int:
        destroyed = 0
        for count in await self._schedule.emptied_periods():
            try:
                if await self._destroy_if_over(count):
                    destroyed += 1
            except PrivacamError as error:
                # One tenant's period must not hold back the others': retried next sweep.
                log.warning("key period not destroyed yet (%s)", type(error).__name__)
        return destroyed

    async def _destroy_if_over(self, count: PeriodCount) -> bool:
        """Destroy a period whose clips are all gone, once no new clip can land in it."""
        info = await self._keys.version(count.period)
        now = self._clock.now()
        if info.state is VersionState.UNKNOWN:
            await self._schedule.forget_period(count.period)
            return False
        if info.state is VersionState.ACTIVE:
            return False  # still wrapping new clips' keys: wait for the rotation
        if info.state is VersionState.DECRYPT_ONLY:
            if info.period_end is None or now < info.period_end + self._grace:
                return False  # a clip keyed just before the rotation may still arrive
            info = await self._keys.destroy(count.period)
        record = ShredRecord(
            tenant_id=count.period.tenant_id,
            key_version=count.period.key_version,
            period_start=info.period_start or count.period_start,
            period_end=info.period_end,
            destroyed_at=info.destroyed_at or now,
            clips_covered=count.covered,
            reason=ShredReason.RETENTION_EXPIRED,
        )
        fresh = await self._shreds.record(record)
        if fresh:
            await self._events.key_period_expired(record, now)
            self._metrics.periods_destroyed(ShredReason.RETENTION_EXPIRED, 1)
        await self._schedule.forget_period(count.period)
        return fresh
