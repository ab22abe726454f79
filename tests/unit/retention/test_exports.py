"""Exports: one building at a time, progress while building, only the owner's data, expiry."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.clock import FakeClock
from services.common.errors import FailedPrecondition, NotFound
from services.retention.domain.exports import ExportJob, Exports, ExportState
from services.retention.domain.model import ScheduledClip
from tests.unit.retention.fakes import MemoryExportStore, MemorySchedule

START = datetime(2026, 3, 1, tzinfo=UTC)


class Sources:
    def __init__(self, store: MemoryExportStore) -> None:
        self.store = store
        self.progress_seen: list[tuple[int, int]] = []
        self.refuse = False

    async def account(self, tenant_id: str, export_id: str) -> dict[str, Any]:
        return {"tenant_id": tenant_id, "login": f"login-{tenant_id}"}

    async def access_log(self, tenant_id: str) -> list[dict[str, Any]]:
        return [{"index": 0, "tenant_id": tenant_id}]

    async def clip_plaintext(self, clip: ScheduledClip, export_id: str) -> bytes:
        if self.refuse:
            raise FailedPrecondition("receipt refused")
        (job,) = [j for j in self.store.jobs.values() if j.export_id == export_id]
        self.progress_seen.append((job.items_done, job.items_total))
        return f"mp4 of {clip.member}".encode()


class Vault:
    def __init__(self) -> None:
        self.sealed: dict[tuple[str, str], bytes] = {}

    async def seal(self, tenant_id: str, export_id: str, archive: bytes) -> None:
        self.sealed[(tenant_id, export_id)] = archive

    async def open(self, tenant_id: str, export_id: str) -> bytes:
        return self.sealed[(tenant_id, export_id)]

    async def discard(self, tenant_id: str, export_id: str) -> None:
        self.sealed.pop((tenant_id, export_id), None)

    async def discard_tenant(self, tenant_id: str) -> int:
        mine = [k for k in self.sealed if k[0] == tenant_id]
        for key in mine:
            del self.sealed[key]
        return len(mine)


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, ExportState]] = []

    async def export_requested(self, job: ExportJob) -> None:
        self.seen.append(("requested", job.state))

    async def export_ready(self, job: ExportJob) -> None:
        self.seen.append(("ready", job.state))

    async def export_deleted(self, job: ExportJob) -> None:
        self.seen.append(("deleted", job.state))


class Gauge:
    def __init__(self) -> None:
        self.value = 0

    def building(self, delta: int) -> None:
        self.value += delta


@pytest.fixture
async def world() -> tuple[Exports, MemoryExportStore, Sources, Vault, Events, FakeClock]:
    clock = FakeClock(START)
    store = MemoryExportStore()
    schedule = MemorySchedule()
    for tenant in ("t1", "t2"):
        for i in range(2):
            await schedule.add(
                ScheduledClip(tenant, "cam", f"c{i}", f"t/{tenant}/cam/c{i}", 1, START), START
            )
    sources, vault, events = Sources(store), Vault(), Events()
    exports = Exports(store, sources, vault, schedule, events, Gauge(), clock, timedelta(days=7))
    return exports, store, sources, vault, events, clock


async def test_an_export_is_built_with_progress_and_holds_only_the_tenants_data(
    world: tuple[Exports, MemoryExportStore, Sources, Vault, Events, FakeClock],
) -> None:
    exports, _, sources, _, events, clock = world
    job = await exports.request("t1")
    assert job.state is ExportState.PENDING
    with pytest.raises(FailedPrecondition, match="already being built"):
        await exports.request("t1")
    await exports.build("t1", job.export_id)
    assert sources.progress_seen == [(3, 5), (4, 5)]
    ready, archive = await exports.download("t1", job.export_id)
    assert ready.state is ExportState.READY
    assert (ready.items_done, ready.items_total) == (5, 5)
    assert ready.sha256 == hashlib.sha256(archive).digest()
    assert ready.expires_at == START + timedelta(days=7)
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert sorted(opened.namelist()) == ["clips/cam/c0.mp4", "clips/cam/c1.mp4", "export.json"]
        document = json.loads(opened.read("export.json"))
        assert opened.read("clips/cam/c0.mp4") == b"mp4 of t1/cam/c0"
    assert document["account"]["login"] == "login-t1"
    assert "t2" not in json.dumps(document)
    assert events.seen == [("requested", ExportState.PENDING), ("ready", ExportState.READY)]
    with pytest.raises(NotFound):
        await exports.get("t2", job.export_id)
    clock.advance(timedelta(days=7))
    assert await exports.expire_due() == 1
    with pytest.raises(NotFound):
        await exports.get("t1", job.export_id)


async def test_a_failed_build_says_why_and_keeps_nothing(
    world: tuple[Exports, MemoryExportStore, Sources, Vault, Events, FakeClock],
) -> None:
    exports, _, sources, vault, events, _ = world
    sources.refuse = True
    job = await exports.request("t1")
    await exports.build("t1", job.export_id)
    assert events.seen[-1] == ("deleted", ExportState.FAILED)
    failed = await exports.get("t1", job.export_id)
    assert (failed.state, failed.failure_reason) == (ExportState.FAILED, "receipt refused")
    assert vault.sealed == {}
    with pytest.raises(FailedPrecondition, match="failed"):
        await exports.download("t1", job.export_id)
    assert (await exports.request("t1")).state is ExportState.PENDING  # may ask again


@pytest.mark.parametrize("deleted_during", ["clip", "seal"])
async def test_an_export_deleted_while_it_builds_stays_deleted(
    world: tuple[Exports, MemoryExportStore, Sources, Vault, Events, FakeClock],
    deleted_during: str,
) -> None:
    exports, store, sources, vault, events, _ = world
    job = await exports.request("t1")

    async def delete_now() -> None:
        await exports.delete("t1", job.export_id)

    if deleted_during == "clip":
        fetch = sources.clip_plaintext

        async def clip_then_delete(clip: ScheduledClip, export_id: str) -> bytes:
            media = await fetch(clip, export_id)
            await delete_now()
            return media

        sources.clip_plaintext = clip_then_delete  # type: ignore[method-assign]
    else:
        seal = vault.seal

        async def seal_then_delete(tenant_id: str, export_id: str, archive: bytes) -> None:
            await seal(tenant_id, export_id, archive)
            await delete_now()

        vault.seal = seal_then_delete  # type: ignore[method-assign]
    await exports.build("t1", job.export_id)
    assert store.jobs == {}
    assert vault.sealed == {}
    assert ("ready", ExportState.READY) not in events.seen
    with pytest.raises(NotFound):
        await exports.get("t1", job.export_id)
