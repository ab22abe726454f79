"""Building exports: one replica at a time per export (a lease), in bounded memory, going
on after a crash from the last uploaded part.

The request is durable before anyone builds it: `RequestExport` stores the job and queues
it in one transaction, and the consumer of `ExportRequested` only makes sure it is queued
and commits. Each replica's build loop takes the oldest queued export whose lease is free
and holds the lease while it builds, renewing it; a replica that dies stops renewing, and
another (or the same one, restarted) takes the export over once the lease lapses.

An attempt either goes on from the saved checkpoint (`archive.py`: same upload, same key,
the entry that was being written regenerated and checked, then the next parts) or, when
there is none or it cannot be used, starts over cleanly: every unfinished upload of the
export is aborted first, then a new key, a new upload and a fresh clip list. Attempts are
counted when they begin, so an export that kills every replica that builds it ends
`FAILED` after `max_attempts` instead of going round for ever. An unreachable peer or store
(or a MinIO refusal) is retried after `retry_delay`, within the same count; any other
error fails the export with its reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Protocol

from privacam_core import clip_format
from services.common.clock import Clock
from services.common.errors import (
    PrivacamError,
    Unavailable,
    object_store_refusal,
    report_store_refusal,
    store_unreachable,
)
from services.retention.domain.archive import (
    Checkpoint,
    ResumeMismatch,
    SealedArchive,
    UploadLost,
    ZipStream,
    json_document,
)
from services.retention.domain.exports import (
    OPEN,
    ArchiveStore,
    ExportEvents,
    ExportJob,
    ExportMetrics,
    ExportSources,
    ExportState,
    ExportStore,
    archive_binding,
)
from services.retention.domain.model import ScheduledClip
from services.retention.domain.ports import Schedule

log = logging.getLogger("privacam.retention.exports")

FORMAT = "privacam-export-v1"
HEAD_ITEMS = 3  # account, access log, clip list: export.json, before the clips


def clip_file(clip: ScheduledClip) -> str:
    return f"clips/{clip.device_id}/{clip.clip_id}.mp4"


@dataclass(frozen=True, slots=True)
class BuildState:
    """What is kept of an export's build between attempts."""

    attempts: int
    clips_total: int
    upload_id: str
    header: bytes
    checkpoint: Checkpoint | None


class BuildProgress(Protocol):
    """Build state of open exports. Every write is refused (False, or nothing written) once
    the export's job is gone, so a builder that missed a delete cannot bring state back."""

    async def load(self, tenant_id: str, export_id: str) -> BuildState | None: ...

    async def attempt(self, tenant_id: str, export_id: str) -> int:
        """Count an attempt beginning; how many there have been (0 if the job is gone)."""
        ...

    async def begin(self, tenant_id: str, export_id: str, clips: Sequence[ScheduledClip]) -> bool:
        """A fresh start: this clip list, no upload, no checkpoint (the attempts stay)."""
        ...

    async def started(self, tenant_id: str, export_id: str, upload_id: str, header: bytes) -> bool:
        """The upload and the archive's header, kept before any part is sent."""
        ...

    def clips(self, tenant_id: str, export_id: str, start: int) -> AsyncIterator[ScheduledClip]:
        """The export's clip list from index `start`, read a page at a time."""
        ...

    async def save(
        self, tenant_id: str, export_id: str, checkpoint: Checkpoint, saved_entries: int
    ) -> bool:
        """Replace the checkpoint; the entries before `saved_entries` are already stored."""
        ...

    async def builds(self) -> list[tuple[str, str]]:
        """(tenant, export) of every build state."""
        ...

    async def exports_of(self, tenant_id: str) -> list[str]: ...

    async def clear(self, tenant_id: str, export_id: str) -> None: ...

    async def forget_tenant(self, tenant_id: str) -> None: ...


class Lease(Protocol):
    async def try_acquire(self) -> bool: ...

    async def extend(self) -> bool:
        """Renew the hold; False if it was lost (lapsed and taken by another)."""
        ...

    async def release(self) -> None: ...


class ExportLeases(Protocol):
    def lease(self, tenant_id: str, export_id: str) -> Lease: ...


class _Gone(Exception):
    """The export was deleted while it was being built."""


