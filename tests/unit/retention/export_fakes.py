"""Fakes of the export builder's ports: an S3-like store on disk (parts of at least 5 MiB
but the last, checked at completion), build progress and leases in memory, and sources
whose clips are made up on the fly, so that nothing but the builder holds export bytes in
memory and a test can measure what it holds."""

from __future__ import annotations

import hashlib
import os
import random
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privacam_core.clip_format import BytesLike
from services.common.errors import FailedPrecondition
from services.retention.domain.archive import Checkpoint, UploadLost
from services.retention.domain.export_build import BuildState
from services.retention.domain.exports import ExportJob, ExportState
from services.retention.domain.model import ScheduledClip
from tests.unit.retention.fakes import MemoryExportStore

MIN_PART = 5 * 1024 * 1024
CHUNK = 64 * 1024


class Killed(BaseException):
    """The process dies here (kill -9): nothing catches it and nothing after it runs."""


def clip_bytes(clip: ScheduledClip, size: int) -> AsyncIterator[bytes]:
    """A clip's made-up plaintext: the same bytes every time, never held whole."""

    async def chunks() -> AsyncIterator[bytes]:
        generator = random.Random(clip.member)  # test data, not secrets
        left = size
        while left:
            take = min(CHUNK, left)
            yield generator.randbytes(take)
            left -= take

    return chunks()


class StreamSources:
    def __init__(self, clip_size: int = 10_000) -> None:
        self.clip_size = clip_size
        self.account_reads = 0
        self.keys_released: list[str] = []
        self.refuse_clip: str | None = None
        self.kill_at_clip: tuple[str, int] | None = None
        """(clip id, bytes into it) where clip_media kills the process."""
        self.log_pages: list[list[dict[str, Any]]] = [
            [{"index": 0, "service": "device_auth"}],
            [{"index": 1}],
        ]

    async def account(self, tenant_id: str, export_id: str) -> dict[str, Any]:
        self.account_reads += 1
        return {"tenant_id": tenant_id, "login": f"login-{tenant_id}"}

    async def access_log(self, tenant_id: str) -> AsyncIterator[list[dict[str, Any]]]:
        for page in self.log_pages:
            yield [entry | {"tenant_id": tenant_id} for entry in page]

    async def clip_key(self, clip: ScheduledClip) -> bytes:
        if clip.clip_id == self.refuse_clip:
            raise FailedPrecondition("receipt refused")
        self.keys_released.append(clip.clip_id)
        return b"k" * 32

    async def clip_media(self, clip: ScheduledClip, data_key: bytes) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in clip_bytes(clip, self.clip_size):
            kill = self.kill_at_clip
            if kill is not None and kill[0] == clip.clip_id and sent + len(chunk) > kill[1]:
                raise Killed
            sent += len(chunk)
            yield chunk


@dataclass
class _Upload:
    tenant_id: str
    export_id: str
    parts: dict[int, tuple[Path, str]] = field(default_factory=dict)


