"""Clip use cases: upload (cameras), list, download and delete (apps), and the index
kept in step with the clip topic.

An upload is judged as it streams: chunk order and size, the MP4's framing and
duration, the size declared up front; the plaintext is hashed and sealed segment by
segment (clip format v1) into an object that becomes visible only when complete.
It is acknowledged once the object is complete and its ClipIngested event is on
every in-sync replica; any failure before that leaves nothing visible and no key
(the wrapped data key only lives in the object's header).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from privacam_core.clip_format import (
    HEADER_MAX_LENGTH,
    ClipBinding,
    ClipFormatError,
    adecrypt_stream,
    aencrypt_stream,
    read_header,
)
from privacam_core.privacy import Feature, refusal
from services.clip_ingest.domain.errors import (
    AlertsOff,
    CameraBusy,
    CameraPrivate,
    ClipBusy,
    ClipConflict,
    ClipError,
    ClipNotFound,
    ClipTooLarge,
    IntegrityFailure,
    InvalidClip,
    OwnerOnly,
    StorageUnavailable,
)
from services.clip_ingest.domain.fingerprint import fingerprint, fingerprint_key, matches
from services.clip_ingest.domain.model import (
    CLIP_ID,
    CONTENT_TYPE,
    AccessLog,
    Cameras,
    ClipEvents,
    ClipIndex,
    ClipMetrics,
    ClipRecord,
    GeneratedKey,
    Keys,
    Objects,
    UploadMetadata,
    object_name,
)
from services.clip_ingest.domain.mp4 import Mp4Probe, NotMp4
from services.common.clock import Clock

log = logging.getLogger("privacam.clip_ingest")

MAX_CHUNK_BYTES = 256 * 1024
_EARLIEST_CAPTURE = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Limits:
    max_clip_bytes: int
    max_duration: timedelta = timedelta(seconds=6)
    max_capture_skew: timedelta = timedelta(minutes=5)
    segment_size: int = 256 * 1024
    claim_seconds: int = 15
    """How long one upload holds its clip id against a concurrent retry; renewed while the
    upload runs, so a crashed server's claim frees the id for the camera's retry soon."""
    min_chunk_bytes: int = 16 * 1024
    """Fewest bytes in a chunk, the clip's last chunk excepted."""
    max_uploads_per_camera: int = 2
    """Uploads one camera may have in progress at once (in this process)."""
    retry_memory_seconds: int = 24 * 3600
    """How long a stored clip's fingerprint key is remembered, so a retry is compared with
    the stored clip exactly (after that: by size; see domain/fingerprint.py)."""


_LIMIT_REASONS = frozenset({"camera_busy", "small_chunk", "stalled", "too_slow"})
"""Refusals that protect the service from a camera rather than judge a clip: logged."""


class _BreachLog:
    """Logs refusals for breached upload limits, at most one line per reason every
    `interval` seconds (with the count since), so a camera hammering the service cannot
    flood the log. Lines carry the reason and byte count only, never an id."""

    def __init__(self, interval: float = 10.0) -> None:
        self._interval = interval
        self._last: dict[str, float] = {}
        self._since: Counter[str] = Counter()

    def breach(self, reason: str, received: int, now: float) -> None:
        self._since[reason] += 1
        last = self._last.get(reason)
        if last is not None and now - last < self._interval:
            return
        self._last[reason] = now
        log.warning(
            "upload refused: a limit was breached",
            extra={"reason": reason, "bytes_received": received, "count": self._since[reason]},
        )
        self._since[reason] = 0


@dataclass(frozen=True)
class Uploaded:
    record: ClipRecord
    created: bool


class _Received:
    """What an upload has received so far (also what a refusal counts)."""

    def __init__(self) -> None:
        self.bytes = 0


