"""Data exports (right of access and portability): asked for, built in the background,
downloaded by the same account until they expire.

An export is one ZIP archive: `export.json` (account, installs, cameras with settings,
grants, access log, clip list) and `clips/<camera>/<clip>.mp4`, the clips decrypted.
It is stored encrypted (clip format v1 under a fresh data key of the tenant) and
decrypted only while its owner downloads it, each time logged in the household's log.
"""

from __future__ import annotations

import enum
import hashlib
import io
import json
import logging
import uuid
import zipfile
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from services.common.clock import Clock
from services.common.errors import FailedPrecondition, NotFound, PrivacamError
from services.retention.domain.model import ScheduledClip
from services.retention.domain.ports import Schedule

log = logging.getLogger("privacam.retention.exports")


class ExportState(enum.Enum):
    PENDING = "pending"
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class ExportJob:
    export_id: str
    tenant_id: str
    state: ExportState
    requested_at: datetime
    items_done: int = 0
    items_total: int = 0
    ready_at: datetime | None = None
    expires_at: datetime | None = None
    size_bytes: int = 0
    sha256: bytes = b""
    failure_reason: str = ""


class ExportStore(Protocol):
    async def create(self, job: ExportJob) -> bool:
        """Store a new PENDING job unless another of the tenant is pending or building
        (atomically); False if one is."""
        ...

    async def get(self, tenant_id: str, export_id: str) -> ExportJob | None: ...

    async def of_tenant(self, tenant_id: str) -> list[ExportJob]: ...

    async def update(self, job: ExportJob) -> bool:
        """Store the job's new state only if the job still exists (atomically); False if it
        was deleted meanwhile, so a builder never brings back an export the user deleted."""
        ...

    async def remove(self, tenant_id: str, export_id: str) -> None: ...

    async def expired(self, now: datetime) -> list[tuple[str, str]]:
        """(tenant, export) of ready exports past their expiry."""
        ...


class ExportSources(Protocol):
    async def account(self, tenant_id: str, export_id: str) -> dict[str, Any]:
        """Account, installs, cameras with settings, grants given and received (JSON-ready),
        read for this export (device_auth logs the read in the household's log first)."""
        ...

    async def access_log(self, tenant_id: str) -> list[dict[str, Any]]: ...

    async def clip_plaintext(self, clip: ScheduledClip, export_id: str) -> bytes:
        """The decrypted clip, each decryption logged in the household's log first."""
        ...


class ArchiveVault(Protocol):
    async def seal(self, tenant_id: str, export_id: str, archive: bytes) -> None: ...

    async def open(self, tenant_id: str, export_id: str) -> bytes: ...

    async def discard(self, tenant_id: str, export_id: str) -> None: ...

    async def discard_tenant(self, tenant_id: str) -> int: ...


class ExportEvents(Protocol):
    async def export_requested(self, job: ExportJob) -> None: ...

    async def export_ready(self, job: ExportJob) -> None: ...

    async def export_deleted(self, job: ExportJob) -> None: ...


class ExportGauge(Protocol):
    def building(self, delta: int) -> None: ...


_OPEN = (ExportState.PENDING, ExportState.BUILDING)