def _transient(error: Exception) -> bool:
    """Worth another attempt later: a peer or store out of reach, or MinIO refusing this
    service's user (logged and counted as a refusal; a policy being re-applied heals,
    a wrong one fails the export once its attempts are spent)."""
    return (
        isinstance(error, Unavailable)
        or store_unreachable(error)
        or object_store_refusal(error) is not None
    )


class _Parts:
    """The archive's parts go to the export's upload."""

    def __init__(
        self, archives: ArchiveStore, metrics: ExportMetrics, job: ExportJob, upload_id: str
    ) -> None:
        self._archives = archives
        self._metrics = metrics
        self._job = job
        self._upload_id = upload_id

    async def upload_part(self, number: int, data: clip_format.BytesLike) -> str:
        etag = await self._archives.upload_part(
            self._job.tenant_id, self._job.export_id, self._upload_id, number, data
        )
        self._metrics.part_uploaded(len(data))
        return etag


class ExportBuilder:
    def __init__(
        self,
        store: ExportStore,
        sources: ExportSources,
        archives: ArchiveStore,
        progress: BuildProgress,
        leases: ExportLeases,
        schedule: Schedule,
        events: ExportEvents,
        metrics: ExportMetrics,
        clock: Clock,
        ttl: timedelta,
        *,
        renew_seconds: float,
        max_attempts: int = 5,
        retry_delay: timedelta = timedelta(seconds=10),
        keys_ahead: int = 4,
    ) -> None:
        self._store = store
        self._sources = sources
        self._archives = archives
        self._progress = progress
        self._leases = leases
        self._schedule = schedule
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._ttl = ttl
        self._renew = renew_seconds
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay
        self._keys_ahead = keys_ahead

    # --- taking work ----------------------------------------------------------------------

    async def build_next(self) -> bool:
        """Build (or go on with) the oldest queued export no replica holds; False if none."""
        for tenant_id, export_id in await self._store.queued(self._clock.now(), 32):
            lease = self._leases.lease(tenant_id, export_id)
            if not await lease.try_acquire():
                continue
            try:
                await self._hold(lease, tenant_id, export_id)
            finally:
                await lease.release()
            return True
        return False

    async def _hold(self, lease: Lease, tenant_id: str, export_id: str) -> None:
        """Build while renewing the lease; stop at once if it is lost."""
        work = asyncio.create_task(self.build(tenant_id, export_id))
        try:
            while not (await asyncio.wait({work}, timeout=self._renew))[0]:
                if not await lease.extend():
                    log.warning("lost the lease of an export being built; another replica has it")
                    break
        finally:
            if not work.done():
                work.cancel()
            await asyncio.gather(work, return_exceptions=True)
        error = None if work.cancelled() else work.exception()
        if error is not None:
            raise error

    async def build(self, tenant_id: str, export_id: str) -> None:
        """One attempt at an export (the caller holds its lease). Its outcome is in the
        job; it raises only if the stores fail while that outcome is being recorded."""
        job = await self._store.get(tenant_id, export_id)
        if job is None or job.state not in OPEN:
            await self._forget(tenant_id, export_id)
            return
        self._metrics.building(1)
        attempts = 0
        try:
            attempts = await self._progress.attempt(tenant_id, export_id)
            if not attempts:
                raise _Gone
            if attempts > self._max_attempts:
                await self._fail(job, f"the export could not be built in {attempts - 1} attempts")
                return
            await self._attempt(job)
        except _Gone:
            await self._forget(tenant_id, export_id)
        except Exception as error:
            if _transient(error) and attempts < self._max_attempts:
                if not report_store_refusal(error, task="export build"):
                    log.warning("export build interrupted; retrying later", exc_info=True)
                await self._store.defer(tenant_id, export_id, self._clock.now() + self._retry_delay)
            elif isinstance(error, PrivacamError):
                await self._fail(job, str(error))
            else:
                log.exception("export failed")
                await self._fail(job, "internal error while assembling the export")
        finally:
            self._metrics.building(-1)

    async def _forget(self, tenant_id: str, export_id: str) -> None:
        """The job is gone: nothing of the build stays (its state last, so that a failed
        abort leaves the janitor something to go on)."""
        await self._store.dequeue(tenant_id, export_id)
        await self._archives.discard(tenant_id, export_id)
        await self._progress.clear(tenant_id, export_id)

    async def _fail(self, job: ExportJob, reason: str) -> None:
        """The job says FAILED and why before anything is cleaned up: a cleanup that fails
        (the store away) is left to the janitor, and the job is not attempted again."""
        current = await self._store.get(job.tenant_id, job.export_id)
        if current is None:
            await self._store.dequeue(job.tenant_id, job.export_id)
        else:
            failed = replace(current, state=ExportState.FAILED, failure_reason=reason[:256])
            if await self._store.update(failed):
                await self._events.export_deleted(failed)
        try:
            await self._archives.discard(job.tenant_id, job.export_id)
        except Exception:
            log.warning("a failed export's upload could not be aborted now", exc_info=True)
            return
        await self._progress.clear(job.tenant_id, job.export_id)

    # --- one attempt ----------------------------------------------------------------------

    async def _attempt(self, job: ExportJob) -> None:
        tenant, export = job.tenant_id, job.export_id
        state = await self._progress.load(tenant, export)
        if state is not None and state.checkpoint is not None and state.upload_id:
            header = clip_format.read_header(state.header)
            key = await self._archives.unwrap_key(tenant, export, header.key_reference)
            sealer = clip_format.SegmentSealer(key, state.header, archive_binding(tenant, export))
            try:
                self._metrics.attempt("resumed")
                await self._run(job, sealer, state.upload_id, state.clips_total, state.checkpoint)
                return
            except (ResumeMismatch, UploadLost) as error:
                log.warning("an export's checkpoint cannot be used; starting it over: %s", error)
            start = "restarted"
        else:
            start = "restarted" if state is not None and state.upload_id else "fresh"
        self._metrics.attempt(start)
        # Start over: nothing of an earlier attempt is kept, not even its unfinished parts.
        await self._archives.abort_uploads(tenant, export)
        clips = await self._schedule.tenant_clips(tenant)
        if not await self._progress.begin(tenant, export, clips):
            raise _Gone
        total = len(clips)
        del clips
        key, reference = await self._archives.new_key(tenant, export)
        sealer = clip_format.SegmentSealer.new(key, reference, archive_binding(tenant, export))
        upload_id = await self._archives.start_upload(tenant, export)
        if not await self._progress.started(tenant, export, upload_id, sealer.header):
            await self._archives.abort_uploads(tenant, export)
            raise _Gone
        await self._run(job, sealer, upload_id, total, None)

    async def _run(
        self,
        job: ExportJob,
        sealer: clip_format.SegmentSealer,
        upload_id: str,
        clips_total: int,
        checkpoint: Checkpoint | None,
    ) -> None:
        tenant, export = job.tenant_id, job.export_id
        total = HEAD_ITEMS + clips_total
        saved = len(checkpoint.entries) if checkpoint else 0

        async def on_part() -> None:
            nonlocal saved
            if not archive.entries:
                return  # export.json is not reproducible: no resuming inside it
            point = Checkpoint(
                sealed_segments=out.sealed_segments,
                entry_start=out.entry_start,
                prefix_digest=out.prefix_digest(),
                etags=tuple(out.etags),
                entries=tuple(archive.entries),
            )
            if not await self._progress.save(tenant, export, point, saved):
                raise _Gone
            saved = len(point.entries)

        out = SealedArchive(
            sealer, _Parts(self._archives, self._metrics, job, upload_id), on_part, checkpoint
        )
        archive = ZipStream(out, job.requested_at, checkpoint.entries if checkpoint else ())
        if checkpoint is None:
            job = await self._advance(job, 0, total)
            await archive.add("export.json", self._document(job), deflate=True)
        first = len(archive.entries) - 1
        job = await self._advance(job, HEAD_ITEMS + first, total)
        clips = self._with_keys(self._progress.clips(tenant, export, first))
        async with contextlib.aclosing(clips):
            async for clip, key in clips:
                await archive.add(clip_file(clip), self._sources.clip_media(clip, key))
                job = await self._advance(job, HEAD_ITEMS + len(archive.entries) - 1, total)
        await archive.close()
        size = await out.finish()
        await self._archives.complete_upload(tenant, export, upload_id, out.etags)
        digest = out.sha256
        if digest is None:  # resumed: hash what was stored, reading it back
            digest = await self._stored_digest(job, sealer)
        now = self._clock.now()
        ready = replace(
            job,
            state=ExportState.READY,
            items_done=total,
            items_total=total,
            ready_at=now,
            expires_at=now + self._ttl,
            size_bytes=size,
            sha256=digest,
        )
        if not await self._store.update(ready):
            await self._archives.discard(tenant, export)
            raise _Gone
        await self._progress.clear(tenant, export)
        await self._events.export_ready(ready)

    async def _advance(self, job: ExportJob, done: int, total: int) -> ExportJob:
        job = replace(job, state=ExportState.BUILDING, items_done=done, items_total=total)
        if not await self._store.update(job):
            raise _Gone
        return job

    async def _document(self, job: ExportJob) -> AsyncIterator[bytes]:
        """export.json. The account is read first: device_auth logs that read, and the log
        listed next then holds it (and nothing this build decrypts later)."""
        tenant = job.tenant_id
        account = await self._sources.account(tenant, job.export_id)
        fields: dict[str, Any] = {
            "format": FORMAT,
            "export_id": job.export_id,
            "tenant_id": tenant,
            "requested_at": job.requested_at.isoformat(),
            "account": account,
        }
        lists = {
            "access_log": self._sources.access_log(tenant),
            "clips": self._clip_list(tenant, job.export_id),
        }
        async for piece in json_document(fields, lists):
            yield piece

    async def _clip_list(
        self, tenant_id: str, export_id: str
    ) -> AsyncIterator[list[dict[str, Any]]]:
        page: list[dict[str, Any]] = []
        async for clip in self._progress.clips(tenant_id, export_id, 0):
            page.append(
                {
                    "device_id": clip.device_id,
                    "clip_id": clip.clip_id,
                    "delete_at": clip.due_at.isoformat(),
                    "file": clip_file(clip),
                }
            )
            if len(page) == 500:
                yield page
                page = []
        yield page

    async def _with_keys(
        self, clips: AsyncIterator[ScheduledClip]
    ) -> AsyncGenerator[tuple[ScheduledClip, bytes]]:
        """Clips with their data keys, a few keys fetched ahead while a clip is written."""
        ahead: deque[tuple[ScheduledClip, asyncio.Task[bytes]]] = deque()
        try:
            async for clip in clips:
                ahead.append((clip, asyncio.create_task(self._sources.clip_key(clip))))
                if len(ahead) > self._keys_ahead:
                    clip, task = ahead.popleft()
                    yield clip, await task
            while ahead:
                clip, task = ahead.popleft()
                yield clip, await task
        finally:
            for _, task in ahead:
                task.cancel()
            await asyncio.gather(*(task for _, task in ahead), return_exceptions=True)

    async def _stored_digest(self, job: ExportJob, sealer: clip_format.SegmentSealer) -> bytes:
        digest = hashlib.sha256()
        key = await self._archives.unwrap_key(
            job.tenant_id,
            job.export_id,
            clip_format.read_header(sealer.header).key_reference,
        )
        sealed = self._archives.sealed(job.tenant_id, job.export_id)
        binding = archive_binding(job.tenant_id, job.export_id)
        async for piece in clip_format.adecrypt_stream(sealed, key, binding):
            digest.update(piece)
        return digest.digest()

    # --- leftovers ------------------------------------------------------------------------

    async def clean_abandoned(self) -> int:
        """Abort the uploads (and delete the archive) of exports whose build state outlived
        their job: a build that died after its export was deleted, a cleanup that failed.
        Driven by this environment's own build state rather than by listing the bucket,
        which MinIO cannot do by prefix and which environments may share. What a lost
        Redis leaves behind, MinIO drops after 24 h (its stale-upload expiry)."""
        cleaned = 0
        for tenant_id, export_id in await self._progress.builds():
            job = await self._store.get(tenant_id, export_id)
            if job is not None and job.state in OPEN:
                continue
            if job is not None and job.state is ExportState.READY:
                await self._archives.abort_uploads(tenant_id, export_id)
            else:
                await self._archives.discard(tenant_id, export_id)
            await self._progress.clear(tenant_id, export_id)
            cleaned += 1
        return cleaned
