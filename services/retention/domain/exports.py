"""Data exports (right of access and portability): asked for, built in the background by
whichever replica takes them (`export_build.py`), downloaded by the same account until
they expire.

An export is one ZIP archive: `export.json` (account, installs, cameras with settings,
grants, access log, clip list) and `clips/<camera>/<clip>.mp4`, the clips decrypted
(layout in `archive.py`). It is stored encrypted (clip format v1 under a fresh data key
of the tenant) and decrypted only while its owner downloads it, each time logged in the
household's log, and streamed: neither building nor downloading holds it whole.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from privacam_core import clip_format
from privacam_core.clip_format import BytesLike
from services.common.clock import Clock
from services.common.errors import FailedPrecondition, NotFound, OutOfRange
from services.retention.domain.model import ScheduledClip

ARCHIVE_DEVICE = "export"
"""ClipBinding needs a camera; an export's archive belongs to none."""


def archive_binding(tenant_id: str, export_id: str) -> clip_format.ClipBinding:
    return clip_format.ClipBinding(tenant_id, ARCHIVE_DEVICE, export_id)


class ExportState(enum.Enum):
    PENDING = "pending"
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"
    EXPIRED = "expired"


OPEN = (ExportState.PENDING, ExportState.BUILDING)


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

    async def enqueue(self, tenant_id: str, export_id: str) -> bool:
        """Queue an open job for building (idempotent; `create` queues it too); False if
        there is no such open job."""
        ...

    async def queued(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(tenant, export) of queued jobs due by `now`, oldest first. A job leaves the
        queue when it stops being open or is removed."""
        ...

    async def defer(self, tenant_id: str, export_id: str, until: datetime) -> None:
        """Leave a queued job alone until `until` (a build that failed for a while)."""
        ...

    async def dequeue(self, tenant_id: str, export_id: str) -> None: ...


class ExportSources(Protocol):
    async def account(self, tenant_id: str, export_id: str) -> dict[str, Any]:
        """Account, installs, cameras with settings, grants given and received (JSON-ready),
        read for this export (device_auth logs the read in the household's log first)."""
        ...

    def access_log(self, tenant_id: str) -> AsyncIterator[list[dict[str, Any]]]:
        """The household's log, oldest first, a page at a time, every page against one head."""
        ...

    async def clip_key(self, clip: ScheduledClip) -> bytes:
        """The clip's data key, its release logged in the household's log first."""
        ...

    def clip_media(self, clip: ScheduledClip, data_key: bytes) -> AsyncIterator[bytes]:
        """The decrypted clip, a chunk at a time."""
        ...


class ArchiveStore(Protocol):
    """Archives in the exports bucket, their data keys, and the uploads that write them."""

    async def new_key(self, tenant_id: str, export_id: str) -> tuple[bytes, bytes]:
        """A fresh data key for the export: (key, its reference for the header)."""
        ...

    async def unwrap_key(self, tenant_id: str, export_id: str, key_reference: bytes) -> bytes:
        """The export's data key again, logged in the household's log as an access to the
        export first (a download, or a build going on after a crash)."""
        ...

    async def header(self, tenant_id: str, export_id: str) -> bytes:
        """The first bytes of the stored archive (at least its clip-format header)."""
        ...

    def sealed(self, tenant_id: str, export_id: str) -> AsyncIterator[bytes]:
        """The stored (encrypted) archive, a chunk at a time."""
        ...

    async def start_upload(self, tenant_id: str, export_id: str) -> str: ...

    async def upload_part(
        self, tenant_id: str, export_id: str, upload_id: str, number: int, data: BytesLike
    ) -> str:
        """Upload (or upload again) part `number`; its ETag (`data` is lent for the call)."""
        ...

    async def complete_upload(
        self, tenant_id: str, export_id: str, upload_id: str, etags: Sequence[str]
    ) -> None: ...

    async def abort_uploads(self, tenant_id: str, export_id: str) -> int:
        """Abort every unfinished upload of the export's archive; how many. (Found by the
        archive's exact name: MinIO lists a bucket's uploads by object, not by prefix.)"""
        ...

    async def discard(self, tenant_id: str, export_id: str) -> None:
        """Delete the archive and abort its unfinished uploads."""
        ...

    async def discard_tenant(self, tenant_id: str) -> int:
        """Delete every archive of the tenant; how many."""
        ...


class BuildCleanup(Protocol):
    async def clear(self, tenant_id: str, export_id: str) -> None:
        """Forget an export's build progress."""
        ...

    async def exports_of(self, tenant_id: str) -> list[str]:
        """Exports of the tenant with build progress (their job may be gone)."""
        ...

    async def forget_tenant(self, tenant_id: str) -> None:
        """Forget the build progress of every export of the tenant."""
        ...


class ExportEvents(Protocol):
    async def export_requested(self, job: ExportJob) -> None: ...

    async def export_ready(self, job: ExportJob) -> None: ...

    async def export_deleted(self, job: ExportJob) -> None: ...


class ExportMetrics(Protocol):
    def building(self, delta: int) -> None: ...

    def attempt(self, start: str) -> None:
        """A build attempt began: `fresh`, `resumed`, or `restarted` (its checkpoint
        could not be used)."""
        ...

    def part_uploaded(self, size: int) -> None: ...


class Exports:
    """Asking for, reading, downloading and deleting exports; building is ExportBuilder's."""

    def __init__(
        self,
        store: ExportStore,
        archives: ArchiveStore,
        builds: BuildCleanup,
        events: ExportEvents,
        clock: Clock,
    ) -> None:
        self._store = store
        self._archives = archives
        self._builds = builds
        self._events = events
        self._clock = clock

    async def request(self, tenant_id: str) -> ExportJob:
        job = ExportJob(str(uuid.uuid4()), tenant_id, ExportState.PENDING, self._clock.now())
        if not await self._store.create(job):
            raise FailedPrecondition(
                "an export is already being built for this account; wait until it is ready"
            )
        await self._events.export_requested(job)
        return job

    async def enqueue(self, tenant_id: str, export_id: str) -> bool:
        """An ExportRequested seen on Kafka: make sure the job waits for a builder."""
        return await self._store.enqueue(tenant_id, export_id)

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

    async def download(
        self, tenant_id: str, export_id: str, offset: int, chunk_bytes: int
    ) -> tuple[ExportJob, AsyncIterator[bytes]]:
        """The job and its archive from `offset` on, decrypted a segment at a time (chunks of
        at most `chunk_bytes`). The access is logged before the key is released. Each
        segment is authenticated before it is passed on, and the final one is marked, so a
        damaged or cut archive fails the stream; its SHA-256 was checked when it was built."""
        job = await self.get(tenant_id, export_id)
        if job.state is not ExportState.READY:
            raise FailedPrecondition(f"the export is {job.state.value}, not ready to download")
        if not 0 <= offset < max(1, job.size_bytes):
            raise OutOfRange(f"offset must be below the archive size ({job.size_bytes} bytes)")
        try:
            header = clip_format.read_header(await self._archives.header(tenant_id, export_id))
        except clip_format.ClipFormatError:
            raise FailedPrecondition("the stored export is damaged; request a new one") from None
        key = await self._archives.unwrap_key(tenant_id, export_id, header.key_reference)
        return job, self._plaintext(job, key, offset, chunk_bytes)

    async def _plaintext(
        self, job: ExportJob, key: bytes, offset: int, chunk_bytes: int
    ) -> AsyncIterator[bytes]:
        sealed = self._archives.sealed(job.tenant_id, job.export_id)
        binding = archive_binding(job.tenant_id, job.export_id)
        skip = offset
        try:
            async for segment in clip_format.adecrypt_stream(sealed, key, binding):
                view = memoryview(segment)[min(skip, len(segment)) :]
                skip -= len(segment) - len(view)
                for start in range(0, len(view), chunk_bytes):
                    yield bytes(view[start : start + chunk_bytes])
        except clip_format.ClipFormatError:
            raise FailedPrecondition("the stored export is damaged; request a new one") from None

    async def delete(self, tenant_id: str, export_id: str) -> None:
        job = await self._store.get(tenant_id, export_id)
        if job is None:
            raise NotFound("no such export")
        await self._expire(job)

    async def _expire(self, job: ExportJob) -> None:
        # The job goes first: a builder still at work sees it gone at its next step. The
        # build progress goes last: if the archive cannot be discarded now, it tells the
        # builders' janitor which upload to abort later.
        await self._store.remove(job.tenant_id, job.export_id)
        await self._archives.discard(job.tenant_id, job.export_id)
        await self._builds.clear(job.tenant_id, job.export_id)
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
        building = {job.export_id for job in jobs} | set(await self._builds.exports_of(tenant_id))
        for export_id in sorted(building):
            await self._archives.discard(tenant_id, export_id)
        await self._archives.discard_tenant(tenant_id)
        await self._builds.forget_tenant(tenant_id)
        return len(jobs)