class DiskArchiveStore:
    """Objects and parts as files; keys by reference; every unwrap recorded (logged)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.keys: dict[bytes, bytes] = {}
        self.uploads: dict[str, _Upload] = {}
        self.part_calls: list[tuple[str, int]] = []
        self.unwrapped: list[tuple[str, str]] = []
        self.aborted: list[str] = []
        self.before_part: Callable[[int], None] | None = None
        self.before_complete: Callable[[], None] | None = None
        self.after_complete: Callable[[], None] | None = None

    def path(self, tenant_id: str, export_id: str) -> Path:
        return self.root / f"{tenant_id}__{export_id}.zip.pcv1"

    async def new_key(self, tenant_id: str, export_id: str) -> tuple[bytes, bytes]:
        reference = f"wrapped-{uuid.uuid4()}".encode()
        self.keys[reference] = os.urandom(32)
        return self.keys[reference], reference

    async def unwrap_key(self, tenant_id: str, export_id: str, key_reference: bytes) -> bytes:
        self.unwrapped.append((tenant_id, export_id))
        return self.keys[key_reference]

    async def header(self, tenant_id: str, export_id: str) -> bytes:
        path = self.path(tenant_id, export_id)
        if not path.exists():
            raise FailedPrecondition("the stored export is gone; request a new one")
        with path.open("rb") as file:
            return file.read(549)

    async def sealed(self, tenant_id: str, export_id: str) -> AsyncIterator[bytes]:
        with self.path(tenant_id, export_id).open("rb") as file:
            while chunk := file.read(256 * 1024):
                yield chunk

    async def start_upload(self, tenant_id: str, export_id: str) -> str:
        upload_id = str(uuid.uuid4())
        self.uploads[upload_id] = _Upload(tenant_id, export_id)
        return upload_id

    async def upload_part(
        self, tenant_id: str, export_id: str, upload_id: str, number: int, data: BytesLike
    ) -> str:
        if self.before_part is not None:
            self.before_part(number)
        upload = self.uploads.get(upload_id)
        if upload is None:
            raise UploadLost("the export's upload is gone")
        path = self.root / f"{upload_id}.{number}"
        path.write_bytes(data)
        etag = hashlib.md5(data).hexdigest()  # noqa: S324 - S3's ETag
        upload.parts[number] = (path, etag)
        self.part_calls.append((upload_id, number))
        return etag

    async def complete_upload(
        self, tenant_id: str, export_id: str, upload_id: str, etags: Sequence[str]
    ) -> None:
        if self.before_complete is not None:
            self.before_complete()
        upload = self.uploads.pop(upload_id, None)
        if upload is None:
            raise UploadLost("the export's upload is gone")
        paths = []
        for number, etag in enumerate(etags, start=1):
            path, stored = upload.parts[number]
            assert stored == etag, f"part {number}: ETag differs"
            if number < len(etags):
                assert path.stat().st_size >= MIN_PART, f"part {number} is under 5 MiB"
            paths.append(path)
        with self.path(tenant_id, export_id).open("wb") as out:
            for path in paths:
                out.write(path.read_bytes())
        for path, _ in upload.parts.values():
            path.unlink()
        if self.after_complete is not None:
            self.after_complete()

    async def abort_uploads(self, tenant_id: str, export_id: str) -> int:
        mine = [
            upload_id
            for upload_id, u in self.uploads.items()
            if (u.tenant_id, u.export_id) == (tenant_id, export_id)
        ]
        for upload_id in mine:
            self.aborted.append(upload_id)
            for path, _ in self.uploads.pop(upload_id).parts.values():
                path.unlink()
        return len(mine)

    async def discard(self, tenant_id: str, export_id: str) -> None:
        self.path(tenant_id, export_id).unlink(missing_ok=True)
        await self.abort_uploads(tenant_id, export_id)

    async def discard_tenant(self, tenant_id: str) -> int:
        names = list(self.root.glob(f"{tenant_id}__*.zip.pcv1"))
        for path in names:
            path.unlink()
        return len(names)

    def leftovers(self) -> list[Path]:
        """Files that are neither a finished archive: parts of unfinished uploads."""
        return [p for p in self.root.iterdir() if not p.name.endswith(".zip.pcv1")]


class MemoryBuildProgress:
    def __init__(self, store: MemoryExportStore) -> None:
        self.store = store
        self.states: dict[tuple[str, str], dict[str, Any]] = {}
        self.saves = 0

    def _open(self, tenant_id: str, export_id: str) -> dict[str, Any] | None:
        if (tenant_id, export_id) not in self.store.jobs:
            return None
        return self.states.setdefault(
            (tenant_id, export_id),
            {"attempts": 0, "clips": [], "upload_id": "", "header": b"", "checkpoint": None},
        )

    async def load(self, tenant_id: str, export_id: str) -> BuildState | None:
        state = self.states.get((tenant_id, export_id))
        if state is None:
            return None
        return BuildState(
            state["attempts"],
            len(state["clips"]),
            state["upload_id"],
            state["header"],
            state["checkpoint"],
        )

    async def attempt(self, tenant_id: str, export_id: str) -> int:
        state = self._open(tenant_id, export_id)
        if state is None:
            return 0
        state["attempts"] += 1
        return int(state["attempts"])

    async def begin(self, tenant_id: str, export_id: str, clips: Sequence[ScheduledClip]) -> bool:
        state = self._open(tenant_id, export_id)
        if state is None:
            return False
        state.update(clips=list(clips), upload_id="", header=b"", checkpoint=None)
        return True

    async def started(self, tenant_id: str, export_id: str, upload_id: str, header: bytes) -> bool:
        state = self._open(tenant_id, export_id)
        if state is None:
            return False
        state.update(upload_id=upload_id, header=header)
        return True

    async def clips(
        self, tenant_id: str, export_id: str, start: int
    ) -> AsyncIterator[ScheduledClip]:
        for clip in self.states[(tenant_id, export_id)]["clips"][start:]:
            yield clip

    async def save(
        self, tenant_id: str, export_id: str, checkpoint: Checkpoint, saved_entries: int
    ) -> bool:
        state = self._open(tenant_id, export_id)
        if state is None:
            return False
        previous = state["checkpoint"]
        assert saved_entries == (len(previous.entries) if previous else 0)
        state["checkpoint"] = checkpoint
        self.saves += 1
        return True

    async def builds(self) -> list[tuple[str, str]]:
        return sorted(self.states)

    async def exports_of(self, tenant_id: str) -> list[str]:
        return [export for tenant, export in sorted(self.states) if tenant == tenant_id]

    async def clear(self, tenant_id: str, export_id: str) -> None:
        self.states.pop((tenant_id, export_id), None)

    async def forget_tenant(self, tenant_id: str) -> None:
        for key in [k for k in self.states if k[0] == tenant_id]:
            del self.states[key]


class MemoryLeases:
    def __init__(self) -> None:
        self.holders: dict[tuple[str, str], object] = {}

    def lease(self, tenant_id: str, export_id: str) -> MemoryLease:
        return MemoryLease(self, (tenant_id, export_id))


class MemoryLease:
    def __init__(self, leases: MemoryLeases, key: tuple[str, str]) -> None:
        self._leases = leases
        self._key = key
        self._token = object()

    async def try_acquire(self) -> bool:
        return self._leases.holders.setdefault(self._key, self._token) is self._token

    async def extend(self) -> bool:
        return self._leases.holders.get(self._key) is self._token

    async def release(self) -> None:
        if self._leases.holders.get(self._key) is self._token:
            del self._leases.holders[self._key]


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, ExportState]] = []

    async def export_requested(self, job: ExportJob) -> None:
        self.seen.append(("requested", job.state))

    async def export_ready(self, job: ExportJob) -> None:
        self.seen.append(("ready", job.state))

    async def export_deleted(self, job: ExportJob) -> None:
        self.seen.append(("deleted", job.state))


class Metrics:
    def __init__(self) -> None:
        self.in_progress = 0
        self.attempts: list[str] = []
        self.part_bytes = 0

    def building(self, delta: int) -> None:
        self.in_progress += delta

    def attempt(self, start: str) -> None:
        self.attempts.append(start)

    def part_uploaded(self, size: int) -> None:
        self.part_bytes += size
