"""What clip_ingest knows about a clip, and the ports its use cases talk through."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from privacam_core.privacy import Mode

CLIP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
CONTENT_TYPE = "video/mp4"


def object_name(tenant_id: str, device_id: str, clip_id: str) -> str:
    """The MinIO name of a clip: opaque ids only (a camera-chosen clip id may say
    something about the home, so only its hash appears), and nothing but the three ids,
    so a retried upload lands on the same name."""
    digest = hashlib.sha256(clip_id.encode()).hexdigest()
    return f"t/{tenant_id}/d/{device_id}/c/{digest}"


@dataclass(frozen=True)
class ClipRecord:
    """One stored clip: the index entry and the ClipIngested event."""

    tenant_id: str
    device_id: str
    clip_id: str
    captured_at: datetime
    ingested_at: datetime
    duration: timedelta
    size_bytes: int
    content_type: str
    delete_after: datetime
    key_version: int
    key_period_start: datetime | None
    object_name: str

    def names(self, tenant_id: str, device_id: str, clip_id: str) -> bool:
        """True when the record is the clip asked for, and its object name is derived from
        those ids (an entry copied under another name fails this)."""
        return (self.tenant_id, self.device_id, self.clip_id) == (
            tenant_id,
            device_id,
            clip_id,
        ) and self.object_name == object_name(tenant_id, device_id, clip_id)


@dataclass(frozen=True)
class CameraSettings:
    alerts_enabled: bool
    retention_days: int
    privacy: Mode | None = None
    """The owner's current privacy statement's mode (None: never set)."""


@dataclass(frozen=True)
class Viewer:
    """An app viewing a camera, as device_auth authorized it."""

    owner_tenant_id: str
    is_owner: bool


@dataclass(frozen=True)
class GeneratedKey:
    data_key: bytes
    key_reference: bytes
    """The serialized wrapped key, stored in the clip header."""
    version: int
    period_start: datetime | None


@dataclass(frozen=True)
class UploadMetadata:
    clip_id: str
    captured_at: datetime
    content_type: str
    size_bytes: int
    sha256: bytes


@dataclass(frozen=True)
class Page:
    entries: list[tuple[str, ClipRecord]]
    """(clip id the entry is stored under, the entry as stored), newest capture first."""
    next_cursor: str | None


class Cameras(Protocol):
    async def upload_settings(self, device_id: str) -> CameraSettings:
        """Settings of a camera uploading (device_auth GetCameraSettings)."""
        ...

    async def authorize_viewer(self, device_id: str, check_pin: bool, pin: str) -> Viewer:
        """May the calling app view this camera's clips? Raises NotFound, PermissionDenied
        or ResourceExhausted exactly as device_auth answered."""
        ...


class Keys(Protocol):
    async def generate(self, tenant_id: str, device_id: str, clip_id: str) -> GeneratedKey: ...

    async def unwrap(
        self, key_reference: bytes, tenant_id: str, device_id: str, clip_id: str, receipt: object
    ) -> bytes:
        """The clip's data key against a log receipt; IntegrityFailure if the key was
        wrapped for another tenant, camera or clip."""
        ...


class AccessLog(Protocol):
    async def record_listing(self, tenant_id: str, device_id: str) -> str:
        """Append a listing to the tenant's log; the access id once it is durable."""
        ...

    async def record_playback(
        self, tenant_id: str, device_id: str, clip_id: str
    ) -> tuple[str, object]:
        """Append a playback; (access id, receipt) once it is durable."""
        ...


class ObjectWriter(Protocol):
    async def write(self, data: bytes) -> None: ...
    async def complete(self) -> None:
        """Make the object visible, whole; nothing is visible before."""
        ...

    async def abort(self) -> None:
        """Drop whatever was written; nothing becomes visible. Never raises."""
        ...


class Objects(Protocol):
    def writer(self, name: str, fingerprint: bytes) -> ObjectWriter:
        """A new object; its fingerprint (domain/fingerprint.py: keyed, nothing a reader
        of the bucket can check a guess against) is kept as its metadata so that a retry
        can tell the same clip from another under the same id."""
        ...

    async def stat(self, name: str) -> bytes | None:
        """The fingerprint of a stored object (empty if it carries none); None if there
        is no object."""
        ...

    def read(self, name: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks; NotFound if it is gone."""
        ...

    async def delete(self, name: str) -> None:
        """Idempotent."""
        ...


class ClipIndex(Protocol):
    async def claim(
        self, tenant_id: str, device_id: str, clip_id: str, seconds: int
    ) -> tuple[bool, ClipRecord | None, bytes | None]:
        """Hold a clip id for one upload at a time (False if another holds it), the entry
        stored under it now, and its remembered fingerprint key if any (one round trip)."""
        ...

    async def release(self, tenant_id: str, device_id: str, clip_id: str) -> None: ...

    async def renew(self, tenant_id: str, device_id: str, clip_id: str, seconds: int) -> None:
        """Keep holding a claim while its upload makes progress."""
        ...

    async def put(
        self,
        record: ClipRecord,
        previous: ClipRecord | None = None,
        previous_known: bool = False,
        end_claim: bool = False,
        fingerprint_key: bytes | None = None,
        remember_seconds: int = 0,
    ) -> None:
        """Store the entry, replacing `previous` when the caller knows what was there (else
        it is looked up); `end_claim` ends the upload's claim on the id in the same write,
        and a `fingerprint_key` is remembered for `remember_seconds` (0: not at all)."""
        ...

    async def get(self, tenant_id: str, device_id: str, clip_id: str) -> ClipRecord | None:
        """The entry stored under these ids, whatever it says (the caller checks it)."""
        ...

    async def page(
        self,
        tenant_id: str,
        device_id: str,
        start: datetime | None,
        end: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> Page:
        """Entries stored under the camera, newest capture first."""
        ...

    async def remove(self, tenant_id: str, device_id: str, clip_ids: Sequence[str]) -> None:
        """Drop these entries of one camera and their remembered fingerprint keys (absent
        ones are fine), all at once."""
        ...


class ClipEvents(Protocol):
    async def ingested(self, record: ClipRecord) -> None:
        """Publish ClipIngested and wait for every in-sync replica."""
        ...

    async def deleted(self, record: ClipRecord, reason: str) -> None:
        """Publish ClipDeleted (reason: OWNER_REQUEST) and wait for the replicas."""
        ...

    def accessed(self, tenant_id: str, device_id: str, clip_id: str, access_id: str) -> None:
        """ClipAccessed, for notifications; not awaited (the access log is authoritative)."""
        ...


class ClipMetrics(Protocol):
    def ingested(self, size: int, seconds: float) -> None: ...
    def refused(self, reason: str, size: int) -> None: ...
    def played(self, result: str) -> None: ...
    def listed(self) -> None: ...
    def integrity_failure(self, where: str) -> None: ...
