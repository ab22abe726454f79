"""Withdrawal of consent and account cancellation over in-memory fakes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common.clock import FakeClock
from services.common.errors import FailedPrecondition, NotFound, PermissionDenied
from services.retention.domain.model import (
    DeletionReason,
    KeyVersionInfo,
    PeriodRef,
    RetentionBounds,
    ScheduledClip,
    ShredReason,
    ShredRecord,
    VersionState,
)
from services.retention.domain.rights import Rights
from services.retention.domain.sweeper import Sweeper
from tests.unit.retention.fakes import (
    Access,
    CountingMetrics,
    FakeAccounts,
    FakeKeys,
    FreeLease,
    MemoryObjects,
    MemoryProgress,
    MemorySchedule,
    MemoryShreds,
    NoExports,
    RecordedEvents,
)

START = datetime(2026, 3, 1, tzinfo=UTC)


class World:
    def __init__(self) -> None:
        self.clock = FakeClock(START)
        self.schedule = MemorySchedule()
        self.objects = MemoryObjects()
        self.events = RecordedEvents()
        self.keys = FakeKeys()
        self.shreds = MemoryShreds()
        self.metrics = CountingMetrics()
        self.accounts = FakeAccounts()
        self.progress = MemoryProgress()
        self.lease = FreeLease()
        sweeper = Sweeper(
            self.schedule,
            self.objects,
            self.events,
            self.keys,
            self.shreds,
            self.events,
            self.metrics,
            self.clock,
            batch_size=100,
            period_grace=timedelta(0),
        )
        self.rights = Rights(
            schedule=self.schedule,
            sweeper=sweeper,
            objects=self.objects,
            clip_events=self.events,
            keys=self.keys,
            shreds=self.shreds,
            accounts=self.accounts,
            cameras=self.accounts,
            progress=self.progress,
            exports=NoExports(),
            exclusive=self.lease,
            events=self.events,
            metrics=self.metrics,
            bounds=RetentionBounds(7, 1, 30),
            clock=self.clock,
        )

    async def clips(self, tenant: str, device: str, n: int) -> None:
        for i in range(n):
            name = f"t/{tenant}/{device}/c{i}"
            self.objects.names.add(name)
            await self.schedule.add(
                ScheduledClip(tenant, device, f"c{i}", name, 1, START + timedelta(days=7)), START
            )


async def test_consent_needs_alerts_off_and_the_owner_and_a_choice_is_applied() -> None:
    world = World()
    await world.clips("t1", "cam", 3)
    world.accounts.cameras[("t1", "cam")] = Access("t1", True, 7, alerts_enabled=True)
    with pytest.raises(FailedPrecondition, match="turn them off"):
        await world.rights.withdraw_consent("t1", "phone", "cam", delete=True)
    world.accounts.cameras[("t1", "cam")] = Access("t1", True, 7, alerts_enabled=False)
    kept = await world.rights.withdraw_consent("t1", "phone", "cam", delete=False)
    assert (kept.clips_deleted, kept.clips_kept) == (0, 3)
    assert len(world.objects.names) == 3
    world.accounts.cameras[("t2", "cam")] = Access("t1", False, 7, alerts_enabled=False)
    with pytest.raises(PermissionDenied):
        await world.rights.withdraw_consent("t2", "phone", "cam", delete=True)
    with pytest.raises(NotFound):
        await world.rights.withdraw_consent("t3", "phone", "cam", delete=True)
    deleted = await world.rights.withdraw_consent("t1", "phone", "cam", delete=True)
    assert (deleted.clips_deleted, deleted.clips_kept) == (3, 0)
    assert world.objects.names == set()
    assert {r for _, r, _ in world.events.deleted} == {DeletionReason.CONSENT_WITHDRAWN}
    assert world.events.consent == [("cam", True), ("cam", False)]


async def test_cancellation_checks_the_password_and_erases_everything_once() -> None:
    world = World()
    await world.clips("t1", "cam", 2)
    await world.clips("t2", "cam", 1)
    world.objects.names.add("t/t1/cam/unscheduled")
    world.keys.versions[PeriodRef("t1", 1)] = KeyVersionInfo(VersionState.DECRYPT_ONLY)
    world.keys.versions[PeriodRef("t1", 2)] = KeyVersionInfo(VersionState.ACTIVE)
    await world.shreds.record(
        ShredRecord("t1", 9, None, None, START, 4, ShredReason.RETENTION_EXPIRED)
    )
    with pytest.raises(PermissionDenied, match="password"):
        await world.rights.cancel_account("t1", "wrong", "c-1")
    assert world.accounts.purges == []

    world.clock.advance(timedelta(seconds=5))
    record = await world.rights.cancel_account("t1", "right password", "c-1")
    assert (record.cancellation_id, record.tenant_id) == ("c-1", "t1")
    assert (record.clips_deleted, record.cameras_removed, record.app_installs_removed) == (3, 1, 2)
    assert (record.certificates_revoked, record.key_versions_destroyed) == (3, 2)
    assert record.records_tombstoned == 1
    assert record.requested_at == START + timedelta(seconds=5)
    assert world.objects.names == {"t/t2/cam/c0"}
    assert await world.schedule.tenant_clips("t1") == []
    assert len(await world.schedule.tenant_clips("t2")) == 1
    assert world.shreds.of_tenant("t1") == []
    assert world.keys.destroyed_tenants == ["t1"]
    assert world.progress.running == {}
    assert world.events.completed == [record]
    assert world.lease.held == 1
    assert world.metrics.periods == {ShredReason.ACCOUNT_CANCELLED: 2}


async def test_a_resumed_cancellation_skips_finished_steps_and_gives_the_same_counts() -> None:
    world = World()
    await world.clips("t1", "cam", 2)
    world.objects.fail_next = True  # the clip step dies after the purge finished
    with pytest.raises(RuntimeError):
        await world.rights.cancel_account("t1", "right password", "c-1")
    with pytest.raises(FailedPrecondition, match="another cancellation"):
        await world.rights.cancel_account("t1", "right password", "c-2")
    record = await world.rights.cancel_account("t1", "right password", "c-1")
    assert world.accounts.purges == ["c-1"]  # not purged twice
    assert (record.cameras_removed, record.clips_deleted) == (1, 2)
