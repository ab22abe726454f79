"""What the domain needs from the outside world; adapters implement these."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

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
)


class Schedule(Protocol):
    """The rebuildable view of clips waiting for deletion and live clips per key period."""

    async def add(self, clip: ScheduledClip, period_start: datetime | None) -> bool:
        """Schedule a clip; False if it is already scheduled or was deleted before."""
        ...

    async def due(self, before: datetime, limit: int) -> list[ScheduledClip]:
        """Clips due at or before `before`, oldest first."""
        ...

    async def remove(self, clips: Sequence[ScheduledClip]) -> list[ScheduledClip]:
        """Unschedule clips and count them out of their periods; returns those that were
        still scheduled (so each deletion is counted once, however often it is repeated)."""
        ...

    async def get(self, tenant_id: str, device_id: str, clip_id: str) -> ScheduledClip | None: ...

    async def device_clips(self, tenant_id: str, device_id: str) -> list[ScheduledClip]: ...

    async def tenant_clips(self, tenant_id: str) -> list[ScheduledClip]: ...

    async def next_due(self, tenant_id: str, device_id: str) -> datetime | None: ...

    async def emptied_periods(self) -> list[PeriodCount]:
        """Periods whose every scheduled clip has been deleted."""
        ...

    async def forget_period(self, period: PeriodRef) -> None: ...

    async def forget_tenant(self, tenant_id: str) -> None:
        """Drop every entry of the tenant (account cancellation)."""
        ...


class ObjectStore(Protocol):
    async def delete(self, names: Sequence[str]) -> None:
        """Delete objects from the clip bucket (absent ones are fine); raises if any fails."""
        ...

    async def tenant_objects(self, tenant_id: str) -> list[str]:
        """Every clip object stored under the tenant's prefix, scheduled or not."""
        ...


class ClipEvents(Protocol):
    async def clips_deleted(
        self, clips: Sequence[ScheduledClip], reason: DeletionReason, now: datetime
    ) -> None:
        """Publish one ClipsDeleted per camera among `clips`, its event id derived from the
        clips it names, so a batch repeated after a crash is recognisably the same event."""
        ...


class KeyPeriods(Protocol):
    async def version(self, period: PeriodRef) -> KeyVersionInfo: ...

    async def destroy(self, period: PeriodRef) -> KeyVersionInfo: ...

    async def destroy_tenant(self, tenant_id: str, cancellation_id: str) -> int:
        """Destroy every version of the tenant; how many it had."""
        ...


class ShredLog(Protocol):
    """Durable record of destroyed key periods, the user's proof of deletion."""

    async def record(self, record: ShredRecord) -> bool:
        """Store it once; False if the period was already recorded."""
        ...

    def of_tenant(self, tenant_id: str) -> list[ShredRecord]: ...

    async def forget_tenant(self, tenant_id: str) -> int:
        """Tombstone every record of the tenant; how many."""
        ...


class RetentionEvents(Protocol):
    async def key_period_expired(self, record: ShredRecord, now: datetime) -> None: ...


class Accounts(Protocol):
    async def verify_password(self, tenant_id: str, password: str) -> bool: ...

    async def purge(self, tenant_id: str, cancellation_id: str) -> PurgeReport: ...


class RetentionMetrics(Protocol):
    def clips_deleted(self, reason: DeletionReason, count: int) -> None: ...

    def deletion_lag(self, seconds: float) -> None: ...

    def periods_destroyed(self, reason: ShredReason, count: int) -> None: ...

    def sweep_finished(self, seconds: float, oldest_waiting_lag: float) -> None: ...


class CameraAccess(Protocol):
    @property
    def owner_tenant_id(self) -> str: ...

    @property
    def is_owner(self) -> bool: ...

    @property
    def retention_days(self) -> int: ...

    @property
    def alerts_enabled(self) -> bool: ...


class Cameras(Protocol):
    async def access(self, tenant_id: str, install_id: str, device_id: str) -> CameraAccess:
        """What the app may do with the camera (NotFound for a camera it cannot see)."""
        ...


class Exclusive(Protocol):
    """Mutual exclusion with the sweeper, across replicas."""

    def hold(self, wait_seconds: float) -> AbstractAsyncContextManager[None]: ...


class CancellationProgress(Protocol):
    """Where a running cancellation keeps the results of finished steps (deleted at the end,
    so nothing of the tenant stays behind)."""

    async def begin(self, tenant_id: str, cancellation_id: str, now: datetime) -> datetime:
        """Start or resume; returns when it was first requested. Raises if another
        cancellation id is already running for the tenant."""
        ...

    async def step(self, tenant_id: str, name: str) -> dict[str, int] | None:
        """Results of a finished step, or None if it has not finished."""
        ...

    async def finish_step(self, tenant_id: str, name: str, results: dict[str, int]) -> None: ...

    async def end(self, tenant_id: str) -> None: ...


class ExportCleanup(Protocol):
    async def forget_tenant(self, tenant_id: str) -> int:
        """Delete every export of the tenant (objects and state); how many."""
        ...


class CancellationEvents(Protocol):
    async def cancellation_requested(
        self, tenant_id: str, cancellation_id: str, now: datetime
    ) -> None: ...

    async def cancellation_completed(self, record: CancellationRecord) -> None: ...

    async def consent_withdrawn(
        self, tenant_id: str, device_id: str, keep: bool, now: datetime
    ) -> None: ...
