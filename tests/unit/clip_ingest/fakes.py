"""In-memory ports for clip_ingest's domain tests (the integration tests use the real stack)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from services.clip_ingest.domain.errors import ClipNotFound, IntegrityFailure, StorageUnavailable
from services.clip_ingest.domain.model import (
    CameraSettings,
    ClipRecord,
    GeneratedKey,
    Page,
    Viewer,
)
from services.clip_ingest.domain.service import ClipService, Limits
from services.common.clock import FakeClock
from services.common.errors import NotFound


class FakeCameras:
    def __init__(self) -> None:
        self.settings: dict[str, CameraSettings] = {}
        self.viewers: dict[str, Viewer] = {}
        self.pin_checks: list[tuple[str, bool, str]] = []

    async def upload_settings(self, device_id: str) -> CameraSettings:
        return self.settings[device_id]

    async def authorize_viewer(self, device_id: str, check_pin: bool, pin: str) -> Viewer:
        self.pin_checks.append((device_id, check_pin, pin))
        if device_id not in self.viewers:
            raise NotFound("no such camera")
        return self.viewers[device_id]


class FakeKeys:
    """Wraps by naming the context in the reference; unwrap refuses another context."""

    def __init__(self, log: list[str]) -> None:
        self.keys: dict[bytes, bytes] = {}
        self.generated = 0
        self.log = log

    async def generate(self, tenant_id: str, device_id: str, clip_id: str) -> GeneratedKey:
        self.generated += 1
        reference = json.dumps([tenant_id, device_id, clip_id, self.generated]).encode()
        self.keys[reference] = os.urandom(32)
        return GeneratedKey(self.keys[reference], reference, 3, None)

    async def unwrap(
        self, key_reference: bytes, tenant_id: str, device_id: str, clip_id: str, receipt: object
    ) -> bytes:
        self.log.append(f"unwrap:{receipt}")
        if json.loads(key_reference)[:3] != [tenant_id, device_id, clip_id]:
            raise IntegrityFailure("the clip's key is not this clip's")
        return self.keys[key_reference]


class FakeAccessLog:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def record_listing(self, tenant_id: str, device_id: str) -> str:
        self.log.append(f"listing:{tenant_id}:{device_id}")
        return "access-list"

    async def record_playback(
        self, tenant_id: str, device_id: str, clip_id: str
    ) -> tuple[str, object]:
        self.log.append(f"playback:{tenant_id}:{device_id}:{clip_id}")
        return "access-play", "receipt-1"


class FakeWriter:
    def __init__(self, objects: FakeObjects, name: str, fingerprint: bytes) -> None:
        self.objects, self.name, self.fingerprint = objects, name, fingerprint
        self.data = bytearray()

    async def write(self, data: bytes) -> None:
        if self.objects.fail_writes:
            raise StorageUnavailable("clip storage is unavailable; nothing was kept, retry later")
        self.objects.pending.add(self.name)
        self.data += data

    async def complete(self) -> None:
        if self.objects.fail_writes:
            raise StorageUnavailable("clip storage is unavailable; nothing was kept, retry later")
        self.objects.pending.discard(self.name)
        self.objects.stored[self.name] = (bytes(self.data), self.fingerprint)

    async def abort(self) -> None:
        self.objects.pending.discard(self.name)
        self.objects.aborted += 1


class FakeObjects:
    def __init__(self) -> None:
        self.stored: dict[str, tuple[bytes, bytes]] = {}
        """Name -> (the object's bytes, its fingerprint metadata)."""
        self.pending: set[str] = set()
        self.fail_writes = False
        self.aborted = 0

    def writer(self, name: str, fingerprint: bytes) -> FakeWriter:
        return FakeWriter(self, name, fingerprint)

    async def stat(self, name: str) -> bytes | None:
        found = self.stored.get(name)
        return found[1] if found else None

    async def read(self, name: str) -> AsyncIterator[bytes]:
        if name not in self.stored:
            raise ClipNotFound("no such clip on this camera")
        data = self.stored[name][0]
        for at in range(0, len(data), 100_000):
            yield data[at : at + 100_000]

    async def delete(self, name: str) -> None:
        self.stored.pop(name, None)


class FakeIndex:
    def __init__(self) -> None:
        self.entries: dict[tuple[str, str, str], ClipRecord] = {}
        self.claims: set[tuple[str, str, str]] = set()
        self.remembered: dict[tuple[str, str, str], tuple[bytes, int]] = {}
        """Fingerprint keys and for how many seconds they were to be remembered."""

    async def claim(
        self, tenant_id: str, device_id: str, clip_id: str, seconds: int
    ) -> tuple[bool, ClipRecord | None, bytes | None]:
        key = (tenant_id, device_id, clip_id)
        if key in self.claims:
            return False, None, None
        self.claims.add(key)
        remembered = self.remembered.get(key)
        return True, self.entries.get(key), remembered[0] if remembered else None

    async def renew(self, tenant_id: str, device_id: str, clip_id: str, seconds: int) -> None:
        return None

    async def release(self, tenant_id: str, device_id: str, clip_id: str) -> None:
        self.claims.discard((tenant_id, device_id, clip_id))

    async def put(
        self,
        record: ClipRecord,
        previous: ClipRecord | None = None,
        previous_known: bool = False,
        end_claim: bool = False,
        fingerprint_key: bytes | None = None,
        remember_seconds: int = 0,
    ) -> None:
        key = (record.tenant_id, record.device_id, record.clip_id)
        self.entries[key] = record
        if end_claim:
            self.claims.discard(key)
        if fingerprint_key is not None and remember_seconds > 0:
            self.remembered[key] = (fingerprint_key, remember_seconds)

    async def get(self, tenant_id: str, device_id: str, clip_id: str) -> ClipRecord | None:
        return self.entries.get((tenant_id, device_id, clip_id))

    async def page(
        self,
        tenant_id: str,
        device_id: str,
        start: datetime | None,
        end: datetime | None,
        cursor: str | None,
        limit: int,
    ) -> Page:
        mine = sorted(
            (
                (key[2], record)
                for key, record in self.entries.items()
                if key[:2] == (tenant_id, device_id)
            ),
            key=lambda item: (item[1].captured_at, item[0]),
            reverse=True,
        )
        return Page(mine[:limit], None)

    async def remove(self, tenant_id: str, device_id: str, clip_ids: Sequence[str]) -> None:
        for clip_id in clip_ids:
            self.entries.pop((tenant_id, device_id, clip_id), None)
            self.remembered.pop((tenant_id, device_id, clip_id), None)


class FakeEvents:
    def __init__(self) -> None:
        self.published: list[tuple[str, ClipRecord]] = []
        self.accesses: list[tuple[str, str, str, str]] = []
        self.fail = False

    async def ingested(self, record: ClipRecord) -> None:
        if self.fail:
            raise ConnectionError("kafka down")
        self.published.append(("ingested", record))

    async def deleted(self, record: ClipRecord, reason: str) -> None:
        if self.fail:
            raise ConnectionError("kafka down")
        self.published.append((f"deleted:{reason}", record))

    def accessed(self, tenant_id: str, device_id: str, clip_id: str, access_id: str) -> None:
        self.accesses.append((tenant_id, device_id, clip_id, access_id))


class FakeMetrics:
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def ingested(self, size: int, seconds: float) -> None:
        self.counts["ingested"] += 1

    def refused(self, reason: str, size: int) -> None:
        self.counts[f"refused:{reason}"] += 1

    def played(self, result: str) -> None:
        self.counts[f"played:{result}"] += 1

    def listed(self) -> None:
        self.counts["listed"] += 1

    def integrity_failure(self, where: str) -> None:
        self.counts[f"integrity:{where}"] += 1


@dataclass
class Kit:
    """A ClipService on these fakes, and the fakes, for a test to arrange and inspect."""

    clips: ClipService
    cameras: FakeCameras
    keys: FakeKeys
    objects: FakeObjects
    index: FakeIndex
    events: FakeEvents
    metrics: FakeMetrics
    log: list[str]
    clock: FakeClock


def make_kit(limits: Limits, now: datetime, cameras: Sequence[str]) -> Kit:
    """The service with alert clips on (kept 7 days) for these cameras of one household."""
    log: list[str] = []
    fakes = FakeCameras(), FakeKeys(log), FakeObjects()
    index, events, metrics, clock = FakeIndex(), FakeEvents(), FakeMetrics(), FakeClock(now)
    fakes[0].settings = {device: CameraSettings(True, 7) for device in cameras}
    clips = ClipService(
        fakes[0], fakes[1], FakeAccessLog(log), fakes[2], index, events, metrics, clock, limits
    )
    return Kit(clips, *fakes, index, events, metrics, log, clock)
