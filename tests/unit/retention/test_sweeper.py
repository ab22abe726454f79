"""The sweeper on an injected clock: on time and not before, idempotent after a crash,
key periods destroyed only once they are over and empty."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common.clock import FakeClock
from services.retention.domain.model import (
    DeletionReason,
    KeyVersionInfo,
    PeriodRef,
    RetentionBounds,
    ScheduledClip,
    ShredReason,
    VersionState,
)
from services.retention.domain.sweeper import Sweeper
from tests.unit.retention.fakes import (
    CountingMetrics,
    FakeKeys,
    MemoryObjects,
    MemorySchedule,
    MemoryShreds,
    RecordedEvents,
)

START = datetime(2026, 3, 1, tzinfo=UTC)
WEEK = timedelta(days=7)


class World:
    def __init__(
        self, batch_size: int = 2, grace: timedelta = timedelta(hours=1), concurrency: int = 1
    ) -> None:
        self.clock = FakeClock(START)
        self.schedule = MemorySchedule()
        self.objects = MemoryObjects()
        self.events = RecordedEvents()
        self.keys = FakeKeys()
        self.shreds = MemoryShreds()
        self.metrics = CountingMetrics()
        self.sweeper = Sweeper(
            self.schedule,
            self.objects,
            self.events,
            self.keys,
            self.shreds,
            self.events,
            self.metrics,
            self.clock,
            batch_size=batch_size,
            period_grace=grace,
            concurrency=concurrency,
        )

    async def ingest(self, n: int, version: int = 1, tenant: str = "t1") -> list[ScheduledClip]:
        clips = []
        for i in range(n):
            name = f"t/{tenant}/cam/c{version}-{i}"
            clip = ScheduledClip(
                tenant, "cam", f"c{version}-{i}", name, version, self.clock.now() + WEEK
            )
            self.objects.names.add(name)
            assert await self.schedule.add(clip, START)
            clips.append(clip)
        return clips


async def test_clips_go_at_their_due_time_and_not_before() -> None:
    world = World()
    clips = await world.ingest(5)
    world.clock.advance(WEEK - timedelta(seconds=1))
    assert (await world.sweeper.sweep()).clips_deleted == 0
    assert len(world.objects.names) == 5
    world.clock.advance(timedelta(seconds=1))
    result = await world.sweeper.sweep()
    assert result.clips_deleted == 5
    assert world.objects.names == set()
    assert sorted(m for m, _, _ in world.events.deleted) == sorted(c.member for c in clips)
    assert {r for _, r, _ in world.events.deleted} == {DeletionReason.RETENTION_EXPIRED}
    assert world.metrics.deleted == {DeletionReason.RETENTION_EXPIRED: 5}
    assert world.metrics.lags == [0.0] * 5
    assert world.objects.delete_calls == 3  # batches of 2


async def test_batches_run_side_by_side_and_every_clip_goes_once() -> None:
    world = World(batch_size=2, concurrency=3)
    await world.ingest(7)
    world.clock.advance(WEEK)
    assert (await world.sweeper.sweep()).clips_deleted == 7
    assert world.objects.names == set()
    assert world.objects.delete_calls == 4
    assert len(world.events.deleted) == 7


async def test_a_crash_before_the_schedule_update_repeats_the_same_events_only() -> None:
    world = World(batch_size=10)
    await world.ingest(3)
    world.clock.advance(WEEK)
    world.events.fail_publish = True
    with pytest.raises(RuntimeError):
        await world.sweeper.sweep()
    # Objects already gone, nothing announced, nothing unscheduled: the next sweep redoes it.
    assert world.objects.names == set()
    assert len(await world.schedule.due(world.clock.now(), 10)) == 3
    world.events.fail_publish = False
    assert (await world.sweeper.sweep()).clips_deleted == 3
    assert (await world.sweeper.sweep()).clips_deleted == 0
    assert world.metrics.deleted == {DeletionReason.RETENTION_EXPIRED: 3}


async def test_a_replayed_ingest_of_a_deleted_clip_stays_deleted() -> None:
    world = World()
    (clip,) = await world.ingest(1)
    world.clock.advance(WEEK)
    await world.sweeper.sweep()
    assert not await world.schedule.add(clip, START)
    assert await world.schedule.due(world.clock.now() + WEEK, 10) == []


async def test_a_period_is_destroyed_once_empty_over_and_past_its_grace() -> None:
    world = World()
    await world.ingest(2, version=1)
    await world.ingest(1, version=2)
    v1, v2 = PeriodRef("t1", 1), PeriodRef("t1", 2)
    world.keys.versions[v1] = KeyVersionInfo(VersionState.ACTIVE, START, None)
    world.keys.versions[v2] = KeyVersionInfo(VersionState.ACTIVE, START, None)
    world.clock.advance(WEEK)
    assert (await world.sweeper.sweep()).periods_destroyed == 0  # still active: wait
    period_end = world.clock.now() - timedelta(minutes=30)
    world.keys.versions[v1] = KeyVersionInfo(VersionState.DECRYPT_ONLY, START, period_end)
    assert (await world.sweeper.sweep()).periods_destroyed == 0  # within the grace hour
    world.clock.advance(timedelta(minutes=31))
    assert (await world.sweeper.sweep()).periods_destroyed == 1
    assert world.keys.versions[v1].state is VersionState.DESTROYED
    assert world.keys.versions[v2].state is VersionState.ACTIVE
    (record,) = world.shreds.of_tenant("t1")
    assert (record.key_version, record.clips_covered, record.reason) == (
        1,
        2,
        ShredReason.RETENTION_EXPIRED,
    )
    assert record.period_end == period_end
    assert [r.key_version for r in world.events.expired] == [1]
    assert (await world.sweeper.sweep()).periods_destroyed == 0  # recorded once
    assert world.metrics.periods == {ShredReason.RETENTION_EXPIRED: 1}


async def test_a_period_with_a_live_clip_is_kept() -> None:
    world = World()
    await world.ingest(2, version=1)
    late = ScheduledClip("t1", "cam", "late", "t/t1/cam/late", 1, START + 2 * WEEK)
    await world.schedule.add(late, START)
    world.keys.versions[PeriodRef("t1", 1)] = KeyVersionInfo(
        VersionState.DECRYPT_ONLY, START, START
    )
    world.clock.advance(WEEK + timedelta(hours=2))
    result = await world.sweeper.sweep()
    assert (result.clips_deleted, result.periods_destroyed) == (2, 0)
    world.clock.advance(WEEK)
    assert (await world.sweeper.sweep()).periods_destroyed == 1


def test_due_times_stay_within_the_operators_bounds() -> None:
    bounds = RetentionBounds(default_days=7, min_days=1, max_days=30)
    assert bounds.due_at(START, None, None) == START + WEEK
    assert bounds.due_at(START, None, 14) == START + timedelta(days=14)
    assert bounds.due_at(START, START + timedelta(days=3), None) == START + timedelta(days=3)
    assert bounds.due_at(START, START + timedelta(days=90), None) == START + timedelta(days=30)
    assert bounds.due_at(START, START - timedelta(days=1), None) == START + timedelta(days=1)
