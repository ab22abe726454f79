"""The user's rights: see a camera's retention, withdraw consent, cancel the account."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.common.clock import Clock
from services.common.errors import FailedPrecondition, PermissionDenied
from services.retention.domain.model import (
    CancellationRecord,
    DeletionReason,
    RetentionBounds,
    ShredReason,
    ShredRecord,
)
from services.retention.domain.ports import (
    Accounts,
    Cameras,
    CancellationEvents,
    CancellationProgress,
    ClipEvents,
    Exclusive,
    ExportCleanup,
    KeyPeriods,
    ObjectStore,
    RetentionMetrics,
    Schedule,
    ShredLog,
)
from services.retention.domain.sweeper import Sweeper

_BATCH = 1000  # S3 multi-object delete takes at most 1000 keys


@dataclass(frozen=True, slots=True)
class RetentionView:
    retention_days: int
    bounds: RetentionBounds
    next_deletion_at: datetime | None


@dataclass(frozen=True, slots=True)
class ConsentResult:
    clips_deleted: int
    clips_kept: int


class Rights:
    def __init__(
        self,
        *,
        schedule: Schedule,
        sweeper: Sweeper,
        objects: ObjectStore,
        clip_events: ClipEvents,
        keys: KeyPeriods,
        shreds: ShredLog,
        accounts: Accounts,
        cameras: Cameras,
        progress: CancellationProgress,
        exports: ExportCleanup,
        exclusive: Exclusive,
        events: CancellationEvents,
        metrics: RetentionMetrics,
        bounds: RetentionBounds,
        clock: Clock,
    ) -> None:
        self._schedule = schedule
        self._sweeper = sweeper
        self._objects = objects
        self._clip_events = clip_events
        self._keys = keys
        self._shreds = shreds
        self._accounts = accounts
        self._cameras = cameras
        self._progress = progress
        self._exports = exports
        self._exclusive = exclusive
        self._events = events
        self._metrics = metrics
        self._bounds = bounds
        self._clock = clock

    async def retention_of(self, tenant_id: str, install_id: str, device_id: str) -> RetentionView:
        access = await self._cameras.access(tenant_id, install_id, device_id)
        return RetentionView(
            retention_days=access.retention_days or self._bounds.default_days,
            bounds=self._bounds,
            next_deletion_at=await self._schedule.next_due(access.owner_tenant_id, device_id),
        )

    def shred_records(self, tenant_id: str) -> list[ShredRecord]:
        """Newest first."""
        return sorted(
            self._shreds.of_tenant(tenant_id),
            key=lambda r: (r.destroyed_at, r.key_version),
            reverse=True,
        )

    async def withdraw_consent(
        self, tenant_id: str, install_id: str, device_id: str, delete: bool
    ) -> ConsentResult:
        """Applies the owner's choice to a camera whose alerts are already off. Alerts are
        turned off with DeviceAuthService.UpdateCameraSettings first, so no new clip can
        arrive while the existing ones are deleted or kept."""
        access = await self._cameras.access(tenant_id, install_id, device_id)
        if not access.is_owner:
            raise PermissionDenied("only the camera's owner can withdraw consent for it")
        if access.alerts_enabled:
            raise FailedPrecondition(
                "activity alerts are still on for this camera: turn them off with "
                "UpdateCameraSettings first, then choose to keep or delete its clips"
            )
        clips = await self._schedule.device_clips(tenant_id, device_id)
        deleted = 0
        if delete:
            for start in range(0, len(clips), _BATCH):
                deleted += await self._sweeper.delete(
                    clips[start : start + _BATCH], DeletionReason.CONSENT_WITHDRAWN
                )
            await self._sweeper.destroy_emptied_periods()
        await self._events.consent_withdrawn(tenant_id, device_id, not delete, self._clock.now())
        return ConsentResult(clips_deleted=deleted, clips_kept=0 if delete else len(clips))

    async def cancel_account(
        self, tenant_id: str, password: str, cancellation_id: str
    ) -> CancellationRecord:
        """Each step runs once per cancellation id and stores its counts, so a retry after a
        dropped connection or a crash resumes where it stopped and returns the same record."""
        if not await self._accounts.verify_password(tenant_id, password):
            raise PermissionDenied("the password is wrong; the account was not cancelled")
        requested_at = await self._progress.begin(tenant_id, cancellation_id, self._clock.now())
        await self._events.cancellation_requested(tenant_id, cancellation_id, requested_at)

        async def step(name: str, run: object) -> dict[str, int]:
            done = await self._progress.step(tenant_id, name)
            if done is None:
                done = await run()  # type: ignore[operator]
                await self._progress.finish_step(tenant_id, name, done)
            return done

        async def purge() -> dict[str, int]:
            report = await self._accounts.purge(tenant_id, cancellation_id)
            return {
                "cameras": report.cameras_removed,
                "installs": report.app_installs_removed,
                "grants": report.grants_removed,
                "certificates": report.certificates_revoked,
            }

        async def clips() -> dict[str, int]:
            return {"clips": await self._delete_all_clips(tenant_id)}

        async def exports() -> dict[str, int]:
            return {"exports": await self._exports.forget_tenant(tenant_id)}

        async def keys() -> dict[str, int]:
            return {"versions": await self._keys.destroy_tenant(tenant_id, cancellation_id)}

        async def records() -> dict[str, int]:
            await self._schedule.forget_tenant(tenant_id)
            return {"tombstoned": await self._shreds.forget_tenant(tenant_id)}

        purged = await step("purge", purge)
        # Without the sweeper: a sweep in flight could otherwise record a shred of this
        # tenant after its records are tombstoned.
        async with self._exclusive.hold(wait_seconds=60):
            deleted = await step("clips", clips)
            exported = await step("exports", exports)
            destroyed = await step("keys", keys)
            tombstoned = await step("records", records)
        record = CancellationRecord(
            cancellation_id=cancellation_id,
            tenant_id=tenant_id,
            requested_at=requested_at,
            completed_at=self._clock.now(),
            clips_deleted=deleted["clips"],
            exports_deleted=exported["exports"],
            cameras_removed=purged["cameras"],
            app_installs_removed=purged["installs"],
            grants_removed=purged["grants"],
            certificates_revoked=purged["certificates"],
            key_versions_destroyed=destroyed["versions"],
            records_tombstoned=tombstoned["tombstoned"],
        )
        await self._events.cancellation_completed(record)
        await self._progress.end(tenant_id)
        self._metrics.periods_destroyed(ShredReason.ACCOUNT_CANCELLED, destroyed["versions"])
        return record

    async def _delete_all_clips(self, tenant_id: str) -> int:
        scheduled = await self._schedule.tenant_clips(tenant_id)
        for start in range(0, len(scheduled), _BATCH):
            batch = scheduled[start : start + _BATCH]
            await self._objects.delete([clip.object_name for clip in batch])
            await self._clip_events.clips_deleted(
                batch, DeletionReason.ACCOUNT_CANCELLED, self._clock.now()
            )
        # Objects the schedule never saw (an event still in flight) go too.
        names = {clip.object_name for clip in scheduled}
        stray = [
            name for name in await self._objects.tenant_objects(tenant_id) if name not in names
        ]
        for start in range(0, len(stray), _BATCH):
            await self._objects.delete(stray[start : start + _BATCH])
        # Whole periods go with the tenant's keys: none of them is left to look "emptied".
        await self._schedule.forget_tenant(tenant_id)
        self._metrics.clips_deleted(DeletionReason.ACCOUNT_CANCELLED, len(scheduled) + len(stray))
        return len(scheduled) + len(stray)