class Exports:
    def __init__(
        self,
        store: ExportStore,
        sources: ExportSources,
        vault: ArchiveVault,
        schedule: Schedule,
        events: ExportEvents,
        gauge: ExportGauge,
        clock: Clock,
        ttl: timedelta,
    ) -> None:
        self._store = store
        self._sources = sources
        self._vault = vault
        self._schedule = schedule
        self._events = events
        self._gauge = gauge
        self._clock = clock
        self._ttl = ttl

    async def request(self, tenant_id: str) -> ExportJob:
        job = ExportJob(str(uuid.uuid4()), tenant_id, ExportState.PENDING, self._clock.now())
        if not await self._store.create(job):
            raise FailedPrecondition(
                "an export is already being built for this account; wait until it is ready"
            )
        await self._events.export_requested(job)
        return job

    async def get(self, tenant_id: str, export_id: str) -> ExportJob:
        job = await self._store.get(tenant_id, export_id)
        if job is None or job.state is ExportState.EXPIRED:
            raise NotFound("no such export")
        if job.expires_at is not None and self._clock.now() >= job.expires_at:
            await self._expire(job)
            raise NotFound("no such export")
        return job

    async def list(self, tenant_id: str) -> list[ExportJob]:
        now = self._clock.now()
        jobs = [
            job
            for job in await self._store.of_tenant(tenant_id)
            if job.state is not ExportState.EXPIRED
            and (job.expires_at is None or now < job.expires_at)
        ]
        return sorted(jobs, key=lambda job: job.requested_at, reverse=True)

    async def download(self, tenant_id: str, export_id: str) -> tuple[ExportJob, bytes]:
        job = await self.get(tenant_id, export_id)
        if job.state is not ExportState.READY:
            raise FailedPrecondition(f"the export is {job.state.value}, not ready to download")
        archive = await self._vault.open(tenant_id, export_id)
        if hashlib.sha256(archive).digest() != job.sha256:
            raise FailedPrecondition("the stored export is damaged; request a new one")
        return job, archive

    async def delete(self, tenant_id: str, export_id: str) -> None:
        job = await self._store.get(tenant_id, export_id)
        if job is None:
            raise NotFound("no such export")
        await self._expire(job)

    async def _expire(self, job: ExportJob) -> None:
        await self._vault.discard(job.tenant_id, job.export_id)
        await self._store.remove(job.tenant_id, job.export_id)
        await self._events.export_deleted(
            replace(
                job,
                state=ExportState.FAILED
                if job.state is ExportState.FAILED
                else ExportState.EXPIRED,
            )
        )

    async def expire_due(self) -> int:
        expired = await self._store.expired(self._clock.now())
        for tenant_id, export_id in expired:
            job = await self._store.get(tenant_id, export_id)
            if job is not None:
                await self._expire(job)
        return len(expired)

    async def forget_tenant(self, tenant_id: str) -> int:
        jobs = await self._store.of_tenant(tenant_id)
        for job in jobs:
            await self._store.remove(tenant_id, job.export_id)
        await self._vault.discard_tenant(tenant_id)
        return len(jobs)

    # --- the worker ---------------------------------------------------------------------

    async def build(self, tenant_id: str, export_id: str) -> None:
        """Assemble one export; a repeat after a crash starts it over (nothing half-built is
        ever READY). An export deleted meanwhile is left alone."""
        job = await self._store.get(tenant_id, export_id)
        if job is None or job.state not in _OPEN:
            return
        self._gauge.building(1)
        try:
            job = await self._assemble(job)
        except PrivacamError as error:
            await self._fail(job, str(error))
        except Exception:
            log.exception("export failed")
            await self._fail(job, "internal error while assembling the export")
        finally:
            self._gauge.building(-1)

    async def _fail(self, job: ExportJob, reason: str) -> None:
        current = await self._store.get(job.tenant_id, job.export_id)
        if current is None:
            return
        failed = replace(current, state=ExportState.FAILED, failure_reason=reason[:256])
        await self._vault.discard(job.tenant_id, job.export_id)
        if await self._store.update(failed):
            await self._events.export_deleted(failed)

    async def _progress(self, job: ExportJob, done: int, total: int) -> ExportJob:
        job = replace(job, state=ExportState.BUILDING, items_done=done, items_total=total)
        if not await self._store.update(job):
            raise FailedPrecondition("the export was deleted while it was being built")
        return job

    async def _assemble(self, job: ExportJob) -> ExportJob:
        tenant = job.tenant_id
        clips = await self._schedule.tenant_clips(tenant)
        total = 3 + len(clips)  # account, access log, clip list, then each clip
        job = await self._progress(job, 0, total)
        account = await self._sources.account(tenant, job.export_id)
        job = await self._progress(job, 1, total)
        entries = await self._sources.access_log(tenant)
        job = await self._progress(job, 2, total)
        clip_list = [
            {
                "device_id": clip.device_id,
                "clip_id": clip.clip_id,
                "delete_at": clip.due_at.isoformat(),
                "file": f"clips/{clip.device_id}/{clip.clip_id}.mp4",
            }
            for clip in clips
        ]
        job = await self._progress(job, 3, total)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            for index, clip in enumerate(clips, start=1):
                media = await self._sources.clip_plaintext(clip, job.export_id)
                archive.writestr(f"clips/{clip.device_id}/{clip.clip_id}.mp4", media)
                job = await self._progress(job, 3 + index, total)
            document = {
                "format": "privacam-export-v1",
                "export_id": job.export_id,
                "tenant_id": tenant,
                "requested_at": job.requested_at.isoformat(),
                "account": account,
                "access_log": entries,
                "clips": clip_list,
            }
            archive.writestr(
                "export.json",
                json.dumps(document, indent=2, sort_keys=True),
                compress_type=zipfile.ZIP_DEFLATED,
            )
        data = buffer.getvalue()
        await self._vault.seal(tenant, job.export_id, data)
        now = self._clock.now()
        ready = replace(
            job,
            state=ExportState.READY,
            items_done=total,
            items_total=total,
            ready_at=now,
            expires_at=now + self._ttl,
            size_bytes=len(data),
            sha256=hashlib.sha256(data).digest(),
        )
        if not await self._store.update(ready):
            await self._vault.discard(tenant, job.export_id)
            return ready  # deleted while building: leave nothing behind
        await self._events.export_ready(ready)
        return ready
