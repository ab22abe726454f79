"""In-memory fakes of retention's ports, behaving like the adapters (idempotent, counted)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from services.common.errors import FailedPrecondition
from services.retention.domain.exports import ExportJob, ExportState
from services.retention.domain.model import (
    CancellationRecord,
    DeletionReason,
    KeyVersionInfo,
    PeriodCount,
    PeriodRef,
    PurgeReport,
    ScheduledClip,
    ShredReason,
    ShredRecord,
    VersionState,
)


class MemorySchedule:
    def __init__(self) -> None:
        self.clips: dict[str, ScheduledClip] = {}
        self.gone: set[str] = set()
        self.periods: dict[PeriodRef, list[Any]] = {}  # [live, covered, start]
        self.emptied: set[PeriodRef] = set()

    async def add(self, clip: ScheduledClip, period_start: datetime | None) -> bool:
        if clip.member in self.gone or clip.member in self.clips:
            return False
        self.clips[clip.member] = clip
        count = self.periods.setdefault(
            PeriodRef(clip.tenant_id, clip.key_version), [0, 0, period_start]
        )
        count[0] += 1
        count[1] += 1
        return True

    async def due(self, before: datetime, limit: int) -> list[ScheduledClip]:
        due = sorted((c for c in self.clips.values() if c.due_at <= before), key=lambda c: c.due_at)
        return due[:limit]

    async def remove(self, clips: Sequence[ScheduledClip]) -> list[ScheduledClip]:
        removed = []
        for clip in clips:
            self.gone.add(clip.member)
            stored = self.clips.pop(clip.member, None)
            if stored is None:
                continue
            period = PeriodRef(stored.tenant_id, stored.key_version)
            self.periods[period][0] -= 1
            if self.periods[period][0] <= 0:
                self.emptied.add(period)
            removed.append(stored)
        return removed

    async def get(self, tenant_id: str, device_id: str, clip_id: str) -> ScheduledClip | None:
        return self.clips.get(f"{tenant_id}/{device_id}/{clip_id}")

    async def device_clips(self, tenant_id: str, device_id: str) -> list[ScheduledClip]:
        return sorted(
            (
                c
                for c in self.clips.values()
                if (c.tenant_id, c.device_id) == (tenant_id, device_id)
            ),
            key=lambda c: c.due_at,
        )

    async def tenant_clips(self, tenant_id: str) -> list[ScheduledClip]:
        return [c for c in self.clips.values() if c.tenant_id == tenant_id]

    async def next_due(self, tenant_id: str, device_id: str) -> datetime | None:
        clips = await self.device_clips(tenant_id, device_id)
        return clips[0].due_at if clips else None

    async def emptied_periods(self) -> list[PeriodCount]:
        return [
            PeriodCount(p, 0, self.periods[p][1], self.periods[p][2])
            for p in sorted(self.emptied, key=lambda p: (p.tenant_id, p.key_version))
            if self.periods[p][0] <= 0
        ]

    async def forget_period(self, period: PeriodRef) -> None:
        self.periods.pop(period, None)
        self.emptied.discard(period)

    async def forget_tenant(self, tenant_id: str) -> None:
        self.clips = {k: c for k, c in self.clips.items() if c.tenant_id != tenant_id}
        self.gone = {g for g in self.gone if not g.startswith(f"{tenant_id}/")}
        self.periods = {p: v for p, v in self.periods.items() if p.tenant_id != tenant_id}
        self.emptied = {p for p in self.emptied if p.tenant_id != tenant_id}


class MemoryObjects:
    def __init__(self) -> None:
        self.names: set[str] = set()
        self.delete_calls = 0
        self.fail_next = False

    async def delete(self, names: Sequence[str]) -> None:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("object storage down")
        self.delete_calls += 1
        self.names -= set(names)

    async def tenant_objects(self, tenant_id: str) -> list[str]:
        return sorted(n for n in self.names if n.startswith(f"t/{tenant_id}/"))


@dataclass
class RecordedEvents:
    deleted: list[tuple[str, DeletionReason, str]] = field(default_factory=list)
    expired: list[ShredRecord] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    completed: list[CancellationRecord] = field(default_factory=list)
    consent: list[tuple[str, bool]] = field(default_factory=list)
    fail_publish: bool = False

    async def clips_deleted(
        self, clips: Sequence[ScheduledClip], reason: DeletionReason, now: datetime
    ) -> None:
        if self.fail_publish:
            raise RuntimeError("kafka down")
        self.deleted += [(c.member, reason, f"id-{c.member}") for c in clips]

    async def key_period_expired(self, record: ShredRecord, now: datetime) -> None:
        self.expired.append(record)

    async def cancellation_requested(
        self, tenant_id: str, cancellation_id: str, now: datetime
    ) -> None:
        self.requested.append(cancellation_id)

    async def cancellation_completed(self, record: CancellationRecord) -> None:
        self.completed.append(record)

    async def consent_withdrawn(
        self, tenant_id: str, device_id: str, keep: bool, now: datetime
    ) -> None:
        self.consent.append((device_id, keep))


class FakeKeys:
    def __init__(self) -> None:
        self.versions: dict[PeriodRef, KeyVersionInfo] = {}
        self.destroyed_tenants: list[str] = []

    async def version(self, period: PeriodRef) -> KeyVersionInfo:
        return self.versions.get(period, KeyVersionInfo(VersionState.UNKNOWN))

    async def destroy(self, period: PeriodRef) -> KeyVersionInfo:
        info = self.versions[period]
        if info.state is VersionState.ACTIVE:
            raise FailedPrecondition("active")
        destroyed = replace(info, state=VersionState.DESTROYED, destroyed_at=info.period_end)
        self.versions[period] = destroyed
        return destroyed

    async def destroy_tenant(self, tenant_id: str, cancellation_id: str) -> int:
        self.destroyed_tenants.append(tenant_id)
        mine = [p for p in self.versions if p.tenant_id == tenant_id]
        for period in mine:
            self.versions[period] = KeyVersionInfo(VersionState.DESTROYED)
        return len(mine)


class MemoryShreds:
    def __init__(self) -> None:
        self.records: dict[tuple[str, int], ShredRecord] = {}

    async def record(self, record: ShredRecord) -> bool:
        key = (record.tenant_id, record.key_version)
        if key in self.records:
            return False
        self.records[key] = record
        return True

    def of_tenant(self, tenant_id: str) -> list[ShredRecord]:
        return [r for (t, _), r in self.records.items() if t == tenant_id]

    async def forget_tenant(self, tenant_id: str) -> int:
        mine = [k for k in self.records if k[0] == tenant_id]
        for key in mine:
            del self.records[key]
        return len(mine)


@dataclass
class CountingMetrics:
    deleted: dict[DeletionReason, int] = field(default_factory=dict)
    lags: list[float] = field(default_factory=list)
    periods: dict[ShredReason, int] = field(default_factory=dict)

    def clips_deleted(self, reason: DeletionReason, count: int) -> None:
        self.deleted[reason] = self.deleted.get(reason, 0) + count

    def deletion_lag(self, seconds: float) -> None:
        self.lags.append(seconds)

    def periods_destroyed(self, reason: ShredReason, count: int) -> None:
        self.periods[reason] = self.periods.get(reason, 0) + count

    def sweep_finished(self, seconds: float, oldest_waiting_lag: float) -> None:
        pass


@dataclass
class Access:
    owner_tenant_id: str
    is_owner: bool
    retention_days: int
    alerts_enabled: bool


class FakeAccounts:
    def __init__(self) -> None:
        self.password = "right password"
        self.purges: list[str] = []
        self.cameras: dict[tuple[str, str], Access] = {}

    async def verify_password(self, tenant_id: str, password: str) -> bool:
        return password == self.password

    async def purge(self, tenant_id: str, cancellation_id: str) -> PurgeReport:
        self.purges.append(cancellation_id)
        first = len(self.purges) == 1
        return PurgeReport(1 if first else 0, 2 if first else 0, 0, 3 if first else 0)

    async def access(self, tenant_id: str, install_id: str, device_id: str) -> Access:
        from services.common.errors import NotFound

        found = self.cameras.get((tenant_id, device_id))
        if found is None:
            raise NotFound("no such camera")
        return found


class MemoryProgress:
    def __init__(self) -> None:
        self.running: dict[str, tuple[str, datetime, dict[str, dict[str, int]]]] = {}

    async def begin(self, tenant_id: str, cancellation_id: str, now: datetime) -> datetime:
        entry = self.running.setdefault(tenant_id, (cancellation_id, now, {}))
        if entry[0] != cancellation_id:
            raise FailedPrecondition("another cancellation is running")
        return entry[1]

    async def step(self, tenant_id: str, name: str) -> dict[str, int] | None:
        return self.running[tenant_id][2].get(name)

    async def finish_step(self, tenant_id: str, name: str, results: dict[str, int]) -> None:
        self.running[tenant_id][2][name] = results

    async def end(self, tenant_id: str) -> None:
        self.running.pop(tenant_id, None)


class NoExports:
    async def forget_tenant(self, tenant_id: str) -> int:
        return 0


class FreeLease:
    def __init__(self) -> None:
        self.held = 0

    @asynccontextmanager
    async def hold(self, wait_seconds: float) -> AsyncIterator[None]:
        self.held += 1
        yield


class MemoryExportStore:
    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], ExportJob] = {}
        self.queue: dict[tuple[str, str], datetime] = {}  # job -> not before

    async def create(self, job: ExportJob) -> bool:
        if any(
            j.state in (ExportState.PENDING, ExportState.BUILDING)
            for j in await self.of_tenant(job.tenant_id)
        ):
            return False
        self.jobs[(job.tenant_id, job.export_id)] = job
        self.queue[(job.tenant_id, job.export_id)] = job.requested_at
        return True

    async def update(self, job: ExportJob) -> bool:
        if (job.tenant_id, job.export_id) not in self.jobs:
            return False
        self.jobs[(job.tenant_id, job.export_id)] = job
        if job.state in (ExportState.PENDING, ExportState.BUILDING):
            self.queue.setdefault((job.tenant_id, job.export_id), job.requested_at)
        else:
            self.queue.pop((job.tenant_id, job.export_id), None)
        return True

    async def get(self, tenant_id: str, export_id: str) -> ExportJob | None:
        return self.jobs.get((tenant_id, export_id))

    async def of_tenant(self, tenant_id: str) -> list[ExportJob]:
        return [j for (t, _), j in self.jobs.items() if t == tenant_id]

    async def remove(self, tenant_id: str, export_id: str) -> None:
        self.jobs.pop((tenant_id, export_id), None)
        self.queue.pop((tenant_id, export_id), None)

    async def expired(self, now: datetime) -> list[tuple[str, str]]:
        return [
            k
            for k, j in self.jobs.items()
            if j.state is ExportState.READY and j.expires_at is not None and j.expires_at <= now
        ]

    async def enqueue(self, tenant_id: str, export_id: str) -> bool:
        job = self.jobs.get((tenant_id, export_id))
        if job is None or job.state not in (ExportState.PENDING, ExportState.BUILDING):
            return False
        self.queue.setdefault((tenant_id, export_id), job.requested_at)
        return True

    async def queued(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        due = sorted((at, key) for key, at in self.queue.items() if at <= now)
        return [key for _, key in due[:limit]]

    async def defer(self, tenant_id: str, export_id: str, until: datetime) -> None:
        if (tenant_id, export_id) in self.queue:
            self.queue[(tenant_id, export_id)] = until

    async def dequeue(self, tenant_id: str, export_id: str) -> None:
        self.queue.pop((tenant_id, export_id), None)