class ClipService:
    def __init__(
        self,
        cameras: Cameras,
        keys: Keys,
        access_log: AccessLog,
        objects: Objects,
        index: ClipIndex,
        events: ClipEvents,
        metrics: ClipMetrics,
        clock: Clock,
        limits: Limits,
    ) -> None:
        self._cameras = cameras
        self._keys = keys
        self._access_log = access_log
        self._objects = objects
        self._index = index
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._limits = limits
        self._uploading: Counter[tuple[str, str]] = Counter()
        self._breaches = _BreachLog()

    # --- upload ----------------------------------------------------------------------

    @contextlib.contextmanager
    def upload_slot(self, tenant_id: str, device_id: str) -> Iterator[None]:
        """One of the camera's places for an upload, held for the whole call; CameraBusy
        when all of them are taken. Counted per process (see the README for replicas)."""
        camera = (tenant_id, device_id)
        limit = self._limits.max_uploads_per_camera
        if self._uploading[camera] >= limit:
            busy = CameraBusy(
                f"this camera already has {limit} uploads in progress, the most it may have "
                "at once; send this clip again when one of them has finished"
            )
            self._refused(busy, 0)
            raise busy
        self._uploading[camera] += 1
        try:
            yield
        finally:
            self._uploading[camera] -= 1
            if not self._uploading[camera]:
                del self._uploading[camera]

    def refused_before_upload(self, error: ClipError) -> None:
        """Count a refusal that came before the upload's metadata did (a stalled start)."""
        self._refused(error, 0)

    def _refused(self, error: ClipError, received: int) -> None:
        self._metrics.refused(error.reason, received)
        if error.reason in _LIMIT_REASONS:
            self._breaches.breach(error.reason, received, self._clock.monotonic())

    def check_metadata(self, metadata: UploadMetadata) -> None:
        if not CLIP_ID.fullmatch(metadata.clip_id):
            raise InvalidClip("clip_id must be 1-64 letters, digits, '_' or '-'")
        if metadata.content_type != CONTENT_TYPE:
            raise InvalidClip(f"content_type must be {CONTENT_TYPE!r}", reason="not_mp4")
        if metadata.size_bytes <= 0:
            raise InvalidClip("size_bytes must be more than 0")
        if metadata.size_bytes > self._limits.max_clip_bytes:
            raise ClipTooLarge(
                f"the clip is {metadata.size_bytes} bytes; at most "
                f"{self._limits.max_clip_bytes} bytes are accepted"
            )
        if len(metadata.sha256) != 32:
            raise InvalidClip("sha256 must be the 32-byte SHA-256 of the whole clip")
        latest = self._clock.now() + self._limits.max_capture_skew
        if not _EARLIEST_CAPTURE <= metadata.captured_at <= latest:
            raise InvalidClip("captured_at must be set, after 2000 and not in the future")

    async def upload(
        self,
        tenant_id: str,
        device_id: str,
        metadata: UploadMetadata,
        chunks: AsyncIterator[tuple[int, bytes]],
    ) -> Uploaded:
        """Store one clip for the calling camera (ids from its certificate)."""
        started = self._clock.monotonic()
        received = _Received()
        try:
            self.check_metadata(metadata)
            settings = await self._cameras.upload_settings(device_id)
            if not settings.alerts_enabled:
                raise AlertsOff(
                    "activity alerts are off for this camera: its owner must turn them on "
                    "before clips are accepted"
                )
            # The camera records nothing while private; a clip that comes anyway is refused.
            refused = refusal(device_id, settings.privacy, self._clock.now(), Feature.CLIP_UPLOAD)
            if refused is not None:
                raise CameraPrivate(refused)
            uploaded = await self._upload_claimed(
                tenant_id, device_id, metadata, chunks, received, settings.retention_days
            )
        except ClipError as error:
            self._refused(error, received.bytes)
            raise
        except asyncio.CancelledError:
            self._metrics.refused("cancelled", received.bytes)
            raise
        if uploaded.created:
            self._metrics.ingested(metadata.size_bytes, self._clock.monotonic() - started)
        return uploaded

    async def _upload_claimed(
        self,
        tenant_id: str,
        device_id: str,
        metadata: UploadMetadata,
        chunks: AsyncIterator[tuple[int, bytes]],
        received: _Received,
        retention_days: int,
    ) -> Uploaded:
        clip_id = metadata.clip_id
        held, existing, remembered = await self._index.claim(
            tenant_id, device_id, clip_id, self._limits.claim_seconds
        )
        if not held:
            raise ClipBusy(
                "another upload of this clip id is in progress; retry when it has finished"
            )
        # The data key is asked for while the index is checked: one round trip less per
        # clip; a retry of a stored clip simply drops the unused key.
        key_task = asyncio.ensure_future(self._keys.generate(tenant_id, device_id, clip_id))
        key_task.add_done_callback(lambda task: task.cancelled() or task.exception())
        renewal = asyncio.ensure_future(self._renew_claim(tenant_id, device_id, clip_id))
        uploaded: Uploaded | None = None
        try:
            if existing is not None:
                if not existing.names(tenant_id, device_id, clip_id):
                    self._metrics.integrity_failure("index")
                    raise IntegrityFailure("the stored entry of this clip is damaged")
                tag = await self._objects.stat(existing.object_name)
                if tag is not None and _same_clip(existing, metadata, tag, remembered):
                    return Uploaded(existing, created=False)
                if tag is not None:
                    raise ClipConflict(
                        "this clip id is already stored with other content; "
                        "use a new id for a new clip"
                    )
                # Indexed but its object is gone (an interrupted deletion): store it again.
            key = await key_task
            uploaded = await self._store(
                tenant_id, device_id, metadata, chunks, received, retention_days, key, existing
            )
            return uploaded
        finally:
            key_task.cancel()
            renewal.cancel()
            if uploaded is None:  # a stored clip's index write ended the claim already
                # Shielded: a cancelled call must still free the id (and abort, below).
                await asyncio.shield(self._index.release(tenant_id, device_id, clip_id))

    async def _renew_claim(self, tenant_id: str, device_id: str, clip_id: str) -> None:
        seconds = self._limits.claim_seconds
        while True:
            await asyncio.sleep(seconds / 3)
            try:
                await self._index.renew(tenant_id, device_id, clip_id, seconds)
            except Exception:  # the upload itself will fail if Redis is gone
                log.warning("could not renew an upload's claim")

    async def _store(
        self,
        tenant_id: str,
        device_id: str,
        metadata: UploadMetadata,
        chunks: AsyncIterator[tuple[int, bytes]],
        received: _Received,
        retention_days: int,
        key: GeneratedKey,
        previous: ClipRecord | None,
    ) -> Uploaded:
        clip_id = metadata.clip_id
        name = object_name(tenant_id, device_id, clip_id)
        key_version, key_period_start = key.version, key.period_start
        probe = Mp4Probe()
        binding = ClipBinding(tenant_id, device_id, clip_id)
        # The tag is of the declared digest and size: the object becomes visible only once
        # _checked has found the clip to be exactly that.
        tag_key = fingerprint_key(key.data_key, binding)
        tag = fingerprint(tag_key, metadata.size_bytes, metadata.sha256)
        writer = self._objects.writer(name, tag)
        try:
            plaintext = self._checked(metadata, chunks, received, probe)
            sealed = aencrypt_stream(
                plaintext,
                key.data_key,
                key.key_reference,
                binding,
                self._limits.segment_size,
            )
            async for segment in sealed:
                await writer.write(segment)
            await writer.complete()
        except BaseException:
            await asyncio.shield(writer.abort())
            raise
        finally:
            del key  # the data key lives no longer than the upload
        assert probe.duration is not None  # _checked finished the probe
        now = self._clock.now()
        record = ClipRecord(
            tenant_id=tenant_id,
            device_id=device_id,
            clip_id=clip_id,
            captured_at=metadata.captured_at,
            ingested_at=now,
            duration=probe.duration,
            size_bytes=metadata.size_bytes,
            content_type=metadata.content_type,
            delete_after=now + timedelta(days=retention_days),
            key_version=key_version,
            key_period_start=key_period_start,
            object_name=name,
        )
        # Once the clip is stored, its event and index entry are written even if the camera
        # gives up (a deadline, a dropped connection): an event may already be on its way,
        # and a retry must then find the index entry rather than store and announce the
        # clip a second time. The claim is released only after that.
        recording = asyncio.ensure_future(self._publish_or_undo(record, previous, tag_key))
        try:
            await asyncio.shield(recording)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await recording
            raise
        return Uploaded(record, created=True)

    async def _checked(
        self,
        metadata: UploadMetadata,
        chunks: AsyncIterator[tuple[int, bytes]],
        received: _Received,
        probe: Mp4Probe,
    ) -> AsyncIterator[bytes]:
        """The plaintext, judged as it arrives; raises at the first fault."""
        digest = hashlib.sha256()
        async for offset, data in chunks:
            if offset != received.bytes:
                raise InvalidClip(
                    f"chunk offset {offset} is out of order: {received.bytes} bytes were sent "
                    "so far",
                    reason="bad_chunk",
                )
            if not 1 <= len(data) <= MAX_CHUNK_BYTES:
                raise InvalidClip(
                    f"a chunk carries 1 to {MAX_CHUNK_BYTES} bytes, not {len(data)}",
                    reason="bad_chunk",
                )
            if received.bytes + len(data) > metadata.size_bytes:
                raise InvalidClip(
                    f"more bytes than the declared size_bytes ({metadata.size_bytes})",
                    reason="bad_chunk",
                )
            least = self._limits.min_chunk_bytes
            if len(data) < least and received.bytes + len(data) != metadata.size_bytes:
                raise InvalidClip(
                    f"a chunk of {len(data)} bytes is too small: every chunk but the clip's "
                    f"last carries at least {least} bytes; nothing was stored, send the clip "
                    "again in larger chunks",
                    reason="small_chunk",
                )
            received.bytes += len(data)
            self._probe(probe, data)
            digest.update(data)
            yield data
        if received.bytes != metadata.size_bytes:
            raise InvalidClip(
                f"the upload ended after {received.bytes} of {metadata.size_bytes} bytes",
                reason="truncated",
            )
        if digest.digest() != metadata.sha256:
            raise InvalidClip(
                "the clip's SHA-256 does not match the sha256 sent; nothing was stored",
                reason="bad_digest",
            )
        try:
            probe.finish()
        except NotMp4 as error:
            raise InvalidClip(str(error), reason="not_mp4") from None
        self._check_duration(probe)

    def _probe(self, probe: Mp4Probe, data: bytes) -> None:
        try:
            probe.feed(data)
        except NotMp4 as error:
            raise InvalidClip(str(error), reason="not_mp4") from None
        self._check_duration(probe)

    def _check_duration(self, probe: Mp4Probe) -> None:
        if probe.duration is not None and probe.duration > self._limits.max_duration:
            limit = self._limits.max_duration.total_seconds()
            raise InvalidClip(
                f"the clip is {probe.duration.total_seconds():.2f} s long; alert clips are at "
                f"most {limit:g} s",
                reason="too_long",
            )

    async def _publish_or_undo(
        self, record: ClipRecord, previous: ClipRecord | None, tag_key: bytes
    ) -> None:
        try:
            await self._events.ingested(record)
        except Exception:
            # Not acknowledged: take the object back so no clip exists that nobody knows of.
            log.warning("clip event not published; removing the stored object")
            try:
                await self._objects.delete(record.object_name)
            except Exception:
                log.exception("stored object of an unpublished clip could not be removed")
            raise StorageUnavailable(
                "the clip could not be recorded (event log unavailable); nothing was kept, "
                "retry later"
            ) from None
        try:
            await self._index.put(
                record,
                previous,
                previous_known=True,
                end_claim=True,
                fingerprint_key=tag_key,
                remember_seconds=self._limits.retry_memory_seconds,
            )
        except Exception:
            # The event is out: the index follower adds the entry when it reads it.
            log.warning("clip index not updated now; the index follower will add it")
            with contextlib.suppress(Exception):
                await self._index.release(record.tenant_id, record.device_id, record.clip_id)

    # --- playback --------------------------------------------------------------------

    async def list_clips(
        self,
        device_id: str,
        start: datetime | None,
        end: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[ClipRecord], str | None]:
        """A page of a camera's clips for the calling app, newest capture first; the
        listing is in the household's access log before anything is read."""
        viewer = await self._cameras.authorize_viewer(device_id, check_pin=False, pin="")
        tenant_id = viewer.owner_tenant_id
        access_id = await self._access_log.record_listing(tenant_id, device_id)
        self._events.accessed(tenant_id, device_id, "", access_id)
        page = await self._index.page(tenant_id, device_id, start, end, cursor, limit)
        records = []
        for stored_as, record in page.entries:
            if record.names(tenant_id, device_id, stored_as):
                records.append(record)
            else:
                # Not this camera's, whatever name it is stored under: never shown.
                self._metrics.integrity_failure("index")
        self._metrics.listed()
        return records, page.next_cursor

    async def download(
        self, device_id: str, clip_id: str, pin: str
    ) -> tuple[ClipRecord, AsyncIterator[bytes]]:
        """The clip's metadata and its plaintext, for the calling app. Logged before the
        data key is asked for (the key manager wants the log's receipt); the first
        segment is authenticated before anything is returned, so a clip stored under a
        name that is not its own yields nothing."""
        if not CLIP_ID.fullmatch(clip_id):
            raise InvalidClip("clip_id must be 1-64 letters, digits, '_' or '-'")
        viewer = await self._cameras.authorize_viewer(device_id, check_pin=True, pin=pin)
        tenant_id = viewer.owner_tenant_id
        record = await self._record(tenant_id, device_id, clip_id)
        access_id, receipt = await self._access_log.record_playback(tenant_id, device_id, clip_id)
        self._events.accessed(tenant_id, device_id, clip_id, access_id)
        name = object_name(tenant_id, device_id, clip_id)  # never the entry's say-so
        try:
            chunks = self._objects.read(name)
            prefix = await _read_prefix(chunks, HEADER_MAX_LENGTH)
            header = read_header(prefix)
            data_key = await self._keys.unwrap(
                header.key_reference, tenant_id, device_id, clip_id, receipt
            )
            plaintext = adecrypt_stream(
                _prepend(prefix, chunks), data_key, ClipBinding(tenant_id, device_id, clip_id)
            )
            del data_key
            first = await anext(plaintext)
        except (ClipFormatError, IntegrityFailure):
            self._metrics.integrity_failure("object")
            self._metrics.played("integrity")
            raise IntegrityFailure(
                "this clip failed its integrity check and cannot be played"
            ) from None
        self._metrics.played("ok")
        return record, self._rest(first, plaintext)

    async def _rest(self, first: bytes, plaintext: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        yield first
        try:
            async for piece in plaintext:
                yield piece
        except ClipFormatError:
            self._metrics.integrity_failure("object")
            raise IntegrityFailure(
                "this clip failed its integrity check part way; the rest cannot be played"
            ) from None

    async def _record(self, tenant_id: str, device_id: str, clip_id: str) -> ClipRecord:
        record = await self._index.get(tenant_id, device_id, clip_id)
        if record is None:
            self._metrics.played("not_found")
            raise ClipNotFound("no such clip on this camera")
        if not record.names(tenant_id, device_id, clip_id):
            self._metrics.integrity_failure("index")
            self._metrics.played("integrity")
            raise IntegrityFailure("this clip's stored entry failed its integrity check")
        return record

    async def delete(self, device_id: str, clip_id: str) -> datetime:
        """The owner deletes a clip now: object, event, index entry, in that order, so a
        retry after any failure finishes the job."""
        if not CLIP_ID.fullmatch(clip_id):
            raise InvalidClip("clip_id must be 1-64 letters, digits, '_' or '-'")
        viewer = await self._cameras.authorize_viewer(device_id, check_pin=False, pin="")
        if not viewer.is_owner:
            raise OwnerOnly("only the camera's owner may delete its clips")
        tenant_id = viewer.owner_tenant_id
        record = await self._index.get(tenant_id, device_id, clip_id)
        if record is None:
            raise ClipNotFound("no such clip on this camera")
        if not record.names(tenant_id, device_id, clip_id):
            self._metrics.integrity_failure("index")
            raise IntegrityFailure("this clip's stored entry failed its integrity check")
        await self._objects.delete(object_name(tenant_id, device_id, clip_id))
        await self._events.deleted(record, "OWNER_REQUEST")
        await self._index.remove(tenant_id, device_id, [clip_id])
        return self._clock.now()

    # --- the clip topic ----------------------------------------------------------------

    async def on_ingested(self, record: ClipRecord) -> None:
        """A ClipIngested event (ours, replayed, or another replica's): index it."""
        if record.names(record.tenant_id, record.device_id, record.clip_id):
            await self._index.put(record)

    async def on_deleted(self, tenant_id: str, device_id: str, clip_ids: Sequence[str]) -> None:
        """A ClipDeleted or ClipsDeleted event (an owner, or retention): drop the entries.
        Idempotent."""
        await self._index.remove(tenant_id, device_id, clip_ids)


def _same_clip(
    existing: ClipRecord, metadata: UploadMetadata, tag: bytes, key: bytes | None
) -> bool:
    """Is a retry's clip the one stored under its id? Exactly, by its fingerprint, while
    the key is remembered; after that (or for an object without a fingerprint) by its
    size, since nothing else about the stored clip can be known without decrypting it."""
    if metadata.size_bytes != existing.size_bytes:
        return False
    if key is None or not tag:
        return True
    return matches(key, metadata.size_bytes, metadata.sha256, tag)


async def _read_prefix(chunks: AsyncIterator[bytes], length: int) -> bytes:
    prefix = bytearray()
    async for chunk in chunks:
        prefix += chunk
        if len(prefix) >= length:
            break
    return bytes(prefix)


async def _prepend(prefix: bytes, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield prefix
    async for chunk in chunks:
        yield chunk
